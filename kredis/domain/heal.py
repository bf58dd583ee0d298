"""Healing a formed cluster: open slots, failed masters, ghosts, moved pods.

Each function looks at the agreed picture and returns the actions that bring
the cluster back to health. None of them resets a member, forgets a node with
slots or moves a slot away from a live owner.
"""

from __future__ import annotations

import attrs

from kredis.domain.actions import (
    Action,
    AssignSlots,
    Failover,
    FailoverMode,
    FinishMigration,
    ForgetNode,
    MeetNode,
    ResetNode,
    Wait,
)
from kredis.domain.context import Context
from kredis.domain.nodes import NodeEntry
from kredis.domain.slots import format_ranges
from kredis.domain.topology import PodNode, group_open_slots


@attrs.frozen
class Healing:
    """Actions of one heal step, and whether they block further changes."""

    actions: tuple[Action, ...] = ()
    blocking: bool = False
    degraded: str = ""


def finish_open_slots(ctx: Context) -> Healing:
    """Finish slots left migrating or importing by an interrupted migration.

    The slot goes toward the importing node, or the master that took its
    place: the master it now replicates, or the replica that took over its
    slots. When the importing node is gone for good (no pod holds its id) and
    nobody took its place, the slot is closed where it is, on its owner.
    Nothing is finished while the owner, whose keys must move, is down.
    """
    topology = ctx.topology
    actions: list[Action] = []
    stuck: list[str] = []
    for source, target, ranges in group_open_slots(topology.open_slots):
        shown = format_ranges(ranges)
        label = topology.label
        lost_source = not _answers(ctx, source) and _gone_for_good(ctx, source)
        if not _answers(ctx, source) and not lost_source:
            stuck.append(
                f"slots {shown} are open on {label(source)}, which does not "
                "answer; its keys cannot move until it is back or failed over"
            )
            continue
        heir, why = _heir(ctx, source=source, target=target)
        if heir is None:
            stuck.append(
                f"slots {shown} are open toward {label(target)}, which is down; "
                "waiting for it to come back"
            )
            continue
        if lost_source and heir != source:
            reason = (
                f"slots {shown} were left open from {label(source)}, which is gone "
                f"for good with no replica; the keys that had moved are on "
                f"{label(heir)}, which takes the slots (keys left on "
                f"{label(source)} are lost with it)"
            )
        elif heir == source:
            reason = (
                f"slots {shown} were left open toward {label(target)}, which is "
                f"gone for good ({why}); they are closed on their owner "
                f"{label(source)}, and keys that had already moved are lost with it"
            )
        else:
            via = f" ({why})" if why else ""
            reason = (
                f"slots {shown} were left open by an interrupted migration from "
                f"{label(source)} toward {label(target)} and no migration Job runs; "
                f"they are finished on {label(heir)}{via}"
            )
        actions.append(
            FinishMigration(
                slots=ranges,
                source=label(source),
                source_id=source,
                target=label(heir),
                target_id=heir,
                reason=reason,
            )
        )
    if stuck:
        message = "; ".join(stuck)
        actions.append(Wait(reason=f"cannot finish open slots: {message}"))
        return Healing(tuple(actions), blocking=True, degraded=message)
    return Healing(tuple(actions), blocking=bool(actions))


def _gone_for_good(ctx: Context, node_id: str) -> bool:
    # Failed, no pod holds the id and no replica may still hold its keys.
    topology = ctx.topology
    entry = topology.nodes.get(node_id)
    if entry is None or not entry.is_failed or topology.pod_of(node_id) is not None:
        return False
    return not any(
        topology.pod_of(replica.node_id) is not None
        for replica in topology.replicas_of(node_id)
    )


def _answers(ctx: Context, node_id: str) -> bool:
    entry = ctx.topology.nodes.get(node_id)
    pod_node = ctx.topology.pod_of(node_id)
    return (
        entry is not None
        and not (entry.is_failed or entry.is_suspected)
        and pod_node is not None
        and pod_node.reachable
        and pod_node.node_id == node_id
    )


