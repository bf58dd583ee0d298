"""Jobs played by local processes, reported like Kubernetes Job status.

Each Job has a directory ``<state>/jobs/<name>/`` with ``job.json`` (labels,
annotations, argv, the wrapper's pid), ``output.log`` and, once its command
ended, ``exit.json`` written by ``local_job_wrapper``. A Job runs once: a
failed command makes a failed Job. The environment given to a Job reaches
its process only, never a file or a log.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from kredis.adapters.local_job_wrapper import read_exit_code
from kredis.adapters.local_process import ProcessTable
from kredis.adapters.local_state import (
    LocalRuntimeError,
    StateDirError,
    check_dns_label,
    read_json,
    write_json,
)

_log = logging.getLogger(__name__)

JOB_FILE = "job.json"
OUTPUT_FILE = "output.log"
WRAPPER_MODULE = "kredis.adapters.local_job_wrapper"


class JobExistsError(LocalRuntimeError):
    """A Job of that name exists already."""


@attrs.frozen
class JobRecord:
    """A started Job: what it runs and the wrapper process that runs it."""

    name: str
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]
    argv: tuple[str, ...]
    pid: int

    def to_json(self) -> dict[str, Any]:
        """The ``job.json`` document."""
        return {
            "name": self.name,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "argv": list(self.argv),
            "pid": self.pid,
        }

    @classmethod
    def from_json(cls, data: Any, *, path: Path) -> JobRecord:
        """Read ``job.json``; raises ``StateDirError`` when it is damaged."""
        try:
            return cls(
                name=str(data["name"]),
                labels=_pairs(data["labels"]),
                annotations=_pairs(data["annotations"]),
                argv=tuple(str(word) for word in data["argv"]),
                pid=int(data["pid"]),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise StateDirError(f"{path}: not a Job record ({err})") from err


def _pairs(mapping: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in mapping.items()))


def job_status(
    record: JobRecord, *, running: bool, exit_code: int | None
) -> dict[str, Any]:
    """The snapshot entry of a Job, shaped like the Kubernetes Job status.

    A Job whose wrapper is gone without an exit code was killed outright and
    counts as failed.
    """
    if exit_code is None and running:
        counts, conditions = (1, 0, 0), []
    elif exit_code == 0:
        counts, conditions = (0, 1, 0), [{"type": "Complete", "status": "True"}]
    else:
        counts, conditions = (0, 0, 1), [{"type": "Failed", "status": "True"}]
    active, succeeded, failed = counts
    return {
        "name": record.name,
        "labels": dict(record.labels),
        "annotations": dict(record.annotations),
        "active": active,
        "succeeded": succeeded,
        "failed": failed,
        "conditions": conditions,
    }


class LocalJobs:
    """Starts, lists and deletes the Jobs under one directory."""

    def __init__(
        self,
        root: Path,
        *,
        processes: ProcessTable,
        log_extra: Mapping[str, object] | None = None,
    ) -> None:
        self.root = root
        self._processes = processes
        # Records name the cluster they concern (namespace, cluster).
        self._log = logging.LoggerAdapter(_log, dict(log_extra or {}))

    def directory(self, name: str) -> Path:
        """The Job's directory."""
        return self.root / name

    def record(self, name: str) -> JobRecord | None:
        """The Job's record, None when there is no such Job."""
        path = self.directory(name) / JOB_FILE
        data = read_json(path)
        return None if data is None else JobRecord.from_json(data, path=path)

    def names(self) -> list[str]:
        """Every Job that has a record, by name."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name for entry in self.root.iterdir() if (entry / JOB_FILE).is_file()
        )

    def entries(self) -> list[dict[str, Any]]:
        """The snapshot ``jobs`` entries."""
        entries = []
        for name in self.names():
            record = self.record(name)
            if record is None:
                continue
            directory = self.directory(name)
            exit_code = read_exit_code(directory)
            running = exit_code is None and self._is_running(record)
            if exit_code is None and not running:
                # The command may have ended between the two looks.
                exit_code = read_exit_code(directory)
            entries.append(job_status(record, running=running, exit_code=exit_code))
        return entries

    def start(
        self,
        *,
        name: str,
        argv: Sequence[str],
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        env: Mapping[str, str],
    ) -> None:
        """Start a Job running ``argv`` with ``env`` added to the environment."""
        # Limitation: a Job runs once (backoffLimit 0) with no deadline, no
        # resource limits and no cgroup; its children outlive a SIGKILLed
        # wrapper unless they stay in its process group.
        check_dns_label("Job name", name)
        if not argv:
            raise LocalRuntimeError(f"Job {name}: the command is empty")
        directory = self.directory(name)
        try:
            directory.mkdir(parents=True)
        except FileExistsError:
            raise JobExistsError(
                f"Job {name} exists already; delete it before starting it again"
            ) from None
        wrapper = [
            os.path.abspath(sys.executable),
            "-m",
            WRAPPER_MODULE,
            str(directory),
            "--",
            *argv,
        ]
        pid = self._processes.spawn(
            wrapper, output=directory / OUTPUT_FILE, env={**os.environ, **env}
        )
        record = JobRecord(
            name=name,
            labels=_pairs(labels),
            annotations=_pairs(annotations),
            argv=tuple(argv),
            pid=pid,
        )
        write_json(directory / JOB_FILE, record.to_json())
        self._log.info("job started job=%s pid=%s", name, pid)

    def delete(self, name: str) -> None:
        """Stop the Job if it runs and remove its record and output."""
        directory = self.directory(name)
        if not directory.is_dir():
            self._log.debug("job already gone job=%s", name)
            return
        record = self.record(name)
        if record is not None and self._is_running(record):
            self._processes.stop(record.pid, str(directory))
            self._log.info("job stopped job=%s pid=%s", name, record.pid)
        shutil.rmtree(directory)
        self._log.info("job deleted job=%s", name)

    def stop_all(self) -> None:
        """Stop every running Job; their records stay, as failed Jobs."""
        for name in self.names():
            record = self.record(name)
            if record is not None and self._is_running(record):
                self._processes.stop(record.pid, str(self.directory(name)))
                self._log.info("job stopped job=%s pid=%s", name, record.pid)

    def _is_running(self, record: JobRecord) -> bool:
        return self._processes.is_running(record.pid, str(self.directory(record.name)))
