"""The application layer: composition root, operator loop and command line."""
