"""Logging set-up: fixed phrases, text or JSON lines, on stdout.

Configures the ``kredis`` logger tree once, at the composition root; nothing
logs configuration at import time.
"""

from __future__ import annotations

import enum
import json
import logging
import sys


class LogFormat(enum.Enum):
    """How log records are written."""

    TEXT = "text"
    JSON = "json"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("namespace", "name", "cluster"):
            if hasattr(record, key):
                data[key] = getattr(record, key)
        return json.dumps(data)


def setup_logging(log_format: LogFormat, level: int = logging.INFO) -> None:
    """Send the ``kredis`` loggers to stdout in the chosen format."""
    handler = logging.StreamHandler(sys.stdout)
    if log_format is LogFormat.JSON:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    logger = logging.getLogger("kredis")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
