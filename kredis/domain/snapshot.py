"""The observed snapshot (``kredis.snapshot/v1``): values and the JSON reader.

Everything one observation pass saw, parsed once at the edge into frozen
values. The reader names the exact field that is wrong; it never guesses a
value that is missing. It does no I/O: callers hand it decoded JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import attrs

from kredis.domain.errors import ClusterNodesError, SnapshotError, truncate
from kredis.domain.nodes import ClusterInfo, ClusterView
from kredis.domain.status import KredisStatus, read_status

SNAPSHOT_FORMAT = "kredis.snapshot/v1"


@attrs.frozen
class KredisResource:
    """The Kredis object as observed: identity, raw spec and last status."""

    name: str
    namespace: str
    generation: int
    uid: str
    spec: Mapping[str, Any] = attrs.field(eq=False, repr=False)
    status: KredisStatus
    raw: Mapping[str, Any] = attrs.field(eq=False, repr=False)

    @property
    def key(self) -> str:
        """``namespace/name``, how the cluster is named in plans and logs."""
        return f"{self.namespace}/{self.name}"


@attrs.frozen
class StatefulSetInfo:
    """The StatefulSet's replica counts."""

    replicas: int
    ready_replicas: int


@attrs.frozen(order=True)
class PodInfo:
    """One pod of the StatefulSet; sorts by ordinal."""

    ordinal: int
    name: str
    ip: str
    phase: str
    ready: bool
    terminating: bool
    node_name: str
    zone: str


@attrs.frozen
class RedisObservation:
    """What the observer got from one pod's Redis node."""

    reachable: bool
    my_id: str = ""
    view: ClusterView | None = None
    info: ClusterInfo | None = None
    dbsize: int = 0
    error: str = ""
    raw_nodes: str = attrs.field(default="", eq=False, repr=False)
    raw_info: str = attrs.field(default="", eq=False, repr=False)


@attrs.frozen
class JobCondition:
    """One condition of a Job's status."""

    type: str
    status: bool


@attrs.frozen
class JobInfo:
    """A Job of the cluster as observed."""

    name: str
    labels: Mapping[str, str] = attrs.field(eq=False)
    annotations: Mapping[str, str] = attrs.field(eq=False)
    active: int
    succeeded: int
    failed: int
    conditions: tuple[JobCondition, ...]

    def _has(self, kind: str) -> bool:
        return any(c.type == kind and c.status for c in self.conditions)

    @property
    def is_failed(self) -> bool:
        """Failed only when the Job's ``Failed`` condition is true."""
        return self._has("Failed")

    @property
    def is_complete(self) -> bool:
        """Complete only when the Job's ``Complete`` condition is true."""
        return self._has("Complete")

    @property
    def is_finished(self) -> bool:
        """The Job will not run again."""
        return self.is_failed or self.is_complete


@attrs.frozen
class Snapshot:
    """One observation pass: resource, StatefulSet, pods, nodes and Jobs."""

    observed_at: str
    observed_ms: int
    resource: KredisResource
    stateful_set: StatefulSetInfo | None
    pods: tuple[PodInfo, ...]
    redis: Mapping[str, RedisObservation] = attrs.field(eq=False, repr=False)
    jobs: tuple[JobInfo, ...]

    def pod(self, name: str) -> PodInfo | None:
        """The pod with a name, if observed."""
        for pod in self.pods:
            if pod.name == name:
                return pod
        return None


def ordinal_of(pod_name: str, cluster_name: str) -> int | None:
    """The StatefulSet ordinal in ``<cluster>-<n>``, or None if not ours."""
    prefix = cluster_name + "-"
    suffix = pod_name[len(prefix) :]
    if not pod_name.startswith(prefix) or not suffix.isdigit():
        return None
    return int(suffix)


