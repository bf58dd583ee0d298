"""The status kredis writes on a Kredis resource, as frozen values.

Holds the status model, its JSON form and a lenient reader for the status an
earlier pass wrote. It decides nothing: the planner fills it in.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs

from kredis.domain.slots import SlotRange

_E = TypeVar("_E", bound=enum.Enum)


class ClusterState(enum.Enum):
    """The one-word state of a cluster, always set."""

    CREATING = "Creating"
    RUNNING = "Running"
    SCALING = "Scaling"
    SCALING_DOWN = "ScalingDown"
    REBALANCING = "Rebalancing"
    HEALING = "Healing"
    DEGRADED = "Degraded"
    FAILED = "Failed"


class NodeRole(enum.Enum):
    """A node's role as recorded in status."""

    MASTER = "master"
    REPLICA = "replica"
    UNKNOWN = "unknown"


class NodeHealth(enum.Enum):
    """A pod's node as recorded in status."""

    OK = "ok"
    SUSPECTED = "suspected"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    NOT_MEMBER = "not-member"


class ConditionType(enum.Enum):
    """The conditions kredis maintains."""

    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


@attrs.frozen
class Condition:
    """A Kubernetes-style condition with the generation it describes."""

    type: ConditionType
    status: bool
    reason: str
    message: str
    observed_generation: int
    last_transition_time: str

    def to_json(self) -> dict[str, Any]:
        """The wire form, as in metav1.Condition."""
        return {
            "type": self.type.value,
            "status": "True" if self.status else "False",
            "reason": self.reason,
            "message": self.message,
            "observedGeneration": self.observed_generation,
            "lastTransitionTime": self.last_transition_time,
        }


@attrs.frozen
class ClusterNodeStatus:
    """What status records about one pod's Redis node."""

    pod_name: str
    node_id: str
    ip: str
    port: int
    role: NodeRole
    master_id: str
    slot_count: int
    status: NodeHealth
    previous_node_id: str = ""

    def to_json(self) -> dict[str, Any]:
        """The wire form."""
        data: dict[str, Any] = {
            "podName": self.pod_name,
            "nodeId": self.node_id,
            "ip": self.ip,
            "port": self.port,
            "role": self.role.value,
            "masterId": self.master_id,
            "slotCount": self.slot_count,
            "status": self.status.value,
        }
        if self.previous_node_id:
            data["previousNodeId"] = self.previous_node_id
        return data


@attrs.frozen
class SlotMove:
    """Slots that one migration moves from one node to another."""

    source: str
    target: str
    slots: tuple[SlotRange, ...]

    def to_json(self) -> dict[str, Any]:
        """The wire form."""
        return {
            "source": self.source,
            "target": self.target,
            "slots": [r.to_json() for r in self.slots],
        }


class OperationKind(enum.Enum):
    """Why a migration runs; it decides the state shown while it runs."""

    SCALE_UP = "scale-up"
    SCALE_DOWN = "scale-down"
    REBALANCE = "rebalance"


@attrs.frozen
class MigrationStatus:
    """The migration Job in flight and how far it got."""

    job: str
    kind: OperationKind
    moves: tuple[SlotMove, ...]
    slots_total: int
    slots_moved: int
    started_at: str

    def to_json(self) -> dict[str, Any]:
        """The wire form."""
        return {
            "job": self.job,
            "kind": self.kind.value,
            "moves": [move.to_json() for move in self.moves],
            "slotsTotal": self.slots_total,
            "slotsMoved": self.slots_moved,
            "startedAt": self.started_at,
        }


