"""The exception hierarchy of kredis.

Every error kredis raises derives from ``KredisError``. This module holds the
root and the domain's own errors; adapters add narrow subclasses of their own.
"""

from __future__ import annotations


class KredisError(Exception):
    """The root of every error kredis raises on purpose."""


class SnapshotError(KredisError):
    """An observed snapshot is malformed; ``field`` names the offending path."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class ClusterNodesError(KredisError):
    """A CLUSTER NODES reply could not be parsed."""

    def __init__(self, line_number: int, problem: str) -> None:
        super().__init__(f"line {line_number}: {problem}")
        self.line_number = line_number
        self.problem = problem


def truncate(text: str, limit: int = 120) -> str:
    """Shorten text from a remote system before it goes into a message."""
    if len(text) <= limit:
        return text
    return text[: limit - 3] + "..."
