"""The cluster picture: pods matched to node ids, views checked for agreement.

Builds one ``Topology`` from a snapshot: which pod holds which node id (by the
``myself`` line, never by address), which nodes are members, whether the
nodes' views agree on slot ownership and whether a majority of masters stands
behind the picture. It plans nothing.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import attrs

from kredis.domain.nodes import ClusterView, NodeEntry, NodeFlag, checked_slots
from kredis.domain.slots import SlotRange, format_ranges, ranges_from_slots
from kredis.domain.snapshot import PodInfo, Snapshot
from kredis.domain.status import ClusterNodeStatus

_ROLE_FLAGS = frozenset({NodeFlag.MASTER, NodeFlag.REPLICA})


class Agreement(enum.Enum):
    """Whether the picture may be acted on."""

    AGREED = "agreed"
    SPLIT = "split"
    NO_QUORUM = "no-quorum"


@attrs.frozen
class PodNode:
    """A pod and the Redis node it runs, as far as observed."""

    pod: PodInfo
    reachable: bool
    node_id: str
    recorded_id: str
    lost_id: str
    dbsize: int
    view: ClusterView | None
    member: bool
    error: str

    @property
    def name(self) -> str:
        """The pod name."""
        return self.pod.name

    @property
    def ordinal(self) -> int:
        """The StatefulSet ordinal."""
        return self.pod.ordinal

    @property
    def own_slots(self) -> tuple[SlotRange, ...]:
        """Slots the node claims for itself in its own view."""
        return self.view.myself.slots if self.view else ()

    @property
    def knows_others(self) -> bool:
        """The node's own view lists any other node."""
        return bool(self.view and self.view.known_ids)

    @property
    def dirty(self) -> bool:
        """The node has keys or knows other nodes: joining needs a reset."""
        return self.dbsize > 0 or self.knows_others

    @property
    def dirt(self) -> str:
        """What makes the node dirty, for reasons: keys, known nodes."""
        parts = []
        if self.dbsize:
            parts.append(f"{self.dbsize} keys")
        if self.view is not None and self.view.known_ids:
            parts.append(f"knows {len(self.view.known_ids)} other nodes")
        return ", ".join(parts)


@attrs.frozen
class OpenMigration:
    """A slot marked migrating or importing on some node."""

    slot: int
    source_id: str
    target_id: str


@attrs.frozen
class Topology:
    """Everything the planner needs to know about the observed cluster."""

    pods: tuple[PodNode, ...]
    nodes: Mapping[str, NodeEntry] = attrs.field(eq=False, repr=False)
    reference: str
    agreement: Agreement
    problem: str
    masters: tuple[str, ...]
    open_slots: tuple[OpenMigration, ...]
    outsiders: tuple[str, ...]
    stale: tuple[str, ...] = ()

    @property
    def formed(self) -> bool:
        """Some node of the cluster holds slots."""
        return bool(self.masters)

    def pod(self, name: str) -> PodNode | None:
        """The pod with a name."""
        for pod_node in self.pods:
            if pod_node.name == name:
                return pod_node
        return None

    def pod_of(self, node_id: str) -> PodNode | None:
        """The pod that holds a node id now, or was last recorded with it."""
        return self._holders.get(node_id)

    @functools.cached_property
    def _holders(self) -> Mapping[str, PodNode]:
        holders = {
            p.recorded_id: p for p in self.pods if not p.reachable and p.recorded_id
        }
        holders.update({p.node_id: p for p in self.pods if p.node_id})
        return MappingProxyType(holders)

    def label(self, node_id: str) -> str:
        """A pod name for a node id where one holds it, else the id."""
        pod_node = self.pod_of(node_id)
        return pod_node.name if pod_node else node_id

    def slots_of(self, node_id: str) -> tuple[SlotRange, ...]:
        """Slots a node serves in the picture."""
        entry = self.nodes.get(node_id)
        return entry.slots if entry else ()

    def replicas_of(self, master_id: str) -> tuple[NodeEntry, ...]:
        """Entries replicating a master, in id order."""
        return tuple(
            entry
            for entry in self.nodes.values()
            if entry.is_replica and entry.master_id == master_id
        )

    @property
    def members(self) -> tuple[PodNode, ...]:
        """Pods whose node is a member of the cluster."""
        return tuple(pod_node for pod_node in self.pods if pod_node.member)


