"""Real redis-server processes for integration tests, and snapshots of them.

Starts Redis Cluster nodes as child processes, each on its own loopback
address ``127.0.<k>.<i>`` with its own directory and generated ``redis.conf``;
forms clusters with plain ``redis-cli`` commands (ADDSLOTSRANGE,
SET-CONFIG-EPOCH, MEET, REPLICATE); breaks them (kill -9, moves, open slots);
and captures what the servers report as a ``kredis.snapshot/v1`` document of
the same shape ``tests.support.world.World.snapshot()`` renders. Every wait is
a poll with a deadline. ``RedisHarness.close`` kills every process the harness
started. It talks to 127.x addresses only and holds no planning logic.
"""

from __future__ import annotations

import copy
import ctypes
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
REDIS_PORT = 6379
BUS_PORT_OFFSET = 10000
NODE_TIMEOUT_MS = 2000
CALL_TIMEOUT_S = 5.0
START_TIMEOUT_S = 10.0
SETTLE_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.05
SLOT_COUNT = 16384
SUBNET_VARIABLE = "KREDIS_TEST_SUBNET"
_SUBNET = re.compile(r"^127\.(\d{1,3})\.(\d{1,3})$")
_FIRST_HOST = 10
_LAST_HOST = 254
_PR_SET_PDEATHSIG = 1


class HarnessError(RuntimeError):
    """The harness could not start, reach or settle a Redis server."""


class RedisReplyError(HarnessError):
    """A Redis server answered a command with an error reply."""


class RedisUnreachableError(HarnessError):
    """redis-cli could not get any reply from a server."""


def redis_available() -> bool:
    """Whether redis-server and redis-cli are installed."""
    return all(Path(tool).is_file() for tool in (REDIS_SERVER, REDIS_CLI))


def default_subnet() -> str:
    """The /24 (``127.0.<k>``) for this process: from the env or the pid."""
    chosen = os.environ.get(SUBNET_VARIABLE, "")
    if not chosen:
        # Spread concurrent runs over different /24s.
        return f"127.0.{100 + os.getpid() % 150}"
    match = _SUBNET.match(chosen)
    if match is None or not all(0 <= int(part) <= 255 for part in match.groups()):
        raise HarnessError(
            f"{SUBNET_VARIABLE}={chosen!r} is not a loopback /24 such as 127.0.83"
        )
    return chosen


_hosts: dict[str, Iterator[int]] = {}


def _next_address(subnet: str) -> str:
    # Never hand out an address twice in one process: a killed server's
    # address stays retired, so a restart always binds somewhere new.
    host = next(_hosts.setdefault(subnet, itertools.count(_FIRST_HOST)))
    if host > _LAST_HOST:
        raise HarnessError(f"no loopback addresses left in {subnet}.0/24")
    return f"{subnet}.{host}"


