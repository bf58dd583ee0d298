"""The planner: one pure function from an observed snapshot to a plan.

``plan`` validates the spec, builds the cluster picture, picks creation or the
formed-cluster steps, and writes the complete status the operator would store.
The same snapshot always gives the same plan.
"""

from __future__ import annotations

from typing import Any

import attrs

from kredis.domain.actions import Action, Wait, action_to_json, is_mutating
from kredis.domain.context import Context, Outcome, PlannerSettings
from kredis.domain.create import plan_create, resumes_creation
from kredis.domain.formed import plan_formed
from kredis.domain.snapshot import Snapshot
from kredis.domain.spec import check_spec
from kredis.domain.status import (
    ClusterNodeStatus,
    ClusterState,
    Condition,
    ConditionType,
    KredisStatus,
    NodeHealth,
    NodeRole,
)
from kredis.domain.topology import PodNode, Topology, build_topology

PLAN_FORMAT = "kredis.plan/v1"


@attrs.frozen
class Plan:
    """The next safe step: ordered actions and the status to write."""

    cluster: str
    cluster_state: ClusterState
    actions: tuple[Action, ...]
    status: KredisStatus
    command_pod: str

    @property
    def mutating(self) -> bool:
        """Whether any action changes the cluster or Kubernetes."""
        return any(is_mutating(action) for action in self.actions)

    def to_json(self) -> dict[str, Any]:
        """The ``kredis.plan/v1`` wire form."""
        return {
            "format": PLAN_FORMAT,
            "cluster": self.cluster,
            "clusterState": self.cluster_state.value,
            "commandPod": self.command_pod,
            "actions": [action_to_json(action) for action in self.actions],
            "status": self.status.to_json(),
        }


def plan(snapshot: Snapshot, settings: PlannerSettings | None = None) -> Plan:
    """Decide the next safe step for the observed cluster."""
    settings = settings or PlannerSettings()
    resource = snapshot.resource
    topology = build_topology(snapshot)
    check = check_spec(resource.spec)

    if check.spec is None:
        reason = "the spec is invalid: " + "; ".join(check.problems)
        outcome = Outcome(
            actions=(Wait(reason=reason + "; nothing changes until it is fixed"),),
            state=ClusterState.FAILED,
            summary=reason,
            problem=reason,
            formed=resource.status.cluster_formed or topology.formed,
            migration=resource.status.migration,
            migration_failures=resource.status.migration_failures,
        )
        warnings: tuple[str, ...] = ()
    else:
        ctx = Context(
            snapshot=snapshot, spec=check.spec, topology=topology, settings=settings
        )
        outcome = plan_create(ctx) if resumes_creation(ctx) else plan_formed(ctx)
        warnings = check.warnings

    status = _status(snapshot, topology, outcome, warnings)
    return Plan(
        cluster=resource.key,
        cluster_state=outcome.state,
        actions=outcome.actions,
        status=status,
        command_pod=_command_pod(topology, outcome),
    )


def _command_pod(topology: Topology, outcome: Outcome) -> str:
    # A joined master with slots, else any joined member; during creation
    # the first pod, which receives the first slots.
    if topology.reference:
        return topology.reference
    if not outcome.formed and topology.pods:
        return topology.pods[0].name
    return ""


def _status(
    snapshot: Snapshot,
    topology: Topology,
    outcome: Outcome,
    warnings: tuple[str, ...],
) -> KredisStatus:
    resource = snapshot.resource
    previous = resource.status
    nodes = tuple(_node_status(snapshot, topology, p) for p in topology.pods)
    formed = previous.cluster_formed or (outcome.formed and topology.formed)
    conditions = _conditions(snapshot, topology, outcome)
    return KredisStatus(
        cluster_state=outcome.state,
        cluster_formed=formed,
        observed_generation=resource.generation,
        joined_pods=tuple(p.name for p in topology.members),
        cluster_nodes=nodes,
        conditions=conditions,
        migration=outcome.migration,
        migration_failures=outcome.migration_failures,
        warnings=warnings,
        last_cluster_operation=outcome.summary,
    )


def _node_status(
    snapshot: Snapshot, topology: Topology, pod_node: PodNode
) -> ClusterNodeStatus:
    node_id = pod_node.node_id or pod_node.recorded_id
    entry = topology.nodes.get(node_id)
    if entry is None and pod_node.view is not None:
        entry = pod_node.view.myself
    if not pod_node.reachable:
        health = NodeHealth.UNREACHABLE
    elif not pod_node.member:
        health = NodeHealth.NOT_MEMBER
    elif entry is not None and entry.is_failed:
        health = NodeHealth.FAILED
    elif entry is not None and entry.is_suspected:
        health = NodeHealth.SUSPECTED
    else:
        health = NodeHealth.OK
    role = NodeRole.UNKNOWN
    if entry is not None and entry.is_master:
        role = NodeRole.MASTER
    elif entry is not None and entry.is_replica:
        role = NodeRole.REPLICA
    previous = snapshot.resource.status.node_of(pod_node.name)
    port = entry.port if entry is not None else (previous.port if previous else 0)
    return ClusterNodeStatus(
        pod_name=pod_node.name,
        node_id=node_id,
        ip=pod_node.pod.ip,
        port=port,
        role=role,
        master_id=(entry.master_id or "") if entry is not None else "",
        slot_count=entry.slot_count if entry is not None else 0,
        status=health,
        previous_node_id=pod_node.lost_id,
    )


def _conditions(
    snapshot: Snapshot, topology: Topology, outcome: Outcome
) -> tuple[Condition, ...]:
    previous = snapshot.resource.status
    generation = snapshot.resource.generation
    state = outcome.state
    unhealthy = [n for n in topology.nodes.values() if n.is_failed or n.is_suspected]
    degraded = state in (ClusterState.DEGRADED, ClusterState.FAILED) or bool(unhealthy)
    if outcome.problem:
        degraded_message = outcome.problem
    elif unhealthy:
        degraded_message = f"{len(unhealthy)} nodes are reported down"
    else:
        degraded_message = "every node is healthy"
    progressing = outcome.mutating or outcome.migration is not None
    wanted = (
        (
            ConditionType.READY,
            state is ClusterState.RUNNING,
            state.value,
            outcome.summary,
        ),
        (
            ConditionType.PROGRESSING,
            progressing,
            state.value if progressing else "Idle",
            outcome.summary if progressing else "no change in progress",
        ),
        (
            ConditionType.DEGRADED,
            degraded,
            state.value if degraded else "Healthy",
            degraded_message,
        ),
    )
    conditions = []
    for kind, value, reason, message in wanted:
        before = previous.condition(kind)
        since = snapshot.observed_at
        if before is not None and before.status == value:
            since = before.last_transition_time or since
        conditions.append(
            Condition(
                type=kind,
                status=value,
                reason=reason,
                message=message,
                observed_generation=generation,
                last_transition_time=since,
            )
        )
    return tuple(conditions)
