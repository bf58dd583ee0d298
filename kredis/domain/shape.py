"""Shaping a formed cluster to its spec: join, roles, slots, scale-down.

Given an agreed, healthy picture, decides which pods join, which masters stay,
which slots move where, which replicas follow which master and when leaving
pods may be forgotten and the StatefulSet shrunk. Masters hand over slots
before they leave; only drained nodes are forgotten.
"""

from __future__ import annotations

import attrs

from kredis.domain.actions import (
    Action,
    Failover,
    FailoverMode,
    ForgetNode,
    MeetNode,
    MigrateSlots,
    Replicate,
    ResetNode,
    ScaleStatefulSet,
)
from kredis.domain.context import Context, migration_job_name
from kredis.domain.placement import Seat, choose_master, plan_moves, tolerance_slots
from kredis.domain.slots import count_slots, format_ranges, slots_of
from kredis.domain.status import MigrationStatus, OperationKind, SlotMove
from kredis.domain.topology import PodNode


@attrs.frozen
class Roles:
    """Who should be a master once the cluster has its shape."""

    keep: tuple[str, ...]
    promotions: tuple[tuple[PodNode, str], ...]
    released: tuple[PodNode, ...]
    shortfall: str


@attrs.frozen
class Shaping:
    """Actions of the shape step and the migration they start, if any."""

    actions: tuple[Action, ...]
    migration: MigrationStatus | None = None
    problem: str = ""


def grow_stateful_set(ctx: Context) -> tuple[Action, ...]:
    """Create the StatefulSet or raise its replicas to the spec's pod count."""
    stateful_set = ctx.snapshot.stateful_set
    count = ctx.pod_count
    if stateful_set is not None and stateful_set.replicas >= count:
        return ()
    found = "missing" if stateful_set is None else f"at {stateful_set.replicas}"
    return (
        ScaleStatefulSet(
            replicas=count,
            reason=f"the spec asks for {count} pods and the StatefulSet is {found}",
        ),
    )


def join_pods(ctx: Context) -> tuple[Action, ...]:
    """Reset dirty newcomers and meet clean ones; never touch a known node."""
    topology = ctx.topology
    actions: list[Action] = []
    for pod_node in ctx.staying_pods:
        if pod_node.member or not pod_node.reachable or not pod_node.pod.ready:
            continue
        if pod_node.own_slots:
            continue
        if pod_node.node_id in topology.nodes:
            # Known to the cluster but not knowing it back: never reset.
            actions.append(
                MeetNode(
                    pod=pod_node.name,
                    reason=f"the cluster knows node {pod_node.node_id} of pod "
                    f"{pod_node.name} but the node does not know the cluster",
                )
            )
            continue
        if pod_node.dirty:
            actions.append(
                ResetNode(
                    pod=pod_node.name,
                    reason=f"pod {pod_node.name} is not a member and is dirty "
                    f"({pod_node.dirt}); it must be clean to join",
                )
            )
            continue
        actions.append(
            MeetNode(
                pod=pod_node.name,
                reason=f"pod {pod_node.name} is ready and not a member",
            )
        )
    return tuple(actions)


def choose_roles(ctx: Context) -> Roles:
    """Pick the masters that stay, and replicas to promote for leaving ones."""
    topology = ctx.topology
    wanted = ctx.spec.masters
    entries = topology.nodes

    def staying_member(node_id: str) -> PodNode | None:
        pod_node = topology.pod_of(node_id)
        if pod_node is None or not pod_node.member or not ctx.staying(pod_node):
            return None
        return pod_node

    holders = [m for m in topology.masters if staying_member(m) is not None]
    holders.sort(key=lambda m: (-count_slots(entries[m].slots), _ordinal(ctx, m)))
    keep = holders[:wanted]

    # A leaving master with a staying replica hands over by failover when a
    # master seat is free: no data moves.
    promotions: list[tuple[PodNode, str]] = []
    leaving = [m for m in topology.masters if staying_member(m) is None]
    leaving.sort(key=lambda m: (-count_slots(entries[m].slots), _ordinal(ctx, m)))
    for master_id in leaving:
        if len(keep) + len(promotions) >= wanted:
            break
        for entry in topology.replicas_of(master_id):
            replica = staying_member(entry.node_id)
            if replica is not None and replica.reachable and not entry.is_failed:
                promotions.append((replica, master_id))
                break

    empty = [
        p
        for p in ctx.staying_pods
        if p.member
        and p.reachable
        and p.node_id in entries
        and entries[p.node_id].is_master
        and not entries[p.node_id].slots
        and not entries[p.node_id].is_failed
    ]
    for pod_node in empty:
        if len(keep) + len(promotions) >= wanted:
            break
        keep.append(pod_node.node_id)

    # Still short of masters (3x2 to 4x1, or a drained master that Redis
    # turned into a replica): release replicas, whose keys are copies of a
    # healthy master's, to rejoin as empty masters.
    seats = len(keep) + len(promotions)
    settled = len(ctx.staying_pods) == ctx.pod_count and all(
        p.member and p.reachable and p.pod.ready for p in ctx.staying_pods
    )
    released = _releasable(ctx, wanted - seats) if seats < wanted and settled else ()
    shortfall = ""
    if seats + len(released) < wanted:
        shortfall = (
            f"the spec asks for {wanted} masters but only "
            f"{seats + len(released)} staying pods can become masters; the others "
            "are down or hold the only copy of their data"
        )
    return Roles(
        keep=tuple(keep),
        promotions=tuple(promotions),
        released=released,
        shortfall=shortfall,
    )


