"""The actions a plan is made of: one frozen class per kind of step.

Each action names its target in pod and node-id terms and carries the reason
the dry run prints. Actions describe what to do; they never do it.
"""

from __future__ import annotations

import enum
from typing import Any, assert_never

import attrs

from kredis.domain.slots import SlotRange


class ActionKind(enum.Enum):
    """The ``action`` field of a plan entry."""

    RESET_NODE = "reset-node"
    MEET_NODE = "meet-node"
    ASSIGN_SLOTS = "assign-slots"
    REPLICATE = "replicate"
    MIGRATE_SLOTS = "migrate-slots"
    FINISH_MIGRATION = "finish-migration"
    FAILOVER = "failover"
    FORGET_NODE = "forget-node"
    SCALE_STATEFULSET = "scale-statefulset"
    DELETE_JOB = "delete-job"
    WAIT = "wait"


class FailoverMode(enum.Enum):
    """How CLUSTER FAILOVER is asked: coordinated, forced or by takeover."""

    DEFAULT = "default"
    FORCE = "force"
    TAKEOVER = "takeover"


def _slots(ranges: tuple[SlotRange, ...]) -> list[list[int]]:
    return [r.to_json() for r in ranges]


@attrs.frozen
class ResetNode:
    """FLUSHALL and CLUSTER RESET on a pod that is dirty and not a member."""

    pod: str
    reason: str


@attrs.frozen
class MeetNode:
    """CLUSTER MEET the pod's address from a member (the command pod)."""

    pod: str
    reason: str


@attrs.frozen
class AssignSlots:
    """Give a master slots that no live node holds.

    ``config_epoch`` is set on a fresh master before it meets anyone (cluster
    creation). ``from_node_id`` names a failed node whose slots are taken over
    because their data is already gone.
    """

    pod: str
    slots: tuple[SlotRange, ...]
    reason: str
    config_epoch: int | None = None
    from_node_id: str | None = None


@attrs.frozen
class Replicate:
    """CLUSTER REPLICATE: make the pod a replica of a master."""

    pod: str
    master_pod: str
    master_id: str
    reason: str


@attrs.frozen
class MigrateSlots:
    """Move slots with their keys; actions sharing ``job`` run as one Job."""

    source: str
    source_id: str
    target: str
    target_id: str
    slots: tuple[SlotRange, ...]
    job: str
    reason: str


@attrs.frozen
class FinishMigration:
    """Complete a slot left open by an interrupted migration, toward target."""

    slots: tuple[SlotRange, ...]
    source: str
    source_id: str
    target: str
    target_id: str
    reason: str


@attrs.frozen
class Failover:
    """CLUSTER FAILOVER on a replica, promoting it to master."""

    pod: str
    mode: FailoverMode
    reason: str


@attrs.frozen
class ForgetNode:
    """CLUSTER FORGET a node id on every remaining node."""

    node_id: str
    reason: str
    pod: str = ""


@attrs.frozen
class ScaleStatefulSet:
    """Create the StatefulSet or set its replica count."""

    replicas: int
    reason: str


@attrs.frozen
class DeleteJob:
    """Delete a finished migration Job."""

    job: str
    reason: str


@attrs.frozen
class Wait:
    """Nothing to do until something changes; the reason says what."""

    reason: str


Action = (
    ResetNode
    | MeetNode
    | AssignSlots
    | Replicate
    | MigrateSlots
    | FinishMigration
    | Failover
    | ForgetNode
    | ScaleStatefulSet
    | DeleteJob
    | Wait
)


def kind_of(action: Action) -> ActionKind:
    """The ActionKind of an action."""
    match action:
        case ResetNode():
            return ActionKind.RESET_NODE
        case MeetNode():
            return ActionKind.MEET_NODE
        case AssignSlots():
            return ActionKind.ASSIGN_SLOTS
        case Replicate():
            return ActionKind.REPLICATE
        case MigrateSlots():
            return ActionKind.MIGRATE_SLOTS
        case FinishMigration():
            return ActionKind.FINISH_MIGRATION
        case Failover():
            return ActionKind.FAILOVER
        case ForgetNode():
            return ActionKind.FORGET_NODE
        case ScaleStatefulSet():
            return ActionKind.SCALE_STATEFULSET
        case DeleteJob():
            return ActionKind.DELETE_JOB
        case Wait():
            return ActionKind.WAIT
        case _:
            assert_never(action)


def is_mutating(action: Action) -> bool:
    """Whether applying the action changes the cluster or Kubernetes."""
    return not isinstance(action, Wait)


def action_to_json(action: Action) -> dict[str, Any]:
    """The wire form of one action, ``action`` and ``reason`` included."""
    data: dict[str, Any] = {"action": kind_of(action).value}
    match action:
        case ResetNode(pod=pod) | MeetNode(pod=pod):
            data["pod"] = pod
        case AssignSlots():
            data["pod"] = action.pod
            data["slots"] = _slots(action.slots)
            if action.config_epoch is not None:
                data["configEpoch"] = action.config_epoch
            if action.from_node_id is not None:
                data["fromNodeId"] = action.from_node_id
        case Replicate():
            data.update(
                pod=action.pod, masterPod=action.master_pod, masterId=action.master_id
            )
        case MigrateSlots():
            data.update(
                source=action.source,
                sourceId=action.source_id,
                target=action.target,
                targetId=action.target_id,
                slots=_slots(action.slots),
                job=action.job,
            )
        case FinishMigration():
            data.update(
                slots=_slots(action.slots),
                source=action.source,
                sourceId=action.source_id,
                target=action.target,
                targetId=action.target_id,
            )
        case Failover():
            data.update(pod=action.pod, mode=action.mode.value)
        case ForgetNode():
            data["nodeId"] = action.node_id
            if action.pod:
                data["pod"] = action.pod
        case ScaleStatefulSet():
            data["replicas"] = action.replicas
        case DeleteJob():
            data["job"] = action.job
        case Wait():
            pass
        case _:
            assert_never(action)
    data["reason"] = action.reason
    return data