def load_snapshot(data: object) -> Snapshot:
    """Read decoded snapshot JSON; raise ``SnapshotError`` naming the bad field."""
    root = _object(data, "snapshot")
    fmt = _string(root, "format", "")
    if fmt != SNAPSHOT_FORMAT:
        raise SnapshotError("format", f"expected {SNAPSHOT_FORMAT!r}, got {fmt!r}")
    observed_at = _string(root, "observedAt", "")
    observed_ms = _timestamp_ms(observed_at, "observedAt")

    resource = _resource(_object(root.get("kredis"), "kredis"))
    stateful_set = _stateful_set(root.get("statefulSet"))
    pods = _pods(root.get("pods"), resource.name)
    redis = _redis(root.get("redis"), {pod.name for pod in pods})
    jobs = _jobs(root.get("jobs"))
    return Snapshot(
        observed_at=observed_at,
        observed_ms=observed_ms,
        resource=resource,
        stateful_set=stateful_set,
        pods=pods,
        redis=MappingProxyType(redis),
        jobs=jobs,
    )


def _object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        found = "nothing" if value is None else type(value).__name__
        raise SnapshotError(path, f"expected an object, found {found}")
    return value


def _array(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        found = "nothing" if value is None else type(value).__name__
        raise SnapshotError(path, f"expected a list, found {found}")
    return value


def _field(obj: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in obj:
        raise SnapshotError(f"{path}.{key}" if path else key, "required field missing")
    return obj[key]


def _string(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = _field(obj, key, path)
    if not isinstance(value, str):
        name = f"{path}.{key}" if path else key
        raise SnapshotError(name, f"expected a string, found {value!r}")
    return value


def _integer(obj: Mapping[str, Any], key: str, path: str) -> int:
    value = _field(obj, key, path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SnapshotError(f"{path}.{key}", f"expected an integer, found {value!r}")
    return value


def _boolean(obj: Mapping[str, Any], key: str, path: str) -> bool:
    value = _field(obj, key, path)
    if not isinstance(value, bool):
        raise SnapshotError(f"{path}.{key}", f"expected true or false, found {value!r}")
    return value


def _count(obj: Mapping[str, Any], key: str, path: str) -> int:
    value = obj.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SnapshotError(f"{path}.{key}", f"expected a count, found {value!r}")
    return value


def _optional_string(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SnapshotError(f"{path}.{key}", f"expected a string, found {value!r}")
    return value


def _timestamp_ms(text: str, path: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SnapshotError(
            path,
            f"expected an RFC 3339 time such as 2026-12-03T12:00:00Z, "
            f"found {truncate(text)!r}",
        ) from None
    if moment.tzinfo is None:
        raise SnapshotError(path, f"time {text!r} has no time zone (add Z)")
    return int(moment.timestamp() * 1000)


def _resource(obj: Mapping[str, Any]) -> KredisResource:
    metadata = _object(obj.get("metadata"), "kredis.metadata")
    spec = _object(obj.get("spec"), "kredis.spec")
    raw_status = obj.get("status")
    if raw_status is None:
        raw_status = {}
    status = read_status(_object(raw_status, "kredis.status"))
    name = _string(metadata, "name", "kredis.metadata")
    if not name:
        raise SnapshotError("kredis.metadata.name", "must not be empty")
    generation = metadata.get("generation", 0)
    if isinstance(generation, bool) or not isinstance(generation, int):
        raise SnapshotError(
            "kredis.metadata.generation", f"expected an integer, found {generation!r}"
        )
    return KredisResource(
        name=name,
        namespace=_string(metadata, "namespace", "kredis.metadata"),
        generation=generation,
        uid=_optional_string(metadata, "uid", "kredis.metadata"),
        spec=MappingProxyType(dict(spec)),
        status=status,
        raw=MappingProxyType(dict(obj)),
    )


def _stateful_set(value: object) -> StatefulSetInfo | None:
    if value is None:
        return None
    obj = _object(value, "statefulSet")
    return StatefulSetInfo(
        replicas=_integer(obj, "replicas", "statefulSet"),
        ready_replicas=_integer(obj, "readyReplicas", "statefulSet"),
    )


def _pods(value: object, cluster_name: str) -> tuple[PodInfo, ...]:
    pods: list[PodInfo] = []
    for index, item in enumerate(_array(value, "pods")):
        path = f"pods[{index}]"
        obj = _object(item, path)
        name = _string(obj, "name", path)
        ordinal = ordinal_of(name, cluster_name)
        if ordinal is None:
            raise SnapshotError(
                f"{path}.name",
                f"pod {name!r} is not named {cluster_name}-<ordinal>",
            )
        pods.append(
            PodInfo(
                ordinal=ordinal,
                name=name,
                ip=_optional_string(obj, "ip", path),
                phase=_optional_string(obj, "phase", path),
                ready=_boolean(obj, "ready", path),
                terminating=obj.get("terminating") is True,
                node_name=_optional_string(obj, "nodeName", path),
                zone=_optional_string(obj, "zone", path),
            )
        )
    names = [pod.name for pod in pods]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SnapshotError("pods", f"pod names appear twice: {duplicates}")
    return tuple(sorted(pods))


def _redis(value: object, pod_names: set[str]) -> dict[str, RedisObservation]:
    observations: dict[str, RedisObservation] = {}
    for pod_name, item in _object(value, "redis").items():
        path = f"redis.{pod_name}"
        if pod_name not in pod_names:
            raise SnapshotError(path, "names a pod that is not in pods")
        obj = _object(item, path)
        if not _boolean(obj, "reachable", path):
            observations[pod_name] = RedisObservation(
                reachable=False, error=truncate(_optional_string(obj, "error", path))
            )
            continue
        observations[pod_name] = _reachable(obj, path)
    return observations


def _reachable(obj: Mapping[str, Any], path: str) -> RedisObservation:
    my_id = _string(obj, "myId", path)
    raw_nodes = _string(obj, "clusterNodes", path)
    raw_info = _string(obj, "clusterInfo", path)
    dbsize = _integer(obj, "dbsize", path)
    try:
        view = ClusterView.parse(raw_nodes)
    except ClusterNodesError as err:
        raise SnapshotError(f"{path}.clusterNodes", str(err)) from None
    if view.myself.node_id != my_id:
        raise SnapshotError(
            f"{path}.myId",
            f"{my_id!r} differs from the myself line {view.myself.node_id!r}",
        )
    try:
        info = ClusterInfo.parse(raw_info)
    except ClusterNodesError as err:
        raise SnapshotError(f"{path}.clusterInfo", str(err)) from None
    return RedisObservation(
        reachable=True,
        my_id=my_id,
        view=view,
        info=info,
        dbsize=dbsize,
        raw_nodes=raw_nodes,
        raw_info=raw_info,
    )


def _jobs(value: object) -> tuple[JobInfo, ...]:
    if value is None:
        return ()
    jobs: list[JobInfo] = []
    for index, item in enumerate(_array(value, "jobs")):
        path = f"jobs[{index}]"
        obj = _object(item, path)
        conditions = []
        for c_index, raw in enumerate(_array(obj.get("conditions", []), path)):
            c_path = f"{path}.conditions[{c_index}]"
            condition = _object(raw, c_path)
            conditions.append(
                JobCondition(
                    type=_string(condition, "type", c_path),
                    status=_string(condition, "status", c_path) == "True",
                )
            )
        jobs.append(
            JobInfo(
                name=_string(obj, "name", path),
                labels=MappingProxyType(dict(obj.get("labels") or {})),
                annotations=MappingProxyType(dict(obj.get("annotations") or {})),
                active=_count(obj, "active", path),
                succeeded=_count(obj, "succeeded", path),
                failed=_count(obj, "failed", path),
                conditions=tuple(conditions),
            )
        )
    return tuple(sorted(jobs, key=lambda job: job.name))