def _die_with_parent() -> None:
    # If the test process is killed outright, its servers die with it.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _quoted(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _check_free(pod: str, ip: str, port: int) -> None:
    for number in (port, port + BUS_PORT_OFFSET):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((ip, number))
            except OSError as err:
                raise HarnessError(
                    f"cannot start redis-server for {pod}: address {ip} port "
                    f"{number} is in use ({err.strerror}); stop what listens "
                    f"there (or on 0.0.0.0:{number}) or set {SUBNET_VARIABLE} "
                    "to another 127.0.<k> prefix"
                ) from None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path.name} unreadable)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class RedisServer:
    """One redis-server child process serving one pod's address."""

    pod: str
    ip: str
    port: int
    directory: Path
    node_timeout_ms: int
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        """``ip:port``."""
        return f"{self.ip}:{self.port}"

    @property
    def ordinal(self) -> int:
        """The StatefulSet ordinal in the pod name ``<cluster>-<n>``."""
        return int(self.pod.rsplit("-", 1)[1])

    @property
    def alive(self) -> bool:
        """The process has not exited."""
        return self.process.poll() is None

    @property
    def nodes_conf(self) -> Path:
        """The cluster config file the server keeps."""
        return self.directory / "nodes.conf"

    def call(self, *args: object, timeout: float = CALL_TIMEOUT_S) -> str:
        """Run one command with redis-cli; its raw reply text.

        redis-cli adds a newline only where a reply lacks one, so the text of
        CLUSTER NODES and CLUSTER INFO is exactly what Redis sent.

        Raises ``RedisReplyError`` on an error reply and
        ``RedisUnreachableError`` when no reply came within ``timeout``.
        """
        command = [REDIS_CLI, "-h", self.ip, "-p", str(self.port), "--raw", "-e"]
        command += [str(arg) for arg in args]
        shown = " ".join(str(arg) for arg in args)
        try:
            # Bytes, not text mode: text mode would turn CLUSTER INFO's \r\n
            # into \n, and snapshots keep replies exactly as Redis sent them.
            done = subprocess.run(
                command,
                capture_output=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RedisUnreachableError(
                f"{self.pod} ({self.address}): no reply to {shown!r} within {timeout} s"
            ) from None
        reply = done.stdout.decode("utf-8", errors="replace")
        error = done.stderr.decode("utf-8", errors="replace").strip()
        # redis-cli's own I/O failures, as opposed to a server's error reply.
        if done.returncode != 0 and error.startswith(("Could not connect", "Error:")):
            raise RedisUnreachableError(f"{self.pod} ({self.address}): {error}")
        if done.returncode != 0:
            raise RedisReplyError(
                f"{self.pod} ({self.address}): {shown!r} failed: "
                f"{error or reply.strip() or f'exit {done.returncode}'}"
            )
        return reply

    def value(self, *args: object, timeout: float = CALL_TIMEOUT_S) -> str:
        """A one-line reply without redis-cli's trailing newline."""
        return self.call(*args, timeout=timeout).rstrip("\r\n")

    def pipe(self, commands: Sequence[str], timeout: float = CALL_TIMEOUT_S) -> str:
        """Send many one-line commands through one redis-cli; its output."""
        try:
            done = subprocess.run(
                [REDIS_CLI, "-h", self.ip, "-p", str(self.port), "--raw"],
                input="".join(line + "\n" for line in commands),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RedisUnreachableError(
                f"{self.pod} ({self.address}): {len(commands)} piped commands "
                f"did not finish within {timeout} s"
            ) from None
        if done.returncode != 0:
            raise RedisReplyError(
                f"{self.pod} ({self.address}): piped commands failed: "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
        return done.stdout

    def node_id(self) -> str:
        """CLUSTER MYID."""
        return self.value("CLUSTER", "MYID")

    def kill(self) -> None:
        """kill -9 the process and reap it."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=CALL_TIMEOUT_S)

    def log_tail(self) -> str:
        """The last lines of the server's log, for failure messages."""
        return _tail(self.directory / "redis.log")


class RedisHarness:
    """Starts redis-server processes under one directory and kills them all."""

    def __init__(
        self,
        root: Path,
        *,
        subnet: str | None = None,
        port: int = REDIS_PORT,
    ) -> None:
        if not redis_available():
            raise HarnessError(f"{REDIS_SERVER} or {REDIS_CLI} is not installed")
        self.root = root
        self.subnet = subnet or default_subnet()
        self.port = port
        self.servers: list[RedisServer] = []

    def __enter__(self) -> RedisHarness:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def start(
        self,
        pod: str,
        *,
        group: str,
        node_timeout_ms: int = NODE_TIMEOUT_MS,
    ) -> RedisServer:
        """Start a fresh server for ``pod`` in ``<root>/<group>/<pod>``."""
        directory = self.root / group / pod
        if directory.exists():
            raise HarnessError(f"{directory} exists: pod {pod} already started")
        directory.mkdir(parents=True)
        return self._launch(pod, directory, _next_address(self.subnet), node_timeout_ms)

    def restart_elsewhere(
        self,
        server: RedisServer,
        *,
        edit_nodes_conf: Callable[[str], str] | None = None,
    ) -> RedisServer:
        """kill -9 a server and start it on a new address with its nodes.conf.

        ``edit_nodes_conf`` may rewrite the kept nodes.conf before the start.
        """
        server.kill()
        if edit_nodes_conf is not None:
            text = server.nodes_conf.read_text(encoding="utf-8")
            server.nodes_conf.write_text(edit_nodes_conf(text), encoding="utf-8")
        return self._launch(
            server.pod,
            server.directory,
            _next_address(self.subnet),
            server.node_timeout_ms,
        )

    def unused_address(self) -> str:
        """A loopback address of the subnet that no server here ever binds."""
        return _next_address(self.subnet)

    def close(self) -> None:
        """Kill every server this harness started; never raises early."""
        problems = []
        for server in self.servers:
            try:
                server.kill()
            except (OSError, subprocess.TimeoutExpired) as err:
                problems.append(f"{server.pod} (pid {server.process.pid}): {err}")
        self.servers.clear()
        if problems:
            raise HarnessError("could not stop: " + "; ".join(problems))

    def _launch(
        self, pod: str, directory: Path, ip: str, node_timeout_ms: int
    ) -> RedisServer:
        if not ip.startswith("127."):
            raise HarnessError(f"refusing a non-loopback address {ip}")
        _check_free(pod, ip, self.port)
        config = directory / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    f"bind {ip}",
                    f"port {self.port}",
                    "daemonize no",
                    "protected-mode no",
                    "cluster-enabled yes",
                    "cluster-config-file nodes.conf",
                    f"cluster-node-timeout {node_timeout_ms}",
                    f"cluster-announce-ip {ip}",
                    f"bind-source-addr {ip}",
                    f"dir {_quoted(str(directory))}",
                    f"logfile {_quoted(str(directory / 'redis.log'))}",
                    "appendonly no",
                    'save ""',
                    # Replicas sync at once instead of waiting for company.
                    "repl-diskless-sync-delay 0",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        with (directory / "server.out").open("ab") as output:
            process = subprocess.Popen(
                [REDIS_SERVER, str(config)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        server = RedisServer(pod, ip, self.port, directory, node_timeout_ms, process)
        self.servers.append(server)
        self._wait_for_ping(server)
        return server

    def _wait_for_ping(self, server: RedisServer) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        last = "no attempt"
        while time.monotonic() < deadline:
            if not server.alive:
                raise HarnessError(
                    f"redis-server for {server.pod} at {server.address} exited "
                    f"with {server.process.returncode}:\n"
                    f"{_tail(server.directory / 'server.out')}\n{server.log_tail()}"
                )
            try:
                if server.value("PING", timeout=1.0) == "PONG":
                    return
            except HarnessError as err:
                last = str(err)
            time.sleep(POLL_INTERVAL_S)
        server.kill()
        raise HarnessError(
            f"redis-server for {server.pod} at {server.address} did not answer "
            f"PING within {START_TIMEOUT_S} s ({last}):\n{server.log_tail()}"
        )


# -- waiting ------------------------------------------------------------------


def wait_for(check: Callable[[], str], *, what: str, timeout: float) -> None:
    """Poll ``check`` until it returns "" (done); else raise with its last word."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            problem = check()
        except HarnessError as err:
            problem = str(err)
        if not problem:
            return
        if time.monotonic() >= deadline:
            raise HarnessError(
                f"gave up after {timeout} s waiting for {what}: {problem}"
            )
        time.sleep(POLL_INTERVAL_S)


# -- reading CLUSTER NODES (independently of kredis' own parser) --------------


@dataclass(frozen=True)
class NodeLine:
    """One CLUSTER NODES line, as much as the harness needs of it."""

    node_id: str
    ip: str
    flags: frozenset[str]
    master_id: str
    slots: tuple[str, ...]

    @property
    def is_master(self) -> bool:
        """The line's flags say master."""
        return "master" in self.flags


def cluster_nodes(server: RedisServer) -> list[NodeLine]:
    """The server's CLUSTER NODES, one ``NodeLine`` per known node."""
    lines = []
    for raw in server.call("CLUSTER", "NODES").splitlines():
        fields = raw.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@", 1)[0]
        lines.append(
            NodeLine(
                node_id=fields[0],
                ip=address.rsplit(":", 1)[0],
                flags=frozenset(fields[2].split(",")),
                master_id="" if fields[3] == "-" else fields[3],
                slots=tuple(f for f in fields[8:] if not f.startswith("[")),
            )
        )
    return lines


def line_of(server: RedisServer, node_id: str) -> NodeLine | None:
    """How ``server`` sees the node ``node_id``, if it knows it."""
    for line in cluster_nodes(server):
        if line.node_id == node_id:
            return line
    return None


def cluster_state_ok(server: RedisServer) -> bool:
    """CLUSTER INFO says ``cluster_state:ok``."""
    return "cluster_state:ok" in server.call("CLUSTER", "INFO").split()


def convergence_problem(servers: Sequence[RedisServer]) -> str:
    """Why the servers are not one settled cluster yet; "" when they are.

    Settled: every server knows exactly these nodes, none in handshake or
    flagged down, all agree on slots and roles, cluster_state is ok and every
    replica's link to its master is up.
    """
    ids = {server.node_id(): server.pod for server in servers}
    pictures = set()
    for server in servers:
        lines = cluster_nodes(server)
        seen = {line.node_id for line in lines}
        if seen != set(ids):
            return f"{server.pod} knows {len(seen)} nodes, not the {len(ids)} expected"
        for line in lines:
            bad = line.flags & {"handshake", "fail", "fail?", "noaddr"}
            if bad:
                return f"{server.pod} sees {ids[line.node_id]} as {','.join(bad)}"
        pictures.add(
            tuple(sorted((line.node_id, line.master_id, line.slots) for line in lines))
        )
        if not cluster_state_ok(server):
            return f"{server.pod} reports cluster_state other than ok"
        mine = next(line for line in lines if "myself" in line.flags)
        if not mine.is_master and not replica_synced(server):
            return f"replica {server.pod} has not synced with its master"
    if len(pictures) > 1:
        return "the servers disagree on slots or roles"
    return ""


def replica_synced(server: RedisServer) -> bool:
    """INFO replication says ``master_link_status:up``."""
    return "master_link_status:up" in server.call("INFO", "replication").split()


def wait_converged(
    servers: Sequence[RedisServer], *, timeout: float = SETTLE_TIMEOUT_S
) -> None:
    """Wait until ``convergence_problem`` finds nothing."""
    pods = ", ".join(server.pod for server in servers)
    wait_for(
        lambda: convergence_problem(servers),
        what=f"{pods} to converge",
        timeout=timeout,
    )


# -- forming and breaking -----------------------------------------------------


def balanced_ranges(count: int) -> list[tuple[int, int]]:
    """Contiguous slot ranges, sizes differing by at most one, covering all."""
    base, extra = divmod(SLOT_COUNT, count)
    ranges = []
    start = 0
    for index in range(count):
        size = base + (1 if index < extra else 0)
        ranges.append((start, start + size - 1))
        start += size
    return ranges


def form_cluster(
    masters: Sequence[tuple[RedisServer, tuple[int, int]]],
    replicas: Sequence[tuple[RedisServer, RedisServer]],
    *,
    timeout: float = SETTLE_TIMEOUT_S,
) -> None:
    """Form a cluster by hand: slots and epochs, MEET, REPLICATE, converge.

    ``masters`` pairs each master with its inclusive slot range; ``replicas``
    pairs each replica with its master.
    """
    for epoch, (master, (start, end)) in enumerate(masters, start=1):
        master.value("CLUSTER", "ADDSLOTSRANGE", start, end)
        master.value("CLUSTER", "SET-CONFIG-EPOCH", epoch)
    everyone = [m for m, _ in masters] + [r for r, _ in replicas]
    # Every node meets every later one: no waiting on gossip to spread.
    for index, server in enumerate(everyone):
        for other in everyone[index + 1 :]:
            server.value("CLUSTER", "MEET", other.ip, other.port)

    ids = {server.pod: server.node_id() for server in everyone}

    def meshed() -> str:
        for server in everyone:
            known = {
                line.node_id
                for line in cluster_nodes(server)
                if "handshake" not in line.flags
            }
            if known != set(ids.values()):
                return f"{server.pod} knows {len(known)} of {len(ids)} nodes"
        return ""

    wait_for(meshed, what="every node to know every other", timeout=timeout)
    for replica, master in replicas:
        replica.value("CLUSTER", "REPLICATE", ids[master.pod])
    wait_converged(everyone, timeout=timeout)


def key_slot(key: str) -> int:
    """The hash slot of a key (CRC16/XMODEM of the key or its hash tag)."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    crc = 0
    for byte in key.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % SLOT_COUNT


def _owners(view: Iterable[NodeLine]) -> dict[int, str]:
    owners = {}
    for line in view:
        for token in line.slots:
            start, _, end = token.partition("-")
            for slot in range(int(start), int(end or start) + 1):
                owners[slot] = line.node_id
    return owners


def write_keys(servers: Sequence[RedisServer], count: int, prefix: str = "key") -> None:
    """SET ``count`` keys on the masters that own their slots."""
    by_id = {server.node_id(): server for server in servers}
    owners = _owners(cluster_nodes(servers[0]))
    batches: dict[str, list[str]] = {}
    for number in range(count):
        key = f"{prefix}:{number}"
        batches.setdefault(owners[key_slot(key)], []).append(f"SET {key} {number}")
    for owner, commands in batches.items():
        replies = by_id[owner].pipe(commands).split()
        if replies.count("OK") != len(commands):
            raise HarnessError(
                f"{by_id[owner].pod}: expected {len(commands)} OK replies, got "
                f"{replies[:5]}"
            )


def fill_unassigned(server: RedisServer, count: int, prefix: str = "stray") -> None:
    """Leave ``count`` keys on a node that knows nobody and serves no slot.

    The node serves every slot just long enough to take the writes, as a
    volume from an earlier life would leave it.
    """
    server.value("CLUSTER", "ADDSLOTSRANGE", 0, SLOT_COUNT - 1)
    wait_for(
        lambda: "" if cluster_state_ok(server) else "cluster_state is not ok",
        what=f"{server.pod} to serve its slots",
        timeout=SETTLE_TIMEOUT_S,
    )
    replies = server.pipe([f"SET {prefix}:{n} {n}" for n in range(count)]).split()
    if replies.count("OK") != count:
        raise HarnessError(f"{server.pod}: writes failed: {replies[:5]}")
    server.value("CLUSTER", "DELSLOTSRANGE", 0, SLOT_COUNT - 1)


def open_slot(slot: int, source: RedisServer, target: RedisServer) -> None:
    """Leave ``slot`` half-moved: IMPORTING on target, MIGRATING on source."""
    target.value("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id())
    source.value("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id())


def close_slot(slot: int, servers: Iterable[RedisServer]) -> None:
    """CLUSTER SETSLOT ``slot`` STABLE on each server."""
    for server in servers:
        server.value("CLUSTER", "SETSLOT", slot, "STABLE")


# -- capturing ----------------------------------------------------------------


def spec_of(masters: int, replicas: int, *, port: int = REDIS_PORT) -> dict[str, Any]:
    """A Kredis spec for ``masters`` x (1 + ``replicas``) pods."""
    return {
        "masters": masters,
        "replicas": replicas,
        "basePort": port,
        "image": "redis:7.0.15",
        "maxMemory": "64mb",
    }


def now_rfc3339() -> str:
    """The current UTC time as RFC 3339 with milliseconds and ``Z``."""
    moment = datetime.now(UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


def observe(server: RedisServer) -> dict[str, Any]:
    """What an observer gets from one server: its replies, or why none came."""
    try:
        return {
            "reachable": True,
            "myId": server.node_id(),
            "clusterNodes": server.call("CLUSTER", "NODES"),
            "clusterInfo": server.call("CLUSTER", "INFO"),
            "dbsize": int(server.value("DBSIZE")),
        }
    except RedisUnreachableError as err:
        return {"reachable": False, "error": str(err)}


def capture(
    servers: Iterable[RedisServer],
    *,
    spec: Mapping[str, Any],
    name: str = "demo",
    namespace: str = "default",
    status: Mapping[str, Any] | None = None,
    ready: Mapping[str, bool] | None = None,
    generation: int = 1,
) -> dict[str, Any]:
    """A ``kredis.snapshot/v1`` document observed from live servers.

    Each server is one pod named ``<name>-<ordinal>`` whose ip is the
    server's address. A pod is ready when its server answered, unless
    ``ready`` says otherwise. The StatefulSet counts every pod given.
    """
    observed_at = now_rfc3339()
    ordered = sorted(servers, key=lambda server: server.ordinal)
    pods = []
    redis: dict[str, Any] = {}
    for server in ordered:
        if server.pod != f"{name}-{server.ordinal}":
            raise HarnessError(f"pod {server.pod} is not named {name}-<ordinal>")
        observation = observe(server)
        redis[server.pod] = observation
        is_ready = (ready or {}).get(server.pod, observation["reachable"])
        pods.append(
            {
                "name": server.pod,
                "ip": server.ip,
                "phase": "Running",
                "ready": is_ready,
                "terminating": False,
                "nodeName": f"worker-{server.ordinal % 3}",
                "zone": f"zone-{'abc'[server.ordinal % 3]}",
            }
        )
    return {
        "format": "kredis.snapshot/v1",
        "observedAt": observed_at,
        "kredis": {
            "apiVersion": "kredis.io/v1alpha1",
            "kind": "Kredis",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "generation": generation,
                "uid": "integration-test",
            },
            "spec": dict(spec),
            "status": copy.deepcopy(dict(status or {})),
        },
        "statefulSet": {
            "replicas": len(pods),
            "readyReplicas": sum(1 for pod in pods if pod["ready"]),
        },
        "pods": pods,
        "redis": redis,
        "jobs": [],
    }