def build_topology(snapshot: Snapshot) -> Topology:
    """Match pods to node ids and judge the views of the cluster."""
    status = snapshot.resource.status
    pods = _pod_nodes(snapshot)
    views = {p.name: p.view for p in pods if p.view is not None}
    ids = {p.name: p.node_id for p in pods if p.node_id}

    # Components of pods that know each other both ways; the main one is the
    # cluster, the rest are strangers, fresh nodes or leftovers.
    components = _components(views, ids)
    main = _main_component(components, views, pods)
    reference = _reference_pod(main, views, pods)
    reference_view = views.get(reference) if reference else None
    picture = _picture(reference_view, views, ids, main)

    # An unreachable pod is still a member when the cluster knows its id.
    # (Membership is read before slots are settled: ids, not slots.)
    members = set(main) | {
        p.name for p in pods if not p.reachable and p.recorded_id in picture
    }
    pods = tuple(attrs.evolve(p, member=p.name in members) for p in pods)
    recorded = {n.pod_name: n for n in status.cluster_nodes}
    pods = tuple(_with_lost_id(p, recorded.get(p.name), picture) for p in pods)

    agreement, problem = _settle_slots(main, views, ids, picture)
    masters = tuple(sorted(i for i, e in picture.items() if e.slots))
    if agreement is Agreement.AGREED and masters:
        agreement, problem = _quorum(main, ids, masters)
    outsiders = tuple(
        name for name in views if name not in main and views[name].myself.slots
    )
    if agreement is Agreement.AGREED and outsiders and masters:
        agreement, problem = _judge_outsiders(outsiders, views, picture)
    return Topology(
        pods=pods,
        nodes=MappingProxyType(picture),
        reference=reference or "",
        agreement=agreement,
        problem=problem,
        masters=masters,
        open_slots=_open_slots(main, views, picture),
        outsiders=outsiders,
        stale=_stale_views(main, views, picture),
    )


def _pod_nodes(snapshot: Snapshot) -> tuple[PodNode, ...]:
    status = snapshot.resource.status
    result = []
    for pod in snapshot.pods:
        observed = snapshot.redis.get(pod.name)
        recorded = status.node_of(pod.name)
        reachable = bool(observed and observed.reachable and observed.view)
        result.append(
            PodNode(
                pod=pod,
                reachable=reachable,
                node_id=observed.my_id if observed and reachable else "",
                recorded_id=recorded.node_id if recorded else "",
                lost_id="",
                dbsize=observed.dbsize if observed else 0,
                view=observed.view if observed and reachable else None,
                member=False,
                error=(observed.error if observed else "not observed"),
            )
        )
    return tuple(result)