def _heir(ctx: Context, *, source: str, target: str) -> tuple[str | None, str]:
    """Where an open slot toward ``target`` can finish, and why there."""
    topology = ctx.topology
    entry = topology.nodes.get(target)
    if entry is not None and entry.is_master and _answers(ctx, target):
        return target, ""
    if entry is not None and entry.is_replica and _answers(ctx, target):
        master = entry.master_id or ""
        if _answers(ctx, master):
            return master, f"{topology.label(target)} now replicates it"
        return None, ""

    # The importing node is down: a replica it had may have taken its place.
    for recorded in ctx.snapshot.resource.status.cluster_nodes:
        if recorded.master_id != target:
            continue
        promoted = topology.nodes.get(recorded.node_id)
        if (
            promoted is not None
            and promoted.is_master
            and promoted.slots
            and _answers(ctx, recorded.node_id)
        ):
            return recorded.node_id, f"its replica {recorded.pod_name} took over"
    gone = entry is None or (entry.is_failed and topology.pod_of(target) is None)
    if gone:
        return source, "no pod holds its id any more"
    return None, ""


def heal_failed_masters(ctx: Context) -> Healing:
    """Fail over, take over or wait for each master that is down with slots."""
    topology = ctx.topology
    actions: list[Action] = []
    degraded: list[str] = []
    for master_id in topology.masters:
        entry = topology.nodes[master_id]
        if not (entry.is_failed or entry.is_suspected):
            continue
        label = topology.label(master_id)
        shown = format_ranges(entry.slots)
        if entry.is_suspected and not entry.is_failed:
            actions.append(
                Wait(
                    reason=f"master {label} is suspected down (fail?); waiting for "
                    "the cluster to agree before acting"
                )
            )
            continue

        replicas = _healthy_replicas(ctx, master_id)
        if replicas:
            actions.append(_failover_or_wait(ctx, entry, label, replicas))
            continue

        # A replica that was forgotten (it was leaving) still holds every
        # key: it is met again so that it can be promoted.
        strays = [
            p
            for p in topology.pods
            if not p.member
            and p.reachable
            and p.view is not None
            and p.view.myself.is_replica
            and p.view.myself.master_id == master_id
        ]
        if strays:
            actions.extend(
                MeetNode(
                    pod=stray.name,
                    reason=f"master {label} is down with slots {shown}; pod "
                    f"{stray.name}, forgotten as it was leaving, still replicates "
                    "it with its keys and rejoins to be promoted",
                )
                for stray in strays
            )
            continue

        # A replica that is down may still hold every key: no write-off.
        keepers = [
            topology.label(r.node_id)
            for r in topology.replicas_of(master_id)
            if topology.pod_of(r.node_id) is not None
        ]
        taker = _returning_pod(ctx, master_id)
        if keepers:
            message = (
                f"master {label} is down with slots {shown} and its replicas "
                f"{', '.join(keepers)} are down too; waiting for one to return"
            )
            degraded.append(message)
            actions.append(Wait(reason=message))
        elif taker is not None and taker.member:
            actions.append(
                AssignSlots(
                    pod=taker.name,
                    slots=entry.slots,
                    from_node_id=master_id,
                    reason=f"pod {taker.name} came back empty with a new node id; its "
                    f"previous id {master_id} is failed, has no replica and still "
                    f"owns slots {shown}, whose data is already gone: "
                    f"{taker.name} takes them over empty",
                )
            )
        elif taker is not None:
            actions.append(
                MeetNode(
                    pod=taker.name,
                    reason=f"pod {taker.name} came back empty with a new node id; it "
                    f"joins before taking over the slots of {master_id}",
                )
            )
        elif (dirty := _dirty_returning_pod(ctx, master_id)) is not None:
            # Its disk is new (a new node id) yet holds keys or peers that are
            # no part of this cluster: it must be clean before it takes over.
            actions.append(
                ResetNode(
                    pod=dirty.name,
                    reason=f"pod {dirty.name} came back with a new node id on a disk "
                    f"that is not a member's ({dirty.dirt}); its previous id "
                    f"{master_id} is failed with slots {shown} and no replica, so "
                    f"it is reset before it takes them over",
                )
            )
        else:
            message = (
                f"master {label} is down with slots {shown} and has no replica; "
                "those slots are unserved until its pod comes back"
            )
            degraded.append(message)
            actions.append(Wait(reason=message))
    return Healing(tuple(actions), blocking=bool(actions), degraded="; ".join(degraded))


