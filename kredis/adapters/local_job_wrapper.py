"""Runs one local Job's command and records its exit code in the Job's directory.

Started detached by the local runtime as
``python -m kredis.adapters.local_job_wrapper <job dir> -- <argv...>``, it
runs the command as its child (same output, same environment), passes on
SIGTERM and SIGINT, and writes ``exit.json`` when the command ends, so that
the outcome is known after the command that started the Job has exited. It
must not import anything that connects or reads the environment.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from kredis.adapters.local_state import read_json, write_json

EXIT_FILE = "exit.json"
EXIT_NOT_RUN = 127
USAGE = "usage: python -m kredis.adapters.local_job_wrapper <job dir> -- <argv...>"


def read_exit_code(job_dir: Path) -> int | None:
    """The recorded exit code of a Job's command, None while none is recorded."""
    data: Any = read_json(job_dir / EXIT_FILE)
    if not isinstance(data, dict) or not isinstance(data.get("exitCode"), int):
        return None
    code: int = data["exitCode"]
    return code


def run(job_dir: Path, argv: list[str]) -> int:
    """Run ``argv``, record its exit code (128 + n after signal n), return it."""
    try:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    except OSError as err:
        print(f"cannot run {argv[0]!r}: {err.strerror or err}", file=sys.stderr)
        code = EXIT_NOT_RUN
    else:

        def pass_on(signum: int, frame: FrameType | None) -> None:
            child.send_signal(signum)

        signal.signal(signal.SIGTERM, pass_on)
        signal.signal(signal.SIGINT, pass_on)
        returned = child.wait()
        code = 128 - returned if returned < 0 else returned
    write_json(job_dir / EXIT_FILE, {"exitCode": code})
    return code


def main(args: list[str]) -> int:
    """The wrapper's entry point: ``<job dir> -- <argv...>``."""
    if len(args) < 3 or args[1] != "--":
        print(USAGE, file=sys.stderr)
        return 2
    return run(Path(args[0]), args[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
