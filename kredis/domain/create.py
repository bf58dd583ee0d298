"""Creating a cluster that never formed: layout, resets, slots, meets, replicas.

Plans only for a cluster that never held slots, or one whose creation was
interrupted with every slot holder still exactly on the planned layout and no
keys anywhere. It never touches a cluster that formed.
"""

from __future__ import annotations

import attrs

from kredis.domain.actions import (
    Action,
    AssignSlots,
    MeetNode,
    Replicate,
    ResetNode,
    ScaleStatefulSet,
    Wait,
)
from kredis.domain.context import Context, Outcome
from kredis.domain.placement import Seat, choose_master
from kredis.domain.slots import SlotRange, allocate_ranges
from kredis.domain.status import ClusterState
from kredis.domain.topology import PodNode


@attrs.frozen
class Layout:
    """The planned shape of a new cluster: masters with ranges, replicas."""

    masters: tuple[tuple[PodNode, SlotRange], ...]
    replicas: tuple[tuple[PodNode, PodNode], ...]


def plan_layout(ctx: Context, pods: tuple[PodNode, ...]) -> Layout:
    """Masters are the first ordinals; each round of replicas is rotated.

    Replicas are dealt to masters in rounds of one per master. Within a round
    the rotation with the fewest replicas on their master's Kubernetes node,
    then in their master's zone, wins; ties go to the smallest rotation.
    """
    spec = ctx.spec
    ranges = allocate_ranges(spec.masters)
    masters = tuple(zip(pods[: spec.masters], ranges, strict=True))
    chosen = [p for p, _ in masters]
    extra = list(pods[spec.masters :])
    replicas: list[tuple[PodNode, PodNode]] = []
    for start in range(0, len(extra), spec.masters):
        round_pods = extra[start : start + spec.masters]
        best = min(
            range(spec.masters),
            key=lambda shift: (_clashes(round_pods, chosen, shift), shift),
        )
        for index, replica in enumerate(round_pods):
            replicas.append((replica, chosen[(index + best) % spec.masters]))
    return Layout(masters=masters, replicas=tuple(replicas))


def _clashes(
    replicas: list[PodNode], masters: list[PodNode], shift: int
) -> tuple[int, int]:
    same_node = same_zone = 0
    for index, replica in enumerate(replicas):
        master = masters[(index + shift) % len(masters)]
        if replica.pod.node_name and replica.pod.node_name == master.pod.node_name:
            same_node += 1
        if replica.pod.zone and replica.pod.zone == master.pod.zone:
            same_zone += 1
    return same_node, same_zone


def resumes_creation(ctx: Context) -> bool:
    """Whether the observed slots are an interrupted creation of this layout.

    True only when status never recorded a formed cluster, no pod has keys,
    every pod holding slots holds exactly its planned range and every node
    holding slots is one of the pods. A slot holder that no pod holds any more
    (a planned master that lost its disk after it met the others) makes the
    cluster a formed one, healed like any other: its replicas keep its slots.
    """
    # Limitation: a creation interrupted and then given a different spec no
    # longer matches its layout; its slot holders are reported, not merged.
    if ctx.snapshot.resource.status.cluster_formed:
        return False
    pods = _desired_pods(ctx)
    if pods is None:
        return not ctx.topology.formed and not _any_slots(ctx)
    current = {p.node_id for p in pods}
    if any(master_id not in current for master_id in ctx.topology.masters):
        return False
    layout = plan_layout(ctx, pods)
    planned = {p.name: (r,) for p, r in layout.masters}
    for pod_node in ctx.topology.pods:
        if pod_node.own_slots and (
            pod_node.dbsize > 0 or planned.get(pod_node.name) != pod_node.own_slots
        ):
            return False
    return True


def plan_create(ctx: Context) -> Outcome:
    """Plan the next step of creating the cluster."""
    actions: list[Action] = []
    stateful_set = ctx.snapshot.stateful_set
    count = ctx.pod_count
    if stateful_set is None or stateful_set.replicas != count:
        actions.append(
            ScaleStatefulSet(
                replicas=count,
                reason=f"the cluster needs {count} pods "
                f"({ctx.spec.masters} masters x {1 + ctx.spec.replicas})",
            )
        )

    pods = _desired_pods(ctx)
    if pods is None:
        missing = _not_ready(ctx)
        actions.append(
            Wait(reason=f"waiting for pods to be ready and reachable: {missing}")
        )
        return Outcome(
            actions=tuple(actions),
            state=ClusterState.CREATING,
            summary=f"creating: waiting for pods {missing}",
            formed=False,
        )

    # Leftovers from an earlier life are wiped before anything joins; a
    # fresh pass then confirms they came back clean.
    layout = plan_layout(ctx, pods)
    planned_slots = {p.name for p, _ in layout.masters}
    dirty = [
        p
        for p in pods
        if p.dirty
        and not (p.own_slots and p.name in planned_slots)
        and not _in_progress(ctx, p, layout)
    ]
    if dirty:
        for pod_node in dirty:
            actions.append(
                ResetNode(
                    pod=pod_node.name,
                    reason=f"pod {pod_node.name} is not a member and is dirty "
                    f"({pod_node.dirt}); the cluster never formed",
                )
            )
        return Outcome(
            actions=tuple(actions),
            state=ClusterState.CREATING,
            summary=f"creating: resetting {len(dirty)} dirty pods",
            formed=False,
        )

    actions.extend(_creation_steps(ctx, layout))
    if not any(not isinstance(a, Wait) for a in actions):
        if not _state_ok(ctx, pods):
            return Outcome(
                actions=(
                    Wait(reason="waiting for every node to report cluster_state ok"),
                ),
                state=ClusterState.CREATING,
                summary="creating: waiting for cluster_state ok",
                formed=False,
            )
        return Outcome(
            actions=(),
            state=ClusterState.RUNNING,
            summary=f"created with {ctx.spec.masters} masters and "
            f"{ctx.spec.replicas} replicas each",
            formed=True,
            converged=True,
        )
    return Outcome(
        actions=tuple(actions),
        state=ClusterState.CREATING,
        summary=f"creating: {ctx.spec.masters} masters, "
        f"{len(layout.replicas)} replicas",
        formed=False,
    )


