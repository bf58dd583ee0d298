"""Detached local processes: start, recognise, signal and stop them.

A process is started in a new session with its output in a file, so it
outlives the command that started it; it is later found again by its pid and
recognised by a marker in its command line (a pid may have been reused by an
unrelated process). This module knows nothing of pods, Jobs or Redis.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from kredis.adapters.local_state import LocalRuntimeError

POLL_INTERVAL_S = 0.02
STOP_GRACE_S = 10.0
KILL_WAIT_S = 5.0
BUS_PORT_OFFSET = 10000


class ProcessState(enum.Enum):
    """What became of a pod's or Job's process."""

    RUNNING = "running"
    STOPPED = "stopped"
    CRASHED = "crashed"

    @property
    def is_running(self) -> bool:
        """Whether the process runs."""
        return self is ProcessState.RUNNING


class PortInUseError(LocalRuntimeError):
    """A port a pod needs is taken on its address."""


class ProcessStopError(LocalRuntimeError):
    """A process did not go away even after SIGKILL."""


class ProcessTable:
    """Starts detached processes and finds them again by pid and marker.

    Processes this instance started are its children until it exits; it
    reaps them when it finds them dead, so that none lingers as a zombie.
    """

    def __init__(self) -> None:
        self._children: set[int] = set()

    def spawn(
        self, argv: Sequence[str], *, output: Path, env: Mapping[str, str]
    ) -> int:
        """Start ``argv`` in a new session, stdin from /dev/null; its pid.

        ``argv[0]`` must be an absolute path. Standard output and error are
        appended to ``output``.
        """
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            pid = os.posix_spawn(
                argv[0],
                list(argv),
                dict(env),
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, fd, 1),
                    (os.POSIX_SPAWN_DUP2, fd, 2),
                ],
                setsid=True,
                # Python ignores SIGPIPE; an ignored signal survives exec.
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
                setsigmask=(),
            )
        finally:
            os.close(fd)
        self._children.add(pid)
        return pid

    def is_running(self, pid: int | None, marker: str) -> bool:
        """Whether ``pid`` is alive and its command line shows ``marker``."""
        if pid is None:
            return False
        self._reap(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        if _is_zombie(stat):
            return False
        words = cmdline.replace(b"\0", b" ").decode("utf-8", errors="replace")
        return f" {marker} " in f" {words.strip()} "

    def kill(self, pid: int | None, marker: str) -> None:
        """SIGKILL the process group of ``pid`` and wait until it is gone."""
        if pid is None or not self.is_running(pid, marker):
            return
        _signal_group(pid, signal.SIGKILL)
        self._wait_gone(pid, marker, KILL_WAIT_S)

    def stop(
        self, pid: int | None, marker: str, *, grace_s: float = STOP_GRACE_S
    ) -> None:
        """SIGTERM the process group of ``pid``; SIGKILL it after ``grace_s``."""
        if pid is None or not self.is_running(pid, marker):
            return
        _signal_group(pid, signal.SIGTERM)
        if self._wait_gone(pid, marker, grace_s, raise_on_timeout=False):
            return
        _signal_group(pid, signal.SIGKILL)
        self._wait_gone(pid, marker, KILL_WAIT_S)

    def _wait_gone(
        self,
        pid: int,
        marker: str,
        timeout_s: float,
        *,
        raise_on_timeout: bool = True,
    ) -> bool:
        # Not only the marker: an exiting process loses its command line
        # before it closes its sockets, so wait until it has fully exited.
        deadline = time.monotonic() + timeout_s
        while not self._exited(pid):
            if time.monotonic() >= deadline:
                if raise_on_timeout:
                    raise ProcessStopError(
                        f"process {pid} ({marker}) is still running "
                        f"{timeout_s} s after it was signalled; stop it by hand"
                    )
                return False
            time.sleep(POLL_INTERVAL_S)
        return True

    def _exited(self, pid: int) -> bool:
        # Only for a pid that was ours a moment ago: any process there counts.
        # A zombie main thread is not enough either: the sockets close when
        # the last thread (Redis has several) has exited.
        self._reap(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
            threads = [t.name for t in Path(f"/proc/{pid}/task").iterdir()]
        except OSError:
            return True
        return _is_zombie(stat) and threads in ([], [str(pid)])

    def _reap(self, pid: int) -> None:
        if pid not in self._children:
            return
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done == pid:
            self._children.discard(pid)


def _is_zombie(stat: str) -> bool:
    # The state follows the command name, which may hold spaces or ")".
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])


def _signal_group(pid: int, signum: signal.Signals) -> None:
    # Each process leads its own session and group (setsid at spawn), so the
    # group also reaches its children, such as Redis' rewrite forks.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def check_ports_free(*, pod: str, address: str, ports: Iterable[int]) -> None:
    """Raise ``PortInUseError`` when a port is taken on ``address``."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # Connections left in TIME_WAIT by an earlier server do not count.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError as err:
                raise PortInUseError(
                    f"cannot start pod {pod}: {address} port {port} is in use "
                    f"({err.strerror}); stop what listens there (or on "
                    f"0.0.0.0:{port}) or choose another basePort"
                ) from None
