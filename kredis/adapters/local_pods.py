"""Pods played by local redis-server processes, one directory each.

A pod's directory under ``<state>/pods/<pod>/`` holds its generated
``redis.conf``, the ``auth.conf`` that config includes (the password, mode
0600, never on a command line), ``pod.json`` (pid and address), the Redis log
and the data directory ``data/`` (``nodes.conf`` and the append-only file),
which survives restarts as a PersistentVolume would. This module starts,
stops and kills one pod at a time and asks whether it answers PING; which
pods should run is the runtime's business.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from kredis.adapters.local_process import (
    BUS_PORT_OFFSET,
    ProcessState,
    ProcessTable,
    check_ports_free,
)
from kredis.adapters.local_state import (
    ClusterRecord,
    LocalRuntimeError,
    StateDirError,
    read_json,
    write_json,
    write_text,
)
from kredis.adapters.redis_client import (
    Address,
    ConnectionSettings,
    Credentials,
    RedisNode,
    RedisNodeError,
    decode,
)

_log = logging.getLogger(__name__)

PING_TIMEOUT_S = 1.0
_PROC_TITLE = '"{title} {listen-addr} {server-mode} {config-file}"'


class RedisServerMissingError(LocalRuntimeError):
    """The redis-server binary is not installed."""


@attrs.frozen
class PodPaths:
    """Where one pod's files live."""

    root: Path

    @property
    def data(self) -> Path:
        """The data directory: ``nodes.conf`` and the append-only file."""
        return self.root / "data"

    @property
    def config(self) -> Path:
        """The generated ``redis.conf``."""
        return self.root / "redis.conf"

    @property
    def auth(self) -> Path:
        """The included file with the password, mode 0600."""
        return self.root / "auth.conf"

    @property
    def record(self) -> Path:
        """``pod.json``: the pid and the address of the last start."""
        return self.root / "pod.json"

    @property
    def log(self) -> Path:
        """The Redis log file."""
        return self.root / "redis.log"

    @property
    def output(self) -> Path:
        """Standard output and error, where Redis reports a bad config."""
        return self.root / "server.out"