def _creation_steps(ctx: Context, layout: Layout) -> list[Action]:
    actions: list[Action] = []
    first = layout.masters[0][0]

    # Config epochs can only be set on a node that knows nobody yet, so
    # slots and epochs come before any meeting.
    for index, (master, slot_range) in enumerate(layout.masters):
        if master.own_slots:
            continue
        epoch = None if master.knows_others else index + 1
        actions.append(
            AssignSlots(
                pod=master.name,
                slots=(slot_range,),
                config_epoch=epoch,
                reason=f"new cluster: master {index + 1} of {ctx.spec.masters} "
                f"serves slots {slot_range}",
            )
        )

    cluster = _known_by(first)
    for pod_node in (p for p, _ in layout.masters + layout.replicas):
        if pod_node is first or pod_node.node_id in cluster:
            continue
        actions.append(
            MeetNode(
                pod=pod_node.name,
                reason=f"new cluster: {pod_node.name} joins through {first.name}",
            )
        )

    # Replicas already following a planned master stay where they are.
    masters = {p.node_id: p for p, _ in layout.masters}
    counts = dict.fromkeys(masters, 0)
    waiting: list[tuple[PodNode, PodNode]] = []
    for replica, master in layout.replicas:
        entry = replica.view.myself if replica.view else None
        if entry and entry.is_replica and entry.master_id in masters:
            counts[entry.master_id] += 1
        else:
            waiting.append((replica, master))
    seats = [
        Seat(p.node_id, p.ordinal, p.pod.node_name, p.pod.zone)
        for p in masters.values()
    ]
    for replica, planned in waiting:
        master = planned
        if counts[planned.node_id] >= ctx.spec.replicas:
            seat = choose_master(
                seats=seats,
                replica_counts=counts,
                node_name=replica.pod.node_name,
                zone=replica.pod.zone,
            )
            master = masters[seat.master_id]
        counts[master.node_id] += 1
        actions.append(
            Replicate(
                pod=replica.name,
                master_pod=master.name,
                master_id=master.node_id,
                reason=f"new cluster: {replica.name} replicates {master.name}"
                f"{_placement_note(replica, master)}",
            )
        )
    return actions


def _placement_note(replica: PodNode, master: PodNode) -> str:
    if replica.pod.node_name and replica.pod.node_name == master.pod.node_name:
        return (
            f" on the same Kubernetes node {replica.pod.node_name}: no better "
            "placement exists"
        )
    if replica.pod.zone and replica.pod.zone == master.pod.zone:
        return f" in the same zone {replica.pod.zone}: no better placement exists"
    return ""


def _known_by(pod_node: PodNode) -> frozenset[str]:
    if pod_node.view is None:
        return frozenset()
    return pod_node.view.known_ids


def _in_progress(ctx: Context, pod_node: PodNode, layout: Layout) -> bool:
    # A pod that only knows nodes of this creation is mid-creation, not dirty:
    # the pods' nodes and whatever the planned masters holding their slots
    # know (such as the old id of a pod that lost its disk since).
    if pod_node.dbsize > 0 or not ctx.topology.formed:
        return False
    ours = {p.node_id for p in ctx.topology.pods if p.node_id}
    for master, slot_range in layout.masters:
        if master.own_slots == (slot_range,):
            ours |= _known_by(master)
    return _known_by(pod_node) <= ours


def _desired_pods(ctx: Context) -> tuple[PodNode, ...] | None:
    pods = {p.ordinal: p for p in ctx.topology.pods}
    wanted = []
    for ordinal in range(ctx.pod_count):
        pod_node = pods.get(ordinal)
        if pod_node is None or not pod_node.pod.ready or not pod_node.reachable:
            return None
        wanted.append(pod_node)
    return tuple(wanted)


def _not_ready(ctx: Context) -> str:
    pods = {p.ordinal: p for p in ctx.topology.pods}
    missing = []
    for ordinal in range(ctx.pod_count):
        pod_node = pods.get(ordinal)
        name = f"{ctx.name}-{ordinal}"
        if pod_node is None:
            missing.append(f"{name} (missing)")
        elif not pod_node.pod.ready:
            missing.append(f"{name} (not ready)")
        elif not pod_node.reachable:
            missing.append(f"{name} (unreachable: {pod_node.error or 'no reply'})")
    shown = ", ".join(missing[:5])
    if len(missing) > 5:
        shown += f" and {len(missing) - 5} more"
    return shown


def _any_slots(ctx: Context) -> bool:
    return any(p.own_slots for p in ctx.topology.pods)


def _state_ok(ctx: Context, pods: tuple[PodNode, ...]) -> bool:
    for pod_node in pods:
        observed = ctx.snapshot.redis.get(pod_node.name)
        if observed is None or observed.info is None or not observed.info.state_ok:
            return False
    return True
