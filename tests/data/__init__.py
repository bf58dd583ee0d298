"""Test data: committed snapshots of real clusters and the script that makes them."""
