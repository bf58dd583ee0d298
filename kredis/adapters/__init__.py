"""Adapters: the only code that talks to Kubernetes, Redis or the file system."""