def _releasable(ctx: Context, count: int) -> tuple[PodNode, ...]:
    # Replicas of the masters with the most replicas go first, highest
    # ordinal first, so redundancy stays as even as it can.
    topology = ctx.topology
    entries = topology.nodes
    healthy: dict[str, list[PodNode]] = {}
    for pod_node in reversed(ctx.staying_pods):
        entry = entries.get(pod_node.node_id)
        if entry is None or not entry.is_replica or not pod_node.member:
            continue
        master = entries.get(entry.master_id or "")
        if (
            master is None
            or master.is_failed
            or master.is_suspected
            or entry.is_failed
            or not pod_node.reachable
        ):
            continue
        healthy.setdefault(master.node_id, []).append(pod_node)
    chosen: list[PodNode] = []
    while len(chosen) < count and any(healthy.values()):
        master_id = max(sorted(healthy), key=lambda m: len(healthy[m]))
        chosen.append(healthy[master_id].pop(0))
    return tuple(chosen)


def release(ctx: Context, roles: Roles) -> tuple[Action, ...]:
    """Forget replicas that will rejoin, reset, as the missing empty masters."""
    topology = ctx.topology
    actions: list[Action] = []
    for pod_node in roles.released:
        entry = topology.nodes[pod_node.node_id]
        actions.append(
            ForgetNode(
                node_id=pod_node.node_id,
                pod=pod_node.name,
                reason=f"the spec asks for {ctx.spec.masters} masters and no empty "
                f"pod is left: replica {pod_node.name}, whose keys are copies of "
                f"{topology.label(entry.master_id or '')}'s, leaves the cluster to "
                "rejoin clean as a master",
            )
        )
    return tuple(actions)


def promote(ctx: Context, roles: Roles) -> tuple[Action, ...]:
    """Failovers that hand a leaving master's slots to a staying replica."""
    topology = ctx.topology
    actions: list[Action] = []
    for replica, master_id in roles.promotions:
        moved = count_slots(topology.slots_of(master_id))
        actions.append(
            Failover(
                pod=replica.name,
                mode=FailoverMode.DEFAULT,
                reason=f"master {topology.label(master_id)} leaves; its staying "
                f"replica {replica.name} takes over its {moved} slots by failover "
                "instead of moving their keys",
            )
        )
    return tuple(actions)


def assign_replicas(ctx: Context, roles: Roles) -> tuple[Action, ...]:
    """Re-point spare replicas and slot-less masters to masters short of replicas."""
    topology = ctx.topology
    entries = topology.nodes
    keep = set(roles.keep)
    wanted = ctx.spec.replicas
    seats = []
    for master_id in roles.keep:
        pod_node = topology.pod_of(master_id)
        if pod_node is not None:
            seats.append(
                Seat(
                    master_id,
                    pod_node.ordinal,
                    pod_node.pod.node_name,
                    pod_node.pod.zone,
                )
            )
    if not seats:
        return ()

    counts: dict[str, int] = {m: 0 for m in keep}
    spares: list[PodNode] = []
    for pod_node in ctx.staying_pods:
        entry = entries.get(pod_node.node_id)
        if not pod_node.member or entry is None or pod_node.node_id in keep:
            continue
        if entry.is_master and entry.slots:
            continue
        if entry.is_failed or not pod_node.reachable:
            continue
        master = entry.master_id if entry.is_replica else None
        if master in keep and counts[master] < wanted:
            counts[master] += 1
        else:
            spares.append(pod_node)

    actions: list[Action] = []
    for pod_node in spares:
        entry = entries[pod_node.node_id]
        open_seats = [s for s in seats if counts[s.master_id] < wanted]
        if not open_seats:
            if entry.is_replica and entry.master_id in entries:
                continue
            open_seats = seats
        seat = choose_master(
            seats=open_seats,
            replica_counts=counts,
            node_name=pod_node.pod.node_name,
            zone=pod_node.pod.zone,
        )
        counts[seat.master_id] += 1
        master_pod = topology.label(seat.master_id)
        if entry.is_replica:
            why = f"its master {topology.label(entry.master_id or '')} " + (
                "leaves or gives up its slots"
                if entry.master_id not in keep
                else "has more replicas than the spec asks for"
            )
        else:
            why = "it is a master without slots and the cluster has its masters"
        actions.append(
            Replicate(
                pod=pod_node.name,
                master_pod=master_pod,
                master_id=seat.master_id,
                reason=f"{pod_node.name} replicates {master_pod}, which has the "
                f"fewest replicas; {why}",
            )
        )
    return tuple(actions)


