"""The local runtime's state directory: its files, its owner and its addresses.

A state directory belongs to one cluster (``cluster.json``) and holds, as JSON
files written atomically, the StatefulSet's replica count, each pod's loopback
address and the Kredis status; once it is claimed, callers may keep files of
the same cluster beside them, and a purge deletes those too. This module reads
and writes those files and derives addresses; it starts no process and opens
no socket.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from kredis.domain.errors import KredisError, truncate
from kredis.domain.spec import MAX_PORT, MEMORY_UNITS_HELP, MIN_PORT, parse_memory

STATE_FORMAT = "kredis.local/v1"
CLUSTER_FILE = "cluster.json"
STATEFUL_SET_FILE = "statefulset.json"
ADDRESSES_FILE = "addresses.json"
STATUS_FILE = "status.json"
PODS_DIR = "pods"
JOBS_DIR = "jobs"
# Every name a state directory may hold, so that a purge never deletes a
# directory that is not ours.
STATE_ENTRIES = frozenset(
    {CLUSTER_FILE, STATEFUL_SET_FILE, ADDRESSES_FILE, STATUS_FILE, PODS_DIR, JOBS_DIR}
)
DEFAULT_NODE_TIMEOUT_MS = 2000
FIRST_HOST = 1
LAST_HOST = 254
# Pod and Job names are Kubernetes DNS labels.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class LocalRuntimeError(KredisError):
    """The local runtime could not do what was asked."""


class StateDirError(LocalRuntimeError):
    """The state directory is not this cluster's, or a file in it is damaged."""


class UnknownPodError(LocalRuntimeError):
    """A pod name that is not one of this cluster's pods."""


class AddressesExhaustedError(LocalRuntimeError):
    """Every loopback address of the cluster's /24 is held by a pod."""


def check_dns_label(kind: str, text: str) -> None:
    """Raise ``LocalRuntimeError`` unless ``text`` is a DNS label (a-z, 0-9, -)."""
    if not _DNS_LABEL.match(text):
        raise LocalRuntimeError(
            f"{kind} {text!r} is not a DNS label: expected 1 to 63 lowercase "
            "letters, digits or '-', starting and ending with a letter or digit"
        )


def cluster_subnet(*, namespace: str, name: str) -> str:
    """The loopback /24 ``127.<a>.<b>`` of a cluster, derived from its name.

    ``<a>`` is never 0, so neither 127.0.0.1 nor the 127.0.<k> addresses of
    the integration test harness are ever used.
    """
    # Limitation: one /24 per cluster, so at most 254 pods; two clusters
    # whose names hash alike share it, and the port check then refuses the
    # second one's pods.
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return f"127.{1 + digest[0] % 254}.{digest[1]}"


def pod_name(cluster: str, ordinal: int) -> str:
    """The StatefulSet pod name ``<cluster>-<ordinal>``."""
    return f"{cluster}-{ordinal}"


def ordinal_of(cluster: str, pod: str) -> int | None:
    """The ordinal of ``<cluster>-<ordinal>``, or None for another name."""
    prefix, _, number = pod.rpartition("-")
    if prefix != cluster or not number.isdigit() or str(int(number)) != number:
        return None
    return int(number)