@attrs.frozen
class KredisStatus:
    """The whole status subresource of a Kredis."""

    cluster_state: ClusterState | None = None
    cluster_formed: bool = False
    observed_generation: int = 0
    joined_pods: tuple[str, ...] = ()
    cluster_nodes: tuple[ClusterNodeStatus, ...] = ()
    conditions: tuple[Condition, ...] = ()
    migration: MigrationStatus | None = None
    migration_failures: int = 0
    warnings: tuple[str, ...] = ()
    last_cluster_operation: str = ""

    def node_of(self, pod_name: str) -> ClusterNodeStatus | None:
        """The recorded node of a pod, if any."""
        for node in self.cluster_nodes:
            if node.pod_name == pod_name:
                return node
        return None

    def condition(self, kind: ConditionType) -> Condition | None:
        """The condition of a type, if recorded."""
        for condition in self.conditions:
            if condition.type is kind:
                return condition
        return None

    def with_failed_action(self, *, message: str, at: str) -> KredisStatus:
        """This status once an action of its plan failed: Degraded, and why.

        ``at`` is the time of the failure (RFC 3339), used when the Degraded
        condition changes.
        """
        conditions = []
        for condition in self.conditions:
            if condition.type is ConditionType.DEGRADED:
                since = condition.last_transition_time if condition.status else at
                condition = attrs.evolve(
                    condition,
                    status=True,
                    reason="ActionFailed",
                    message=message,
                    last_transition_time=since,
                )
            conditions.append(condition)
        return attrs.evolve(
            self,
            conditions=tuple(conditions),
            last_cluster_operation=message,
        )

    def to_json(self) -> dict[str, Any]:
        """The wire form written to the status subresource."""
        return {
            "clusterState": self.cluster_state.value if self.cluster_state else "",
            "clusterFormed": self.cluster_formed,
            "observedGeneration": self.observed_generation,
            "joinedPods": list(self.joined_pods),
            "clusterNodes": [node.to_json() for node in self.cluster_nodes],
            "conditions": [condition.to_json() for condition in self.conditions],
            "migration": self.migration.to_json() if self.migration else None,
            "migrationFailures": self.migration_failures,
            "warnings": list(self.warnings),
            "lastClusterOperation": self.last_cluster_operation,
        }


def read_status(raw: Mapping[str, Any]) -> KredisStatus:
    """Read an earlier pass's status leniently: unknown or bad parts are dropped.

    Status is our own memory, not user input; a field we cannot read is
    treated as absent, never as an error, so a damaged status cannot wedge
    the operator.
    """
    return KredisStatus(
        cluster_state=_enum(ClusterState, raw.get("clusterState")),
        cluster_formed=raw.get("clusterFormed") is True,
        observed_generation=_int(raw.get("observedGeneration")),
        joined_pods=tuple(
            p for p in _list(raw.get("joinedPods")) if isinstance(p, str)
        ),
        cluster_nodes=tuple(
            node
            for node in (_node(item) for item in _list(raw.get("clusterNodes")))
            if node is not None
        ),
        conditions=tuple(
            condition
            for condition in (_condition(item) for item in _list(raw.get("conditions")))
            if condition is not None
        ),
        migration=_migration(raw.get("migration")),
        migration_failures=_int(raw.get("migrationFailures")),
        warnings=tuple(w for w in _list(raw.get("warnings")) if isinstance(w, str)),
        last_cluster_operation=_str(raw.get("lastClusterOperation")),
    )


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value


def _enum(kind: type[_E], value: object) -> _E | None:
    try:
        return kind(value)
    except ValueError:
        return None


def _node(item: object) -> ClusterNodeStatus | None:
    if not isinstance(item, dict) or not _str(item.get("podName")):
        return None
    return ClusterNodeStatus(
        pod_name=_str(item.get("podName")),
        node_id=_str(item.get("nodeId")),
        ip=_str(item.get("ip")),
        port=_int(item.get("port")),
        role=_enum(NodeRole, item.get("role")) or NodeRole.UNKNOWN,
        master_id=_str(item.get("masterId")),
        slot_count=_int(item.get("slotCount")),
        status=_enum(NodeHealth, item.get("status")) or NodeHealth.UNREACHABLE,
        previous_node_id=_str(item.get("previousNodeId")),
    )


def _condition(item: object) -> Condition | None:
    if not isinstance(item, dict):
        return None
    kind = _enum(ConditionType, item.get("type"))
    if kind is None:
        return None
    return Condition(
        type=kind,
        status=item.get("status") == "True",
        reason=_str(item.get("reason")),
        message=_str(item.get("message")),
        observed_generation=_int(item.get("observedGeneration")),
        last_transition_time=_str(item.get("lastTransitionTime")),
    )


def _migration(item: object) -> MigrationStatus | None:
    if not isinstance(item, dict) or not _str(item.get("job")):
        return None
    moves: list[SlotMove] = []
    for move in _list(item.get("moves")):
        if not isinstance(move, dict):
            continue
        try:
            ranges = tuple(SlotRange(int(a), int(b)) for a, b in _list(move["slots"]))
        except (KeyError, TypeError, ValueError):
            continue
        moves.append(
            SlotMove(
                source=_str(move.get("source")),
                target=_str(move.get("target")),
                slots=ranges,
            )
        )
    return MigrationStatus(
        job=_str(item.get("job")),
        kind=_enum(OperationKind, item.get("kind")) or OperationKind.REBALANCE,
        moves=tuple(moves),
        slots_total=_int(item.get("slotsTotal")),
        slots_moved=_int(item.get("slotsMoved")),
        started_at=_str(item.get("startedAt")),
    )