def migrate(ctx: Context, roles: Roles) -> Shaping:
    """One migration Job that drains leaving masters and balances the rest."""
    topology = ctx.topology
    holdings = {
        m: slots_of(topology.slots_of(m))
        for m in topology.masters
        if m not in {master for _, master in roles.promotions}
    }
    for master_id in roles.keep:
        holdings.setdefault(master_id, frozenset())
    moves = plan_moves(
        holdings=holdings,
        keep=roles.keep,
        tolerance=tolerance_slots(ctx.settings.balance_tolerance),
    )
    if not moves:
        return Shaping(actions=())
    job = migration_job_name(ctx.name, moves)
    kind = _kind(ctx, roles, moves)
    actions: list[Action] = []
    for move in moves:
        source = topology.label(move.source)
        target = topology.label(move.target)
        actions.append(
            MigrateSlots(
                source=source,
                source_id=move.source,
                target=target,
                target_id=move.target,
                slots=move.slots,
                job=job,
                reason=f"{_why(ctx, roles, move)}: {count_slots(move.slots)} slots "
                f"({format_ranges(move.slots)}) move from {source} to {target}",
            )
        )
    total = sum(count_slots(move.slots) for move in moves)
    migration = MigrationStatus(
        job=job,
        kind=kind,
        moves=moves,
        slots_total=total,
        slots_moved=0,
        started_at=ctx.snapshot.observed_at,
    )
    return Shaping(actions=tuple(actions), migration=migration)


def forget_leaving(ctx: Context, roles: Roles) -> tuple[Action, ...]:
    """Forget leaving nodes that hold no slots and no only copy of any data."""
    topology = ctx.topology
    entries = topology.nodes
    actions: list[Action] = []
    for pod_node in ctx.leaving_pods:
        node_id = pod_node.node_id or pod_node.recorded_id
        entry = entries.get(node_id)
        if entry is None or entry.slots:
            continue
        if entry.is_master:
            followers = [
                r for r in topology.replicas_of(node_id) if _is_staying(ctx, r.node_id)
            ]
            if followers or (pod_node.reachable and pod_node.dbsize > 0):
                continue
            why = "a drained master without slots or keys"
        else:
            master = entries.get(entry.master_id or "")
            if master is not None and (master.is_failed or master.is_suspected):
                continue
            if (
                master is not None
                and master.slots
                and not _is_staying(ctx, master.node_id)
            ):
                continue
            why = "a replica whose master keeps every key"
        actions.append(
            ForgetNode(
                node_id=node_id,
                pod=pod_node.name,
                reason=f"pod {pod_node.name} leaves (ordinal {pod_node.ordinal} >= "
                f"{ctx.pod_count}) and its node is {why}",
            )
        )
    return tuple(actions)


def shrink_stateful_set(ctx: Context) -> tuple[Action, ...]:
    """Shrink the StatefulSet once no leaving pod is a member any more."""
    stateful_set = ctx.snapshot.stateful_set
    count = ctx.pod_count
    if stateful_set is None or stateful_set.replicas <= count:
        return ()
    entries = ctx.topology.nodes
    for pod_node in ctx.leaving_pods:
        if pod_node.member or (pod_node.node_id or pod_node.recorded_id) in entries:
            return ()
    return (
        ScaleStatefulSet(
            replicas=count,
            reason=f"every leaving pod is drained and forgotten; the StatefulSet "
            f"shrinks from {stateful_set.replicas} to {count}",
        ),
    )


def _is_staying(ctx: Context, node_id: str) -> bool:
    pod_node = ctx.topology.pod_of(node_id)
    return pod_node is not None and ctx.staying(pod_node)


def _ordinal(ctx: Context, node_id: str) -> int:
    pod_node = ctx.topology.pod_of(node_id)
    return pod_node.ordinal if pod_node else 1 << 30


def _kind(ctx: Context, roles: Roles, moves: tuple[SlotMove, ...]) -> OperationKind:
    keep = set(roles.keep)
    if any(move.source not in keep for move in moves):
        return OperationKind.SCALE_DOWN
    if any(not ctx.topology.slots_of(move.target) for move in moves):
        return OperationKind.SCALE_UP
    return OperationKind.REBALANCE


def _why(ctx: Context, roles: Roles, move: SlotMove) -> str:
    if move.source not in roles.keep:
        pod_node = ctx.topology.pod_of(move.source)
        if pod_node is not None and not ctx.staying(pod_node):
            return f"master {pod_node.name} leaves"
        return "the cluster has more masters than the spec asks for"
    if not ctx.topology.slots_of(move.target):
        return "a new master takes its share"
    return "masters differ by more than the balance tolerance"