def forget_ghosts(ctx: Context) -> tuple[Action, ...]:
    """Forget failed or address-less nodes that own no slots and no pod holds."""
    topology = ctx.topology
    actions: list[Action] = []
    for node_id in sorted(topology.nodes):
        entry = topology.nodes[node_id]
        if entry.slots or not (entry.is_failed or entry.has_no_address):
            continue
        if topology.pod_of(node_id) is not None:
            continue
        if entry.is_master and _healthy_replicas(ctx, node_id):
            continue
        actions.append(
            ForgetNode(
                node_id=node_id,
                reason=f"node {node_id} is {_health_word(entry)}, owns no slots and "
                "no pod holds it",
            )
        )
    return tuple(actions)


def meet_moved_pods(ctx: Context) -> tuple[Action, ...]:
    """Meet members whose pod address differs from what the cluster knows."""
    topology = ctx.topology
    actions: list[Action] = []
    for pod_node in topology.members:
        entry = topology.nodes.get(pod_node.node_id)
        if entry is None or not pod_node.pod.ip or not pod_node.pod.ready:
            continue
        if entry.ip == pod_node.pod.ip and not entry.has_no_address:
            continue
        known = entry.ip or "no address"
        actions.append(
            MeetNode(
                pod=pod_node.name,
                reason=f"pod {pod_node.name} keeps node id {pod_node.node_id} but its "
                f"address changed from {known} to {pod_node.pod.ip}",
            )
        )
    return tuple(actions)


def _healthy_replicas(ctx: Context, master_id: str) -> list[PodNode]:
    topology = ctx.topology
    replicas = []
    for entry in topology.replicas_of(master_id):
        if entry.is_failed or entry.is_suspected:
            continue
        pod_node = topology.pod_of(entry.node_id)
        if pod_node is None or not pod_node.reachable or not pod_node.member:
            continue
        replicas.append(pod_node)
    return sorted(replicas, key=lambda p: (not ctx.staying(p), p.ordinal))


def failover_grace_ms(node_timeout_ms: int, replicas: int) -> int:
    """How long Redis gets to fail a master over by itself, from its last pong.

    One whole election round: the node timeout for the cluster to agree the
    master failed, Redis' failover timeout (twice the node timeout, at least
    2 s), its fixed delay of up to 1 s and 1 s per replica rank.
    """
    return node_timeout_ms + max(2 * node_timeout_ms, 2_000) + 1_000 * (1 + replicas)


def _failover_or_wait(
    ctx: Context, entry: NodeEntry, label: str, replicas: list[PodNode]
) -> Action:
    # Limitation: the snapshot carries no replication offsets, so the "best"
    # replica is the first healthy staying one by ordinal, not the most
    # up to date; the node timeout is a planner setting, not read from nodes.
    timeout = ctx.settings.node_timeout_ms
    grace = failover_grace_ms(timeout, len(replicas))
    elapsed = ctx.snapshot.observed_ms - entry.pong_received
    best = replicas[0]
    if entry.pong_received and elapsed < grace:
        left = (grace - elapsed) / 1000
        return Wait(
            reason=f"master {label} failed; leaving Redis' own failover to "
            f"{best.name} about {left:.0f} s more"
        )
    return Failover(
        pod=best.name,
        mode=FailoverMode.FORCE,
        reason=f"master {label} failed and Redis did not fail over within "
        f"{grace / 1000:.0f} s of its last answer (one election round for node "
        f"timeout {timeout / 1000:g} s); promoting its replica {best.name}",
    )


def _back_with_a_new_id(ctx: Context, master_id: str) -> list[PodNode]:
    # Ready pods that recorded this id and answer with another, owning no slot.
    return [
        p
        for p in ctx.topology.pods
        if p.lost_id == master_id and p.reachable and p.pod.ready and not p.own_slots
    ]


def _returning_pod(ctx: Context, master_id: str) -> PodNode | None:
    # The pod that recorded this id, back with a new id and nothing in it.
    for pod_node in _back_with_a_new_id(ctx, master_id):
        if pod_node.dbsize == 0 and (pod_node.member or not pod_node.knows_others):
            return pod_node
    return None


def _dirty_returning_pod(ctx: Context, master_id: str) -> PodNode | None:
    # The pod that recorded this id, back with a new id on a dirty disk that
    # the cluster does not know.
    for pod_node in _back_with_a_new_id(ctx, master_id):
        if (
            not pod_node.member
            and pod_node.node_id not in ctx.topology.nodes
            and pod_node.dirty
        ):
            return pod_node
    return None


def _health_word(entry: NodeEntry) -> str:
    if entry.is_failed:
        return "failed"
    return "without an address"