def _components(
    views: Mapping[str, ClusterView], ids: Mapping[str, str]
) -> list[list[str]]:
    parent = {name: name for name in views}

    def find(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    def union(first: str, second: str) -> None:
        parent[find(first)] = find(second)

    # Views that list the same membership (themselves included) know each
    # other both ways; in a settled cluster that is every view, so the
    # pairwise check below only runs for the odd ones out.
    groups: dict[frozenset[str], list[str]] = {}
    for name, view in views.items():
        groups.setdefault(view.known_ids | {ids[name]}, []).append(name)
    pod_by_id = {ids[name]: name for name in views}
    for membership, names in groups.items():
        inside = [name for name in names if ids[name] in membership]
        for name in inside[1:]:
            union(inside[0], name)
    if len(groups) > 1:
        everyone = frozenset(pod_by_id)
        for names in groups.values():
            others = everyone - {ids[name] for name in names}
            for name in names:
                for other_id in views[name].known_ids & others:
                    other = pod_by_id[other_id]
                    if ids[name] in views[other].known_ids:
                        union(name, other)

    components: dict[str, list[str]] = {}
    for name in views:
        components.setdefault(find(name), []).append(name)
    return list(components.values())


def _main_component(
    components: list[list[str]],
    views: Mapping[str, ClusterView],
    pods: tuple[PodNode, ...],
) -> list[str]:
    ordinal = {p.name: p.ordinal for p in pods}

    def weight(component: Iterable[str]) -> tuple[int, int, int]:
        component = list(component)
        claimed = sum(views[n].myself.slot_count for n in component)
        return (claimed, len(component), -min(ordinal[n] for n in component))

    clusters = [
        c for c in components if len(c) > 1 or any(views[n].myself.slots for n in c)
    ]
    if not clusters:
        return []
    best = max(clusters, key=weight)
    return sorted(best, key=ordinal.__getitem__)


def _reference_pod(
    main: list[str], views: Mapping[str, ClusterView], pods: tuple[PodNode, ...]
) -> str | None:
    # The command pod: a member master with slots, else any member.
    for name in main:
        if views[name].myself.slots and views[name].myself.is_master:
            return name
    return main[0] if main else None


def _picture(
    reference: ClusterView | None,
    views: Mapping[str, ClusterView],
    ids: Mapping[str, str],
    main: list[str],
) -> dict[str, NodeEntry]:
    if reference is None:
        return {}
    picture = {e.node_id: e for e in reference.entries if not e.in_handshake}

    # A reachable member is the authority on its own role and master.
    for name in main:
        mine = views[name].myself
        seen = picture.get(mine.node_id)
        if seen is None:
            continue
        flags = (seen.flags - _ROLE_FLAGS - {NodeFlag.MYSELF}) | (
            mine.flags & _ROLE_FLAGS
        )
        picture[mine.node_id] = attrs.evolve(
            seen, flags=frozenset(flags), master_id=mine.master_id
        )
    return picture


def _with_lost_id(
    pod_node: PodNode,
    recorded: ClusterNodeStatus | None,
    picture: Mapping[str, NodeEntry],
) -> PodNode:
    # A lost id is forgotten only once the cluster, seen, no longer knows
    # it; a pass that sees no cluster (no view credits any slot, such as a
    # lone pod back with an empty disk) or not the pod keeps what status says.
    if recorded is None:
        return pod_node
    seen = any(entry.slots for entry in picture.values())
    kept = recorded.previous_node_id
    if not seen or not pod_node.reachable:
        olds = (recorded.node_id, kept) if pod_node.reachable else (kept,)
        for old_id in olds:
            if (
                old_id
                and old_id != pod_node.node_id
                and (not seen or old_id in picture)
            ):
                return attrs.evolve(pod_node, lost_id=old_id)
        return pod_node
    for old_id in (recorded.node_id, kept):
        if old_id and old_id != pod_node.node_id and old_id in picture:
            return attrs.evolve(pod_node, lost_id=old_id)
    return pod_node


def _settle_slots(
    main: list[str],
    views: Mapping[str, ClusterView],
    ids: Mapping[str, str],
    picture: dict[str, NodeEntry],
) -> tuple[Agreement, str]:
    """Decide who owns every slot, in place in ``picture``; say if nodes disagree.

    A live member is the authority on its own slots: what it serves by its own
    account wins over what other views remember. Two live nodes that both
    serve a slot are a split brain. Slots no live node serves keep the owner
    the views name (a failed master, say); views that name different owners
    for such a slot disagree. A view that lacks an owner has no opinion: a
    dead master sends no gossip, so nodes met later never learn its slots.
    """
    live = {ids[name]: name for name in main}
    owner: dict[int, str] = {}
    for node_id in sorted(live):
        mine = views[live[node_id]].myself
        if not mine.is_master:
            continue
        for slot_range in mine.slots:
            for slot in slot_range.slots():
                other = owner.setdefault(slot, node_id)
                if other != node_id:
                    return Agreement.SPLIT, (
                        f"views disagree on slot ownership: {live[other]} and "
                        f"{live[node_id]} both serve slot {slot} by their own account"
                    )

    # What the views remember about slots that no live node serves.
    remembered: dict[int, tuple[str, str]] = {}
    by_ownership: dict[tuple[tuple[str, str], ...], str] = {}
    for name in main:
        by_ownership.setdefault(views[name].ownership, name)
    for ownership, name in by_ownership.items():
        for node_id, text in ownership:
            if node_id in live:
                continue
            for slot_range in checked_slots(text):
                for slot in slot_range.slots():
                    if slot in owner:
                        continue
                    seen = remembered.setdefault(slot, (node_id, name))
                    if seen[0] != node_id:
                        return Agreement.SPLIT, (
                            f"views disagree on slot ownership: slot {slot} belongs "
                            f"to {seen[0]} according to {seen[1]} but to {node_id} "
                            f"according to {name}"
                        )
    owner.update((slot, node_id) for slot, (node_id, _) in remembered.items())

    held: dict[str, list[int]] = {}
    for slot, node_id in owner.items():
        held.setdefault(node_id, []).append(slot)
    for node_id in held.keys() - picture.keys():
        if node_id in live:
            mine = views[live[node_id]].myself
            picture[node_id] = attrs.evolve(mine, flags=mine.flags - {NodeFlag.MYSELF})
    for node_id, entry in list(picture.items()):
        slots = ranges_from_slots(held.get(node_id, ()))
        if slots != entry.slots:
            picture[node_id] = attrs.evolve(entry, slots=slots)
    return Agreement.AGREED, ""


def _stale_views(
    main: list[str],
    views: Mapping[str, ClusterView],
    picture: Mapping[str, NodeEntry],
) -> tuple[str, ...]:
    """Member views whose slot owners differ from the settled picture.

    Gaps about failed masters do not count (they are never filled by
    gossip). A stale view is harmless to healing, but a change that raises a
    config epoch could make its node send an UPDATE built on stale owners.
    """
    failed = {node_id for node_id, entry in picture.items() if entry.is_failed}
    settled = tuple(
        sorted(
            (node_id, " ".join(str(r) for r in entry.slots))
            for node_id, entry in picture.items()
            if entry.slots and node_id not in failed
        )
    )
    verdict: dict[tuple[tuple[str, str], ...], bool] = {}
    stale = []
    for name in main:
        ownership = views[name].ownership
        if ownership not in verdict:
            verdict[ownership] = (
                tuple(pair for pair in ownership if pair[0] not in failed) != settled
            )
        if verdict[ownership]:
            stale.append(name)
    return tuple(stale)


def _quorum(
    main: list[str], ids: Mapping[str, str], masters: tuple[str, ...]
) -> tuple[Agreement, str]:
    live = {ids[name] for name in main}
    standing = [m for m in masters if m in live]
    if 2 * len(standing) <= len(masters):
        return (
            Agreement.NO_QUORUM,
            f"only {len(standing)} of {len(masters)} masters with slots answered; "
            "no majority stands behind the picture",
        )
    return Agreement.AGREED, ""


def _judge_outsiders(
    outsiders: Iterable[str],
    views: Mapping[str, ClusterView],
    picture: Mapping[str, NodeEntry],
) -> tuple[Agreement, str]:
    names = sorted(outsiders)
    claimed = [views[name].myself.slots for name in names]
    text = ", ".join(
        f"{name} ({format_ranges(slots)})"
        for name, slots in zip(names, claimed, strict=True)
    )
    return (
        Agreement.SPLIT,
        f"pods outside the cluster claim slots of their own: {text}; kredis "
        "will not merge or reset them",
    )


def _open_slots(
    main: list[str],
    views: Mapping[str, ClusterView],
    picture: Mapping[str, NodeEntry],
) -> tuple[OpenMigration, ...]:
    owners = {}
    for entry in picture.values():
        for slot_range in entry.slots:
            for slot in slot_range.slots():
                owners[slot] = entry.node_id
    found: dict[int, OpenMigration] = {}
    for name in main:
        mine = views[name].myself
        for marker in mine.migrating:
            found.setdefault(
                marker.slot,
                OpenMigration(marker.slot, mine.node_id, marker.peer_id),
            )
        for marker in mine.importing:
            # The importing node is where a migration finishes.
            source = owners.get(marker.slot, marker.peer_id)
            found[marker.slot] = OpenMigration(marker.slot, source, mine.node_id)
    return tuple(found[slot] for slot in sorted(found))


def group_open_slots(
    open_slots: Iterable[OpenMigration],
) -> list[tuple[str, str, tuple[SlotRange, ...]]]:
    """Group open slots by (source, target) into ranges."""
    grouped: dict[tuple[str, str], list[int]] = {}
    for item in open_slots:
        grouped.setdefault((item.source_id, item.target_id), []).append(item.slot)
    return [
        (source, target, ranges_from_slots(slots))
        for (source, target), slots in sorted(grouped.items())
    ]