@attrs.frozen
class PodRecord:
    """The process a pod last ran as; ``pid`` is None once it was stopped."""

    pid: int | None
    address: str
    port: int

    def to_json(self) -> dict[str, Any]:
        """The ``pod.json`` document."""
        return {"pid": self.pid, "address": self.address, "port": self.port}

    @classmethod
    def from_json(cls, data: Any, *, path: Path) -> PodRecord:
        """Read ``pod.json``; raises ``StateDirError`` when it is damaged."""
        try:
            pid = data["pid"]
            return cls(
                pid=None if pid is None else int(pid),
                address=str(data["address"]),
                port=int(data["port"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise StateDirError(f"{path}: not a pod record ({err})") from err


def quoted(text: str) -> str:
    """A string as a double-quoted redis.conf argument."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render_config(
    *, cluster: ClusterRecord, address: str, port: int, paths: PodPaths
) -> str:
    """The ``redis.conf`` of a pod serving ``address:port``; no password."""
    lines = [
        f"bind {address}",
        f"port {port}",
        f"cluster-port {port + BUS_PORT_OFFSET}",
        "daemonize no",
        "protected-mode no",
        "cluster-enabled yes",
        "cluster-config-file nodes.conf",
        f"cluster-node-timeout {cluster.node_timeout_ms}",
        f"cluster-announce-ip {address}",
        f"bind-source-addr {address}",
        "appendonly yes",
        # The append-only file keeps the data; RDB snapshots would write it
        # all a second time.
        'save ""',
        f"dir {quoted(str(paths.data))}",
        f"logfile {quoted(str(paths.log))}",
        # The config file's path in the process title tells this pod's
        # process apart from an unrelated one that reused its pid.
        f"proc-title-template {_PROC_TITLE}",
    ]
    if cluster.max_memory:
        lines.append(f"maxmemory {cluster.max_memory}")
    lines.append(f"include {quoted(str(paths.auth))}")
    return "\n".join(lines) + "\n"


def render_auth(credentials: Credentials | None) -> str:
    """The included ``auth.conf``: the password for clients and replication."""
    if credentials is None:
        return "# no password: kredis local runs without --password-file\n"
    return (
        f"requirepass {quoted(credentials.password)}\n"
        f"masterauth {quoted(credentials.password)}\n"
    )


def answers_ping(address: Address, credentials: Credentials | None) -> bool:
    """Whether the node at ``address`` answers PING (with the password)."""
    settings = ConnectionSettings(
        connect_timeout_s=PING_TIMEOUT_S,
        command_timeout_s=PING_TIMEOUT_S,
        credentials=credentials,
    )
    try:
        with RedisNode(address, settings) as node:
            reply = node.call("PING")
    except RedisNodeError:
        return False
    return reply is True or decode(reply) == "PONG"


class LocalPods:
    """Starts, stops and kills the redis-server process of one pod at a time."""

    def __init__(
        self,
        root: Path,
        *,
        processes: ProcessTable,
        redis_server: str,
        credentials: Credentials | None,
        log_extra: Mapping[str, object] | None = None,
    ) -> None:
        self.root = root
        self._processes = processes
        self._redis_server = redis_server
        self._credentials = credentials
        # Records name the cluster they concern (namespace, cluster).
        self._log = logging.LoggerAdapter(_log, dict(log_extra or {}))

    def paths(self, pod: str) -> PodPaths:
        """Where the pod's files live."""
        return PodPaths(self.root / pod)

    def known(self) -> list[str]:
        """Every pod that has a directory, started or not."""
        if not self.root.is_dir():
            return []
        return sorted(entry.name for entry in self.root.iterdir() if entry.is_dir())

    def record(self, pod: str) -> PodRecord | None:
        """The pod's last process, or None when it never started."""
        path = self.paths(pod).record
        data = read_json(path)
        return None if data is None else PodRecord.from_json(data, path=path)

    def state(self, pod: str) -> ProcessState:
        """Running, stopped (never started or stopped on purpose) or crashed."""
        record = self.record(pod)
        if record is None or record.pid is None:
            return ProcessState.STOPPED
        if self._processes.is_running(record.pid, str(self.paths(pod).config)):
            return ProcessState.RUNNING
        return ProcessState.CRASHED

    def redis_server(self) -> str:
        """The absolute path of redis-server; raises when it is missing."""
        found = shutil.which(self._redis_server)
        if found is None:
            raise RedisServerMissingError(
                f"redis-server not found (looked for {self._redis_server!r}); "
                "install it with: apt-get install redis-server"
            )
        return os.path.abspath(found)

    def check_ports(self, pod: str, address: str, port: int) -> None:
        """Raise ``PortInUseError`` when the pod's ports are taken."""
        check_ports_free(pod=pod, address=address, ports=(port, port + BUS_PORT_OFFSET))

    def start(self, pod: str, *, cluster: ClusterRecord, address: str) -> PodRecord:
        """Start the pod's redis-server on ``address`` with its kept data.

        The caller logs the start: a new pod and a restart read differently.
        """
        # Limitation: no CPU or memory limits and no cgroups; maxmemory is
        # Redis' own limit and the only one applied.
        binary = self.redis_server()
        paths = self.paths(pod)
        port = cluster.base_port
        paths.data.mkdir(parents=True, exist_ok=True)
        write_text(paths.auth, render_auth(self._credentials))
        write_text(
            paths.config,
            render_config(cluster=cluster, address=address, port=port, paths=paths),
        )
        pid = self._processes.spawn(
            [binary, str(paths.config)], output=paths.output, env=os.environ
        )
        record = PodRecord(pid, address, port)
        write_json(paths.record, record.to_json())
        return record

    def stop(self, pod: str) -> None:
        """Stop the pod's process (SIGTERM, then SIGKILL); keep its data."""
        record = self.record(pod)
        if record is None or record.pid is None:
            return
        was_running = self.state(pod) is ProcessState.RUNNING
        self._processes.stop(record.pid, str(self.paths(pod).config))
        write_json(self.paths(pod).record, attrs.evolve(record, pid=None).to_json())
        if was_running:
            self._log.info("pod stopped pod=%s pid=%s", pod, record.pid)

    def kill(self, pod: str) -> None:
        """kill -9 the pod's process; it stays crashed until restarted."""
        record = self.record(pod)
        if record is None or record.pid is None:
            return
        if self.state(pod) is ProcessState.RUNNING:
            self._processes.kill(record.pid, str(self.paths(pod).config))
            self._log.info("pod killed pod=%s pid=%s", pod, record.pid)

    def has_identity(self, pod: str) -> bool:
        """Whether the pod's disk holds a node identity (a ``nodes.conf``)."""
        nodes_conf = self.paths(pod).data / "nodes.conf"
        return nodes_conf.is_file() and nodes_conf.stat().st_size > 0

    def wipe_data(self, pod: str) -> None:
        """Empty the pod's data directory, as if its volume were lost."""
        data = self.paths(pod).data
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True, exist_ok=True)
        self._log.info("pod data wiped pod=%s", pod)