@attrs.frozen
class ClusterRecord:
    """Whose state directory this is, and the settings its pods start with."""

    namespace: str
    name: str
    base_port: int
    max_memory: str
    node_timeout_ms: int
    subnet: str

    @classmethod
    def new(
        cls,
        *,
        namespace: str,
        name: str,
        base_port: int,
        max_memory: str,
        node_timeout_ms: int,
    ) -> ClusterRecord:
        """A checked record; raises ``LocalRuntimeError`` on a bad value."""
        check_dns_label("namespace", namespace)
        check_dns_label("cluster name", name)
        if not MIN_PORT <= base_port <= MAX_PORT:
            raise LocalRuntimeError(
                f"basePort must be {MIN_PORT}..{MAX_PORT} (the bus port is "
                f"basePort + 10000), got {base_port}"
            )
        if max_memory and parse_memory(max_memory) is None:
            raise LocalRuntimeError(
                f"maxMemory {max_memory!r} is not a Redis memory value: "
                f"{MEMORY_UNITS_HELP}"
            )
        if node_timeout_ms < 1:
            raise LocalRuntimeError(
                f"the node timeout must be a positive number of milliseconds, "
                f"got {node_timeout_ms}"
            )
        return cls(
            namespace=namespace,
            name=name,
            base_port=base_port,
            max_memory=max_memory,
            node_timeout_ms=node_timeout_ms,
            subnet=cluster_subnet(namespace=namespace, name=name),
        )

    @property
    def cluster(self) -> str:
        """``<namespace>/<name>``."""
        return f"{self.namespace}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        """The ``cluster.json`` document."""
        return {
            "format": STATE_FORMAT,
            "namespace": self.namespace,
            "name": self.name,
            "basePort": self.base_port,
            "maxMemory": self.max_memory,
            "nodeTimeoutMs": self.node_timeout_ms,
            "subnet": self.subnet,
        }

    @classmethod
    def from_json(cls, data: Any, *, path: Path) -> ClusterRecord:
        """Read ``cluster.json``; raises ``StateDirError`` when it is damaged."""
        try:
            if data.get("format") != STATE_FORMAT:
                raise ValueError(f"format is {data.get('format')!r}")
            return cls(
                namespace=str(data["namespace"]),
                name=str(data["name"]),
                base_port=int(data["basePort"]),
                max_memory=str(data["maxMemory"]),
                node_timeout_ms=int(data["nodeTimeoutMs"]),
                subnet=str(data["subnet"]),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise StateDirError(
                f"{path}: not a {STATE_FORMAT} cluster record ({err}); remove "
                "the state directory or choose another"
            ) from err


@attrs.frozen
class AddressBook:
    """Which loopback address each pod holds, and where to look for the next."""

    subnet: str
    pods: tuple[tuple[str, str], ...] = ()
    next_host: int = FIRST_HOST

    def get(self, pod: str) -> str | None:
        """The address a pod holds, if any."""
        return dict(self.pods).get(pod)

    def with_new_address(self, pod: str) -> AddressBook:
        """A book in which ``pod`` holds an address no other pod holds.

        The address also differs from the one the pod held before. Hosts are
        handed out in turn from ``next_host``, wrapping after the last.
        """
        current = self.get(pod)
        held = {address for other, address in self.pods if other != pod}
        count = LAST_HOST - FIRST_HOST + 1
        for step in range(count):
            host = FIRST_HOST + (self.next_host - FIRST_HOST + step) % count
            address = f"{self.subnet}.{host}"
            if address in held or address == current:
                continue
            pods = dict(self.pods)
            pods[pod] = address
            return attrs.evolve(
                self,
                pods=tuple(sorted(pods.items())),
                next_host=host + 1 if host < LAST_HOST else FIRST_HOST,
            )
        raise AddressesExhaustedError(
            f"no free loopback address left in {self.subnet}.0/24 for pod {pod}: "
            f"{len(held)} pods hold one each"
        )

    def to_json(self) -> dict[str, Any]:
        """The ``addresses.json`` document."""
        return {"pods": dict(self.pods), "nextHost": self.next_host}

    @classmethod
    def from_json(cls, data: Any, *, subnet: str, path: Path) -> AddressBook:
        """Read ``addresses.json``; raises ``StateDirError`` when it is damaged."""
        try:
            pods = {str(pod): str(address) for pod, address in data["pods"].items()}
            next_host = int(data["nextHost"])
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise StateDirError(
                f"{path}: not an address book ({err}); remove the file to hand "
                "out new addresses"
            ) from err
        return cls(subnet=subnet, pods=tuple(sorted(pods.items())), next_host=next_host)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write a JSON file atomically (temporary file, then rename), mode 0600."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically, readable only by its owner (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0600 before any byte is written.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any | None:
    """A JSON file's content, or None when it does not exist.

    Raises ``StateDirError`` when the file cannot be read or parsed.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StateDirError(f"{path}: cannot read: {err.strerror or err}") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise StateDirError(
            f"{path}: not JSON ({err.msg} at line {err.lineno}): "
            f"{truncate(text.strip(), 60)!r}"
        ) from err


class StateDir:
    """The files of a state directory: owner, replicas, addresses, status."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def cluster(self) -> ClusterRecord | None:
        """The cluster that owns the directory, None when none does.

        Raises ``StateDirError`` when the directory holds files of something
        else.
        """
        path = self.root / CLUSTER_FILE
        data = read_json(path)
        if data is not None:
            return ClusterRecord.from_json(data, path=path)
        strangers = self._entries()
        if strangers:
            raise StateDirError(
                f"{self.root} is not a kredis local state dir: it holds "
                f"{', '.join(strangers[:3])} but no {CLUSTER_FILE}; choose an "
                "empty or new directory"
            )
        return None

    def write_cluster(self, cluster: ClusterRecord) -> None:
        """Store the owner and its settings, creating the directory (0700)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json(self.root / CLUSTER_FILE, cluster.to_json())

    def replicas(self) -> int | None:
        """The StatefulSet's replica count, None before the first scale."""
        path = self.root / STATEFUL_SET_FILE
        data = read_json(path)
        if data is None:
            return None
        replicas = data.get("replicas") if isinstance(data, dict) else None
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise StateDirError(f"{path}: expected {{'replicas': <n>}}, found {data!r}")
        return replicas

    def write_replicas(self, replicas: int) -> None:
        """Store the StatefulSet's replica count."""
        write_json(self.root / STATEFUL_SET_FILE, {"replicas": replicas})

    def address_book(self, cluster: ClusterRecord) -> AddressBook:
        """Which address each pod holds."""
        path = self.root / ADDRESSES_FILE
        data = read_json(path)
        if data is None:
            return AddressBook(subnet=cluster.subnet)
        return AddressBook.from_json(data, subnet=cluster.subnet, path=path)

    def write_address_book(self, book: AddressBook) -> None:
        """Store which address each pod holds."""
        write_json(self.root / ADDRESSES_FILE, book.to_json())

    def read_status(self) -> Any | None:
        """The stored Kredis status document; raises when it is damaged."""
        return read_json(self.root / STATUS_FILE)

    def write_status(self, status: Mapping[str, Any]) -> None:
        """Store the Kredis status."""
        write_json(self.root / STATUS_FILE, status)

    def purge(self) -> None:
        """Delete the directory with everything in it, once it is a cluster's.

        A directory without ``cluster.json`` is deleted only when it holds
        nothing but files of a state directory.
        """
        if not self.root.is_dir():
            return
        strangers = [] if (self.root / CLUSTER_FILE).is_file() else self._entries()
        if strangers:
            raise StateDirError(
                f"not purging {self.root}: it holds files kredis did not write "
                f"({', '.join(strangers[:3])})"
            )
        shutil.rmtree(self.root)

    def _entries(self) -> list[str]:
        # Names that are not ours; hidden files are temporary files of ours.
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if entry.name not in STATE_ENTRIES and not entry.name.startswith(".")
        )
