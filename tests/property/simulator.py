"""A simulated Redis Cluster on Kubernetes for the planner's stateful tests.

Role: hold a model of pods, disks, Redis nodes and migration Jobs that is
faithful where the planner's safety depends on it (each node has its own
gossip-fed view of the cluster, keys per slot and a config epoch), render it
as a ``kredis.snapshot/v1`` document with real CLUSTER NODES text, and apply
the planner's actions the way Redis and Kubernetes would: what Redis refuses
is refused (the pass stops there), and every unsafe operation that Redis
would carry out is performed and recorded as a ``Violation`` so that an
invariant can catch it.

It must not decide anything (the planner does), must not change the domain
code it imports, and never talks to a real process. Modelling choices that
matter for a finding are named in the docstring of the method that makes them.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kredis.domain.actions import (
    Action,
    AssignSlots,
    DeleteJob,
    Failover,
    FailoverMode,
    FinishMigration,
    ForgetNode,
    MeetNode,
    MigrateSlots,
    Replicate,
    ResetNode,
    ScaleStatefulSet,
    Wait,
)
from kredis.domain.nodes import (
    LinkState,
    NodeEntry,
    NodeFlag,
    OpenSlot,
    render_cluster_nodes,
)
from kredis.domain.planner import Plan
from kredis.domain.slots import (
    SLOT_COUNT,
    SlotRange,
    allocate_ranges,
    format_ranges,
    slots_of,
)
from kredis.domain.slots import ranges_from_slots as _ranges_from_slots

STEP_MS = 10_000
T0_MS = 1_796_000_000_000
PORT = 6379
# Redis flags a silent node fail? after the node timeout (15 s): two steps.
PFAIL_TICKS = 2
# CLUSTER FORGET bans the id from gossip for 60 s.
FORGET_BAN_TICKS = 6

RESET_MEMBER = "reset-of-member-or-holder"
FORGET_HOLDER = "forget-of-node-with-slots"
SHRINK_HOLDER = "statefulset-shrinks-holder"
TWO_JOBS = "two-migration-jobs"
MIGRATE_OPEN = "migration-while-slots-open"
DATA_LOSS = "data-loss-operation"
DOUBLE_OWNER = "slot-claimed-twice"

_EMPTY: frozenset[int] = frozenset()
_ALL_SLOTS = frozenset(range(SLOT_COUNT))
_RANGES: dict[frozenset[int], tuple[SlotRange, ...]] = {}


def ranges(slots: frozenset[int]) -> tuple[SlotRange, ...]:
    """Slot ranges of a set, cached: views share the same sets."""
    found = _RANGES.get(slots)
    if found is None:
        if len(_RANGES) > 4096:
            _RANGES.clear()
        found = _ranges_from_slots(slots)
        _RANGES[slots] = found
    return found


def rfc3339(ms: int) -> str:
    """A millisecond timestamp as the RFC 3339 text snapshots carry."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Violation:
    """An unsafe operation the planner asked for, as Redis would carry it out."""

    tick: int
    kind: str
    detail: str


@dataclass
class Peer:
    """What one node believes about another (refreshed by gossip)."""

    ip: str
    port: int
    master: bool
    master_id: str | None
    epoch: int


@dataclass(eq=False)
class SimNode:
    """One Redis node: its own config, its data and its view of the others.

    ``claims`` are the slots the node serves by its own config; ``owned``
    maps every other node it knows to the slots it believes that node
    serves. A ``gone`` node's data was destroyed (lost disk or reset): it
    never runs again, but others may still list its id.
    """

    node_id: str
    ip: str
    port: int = PORT
    master: bool = True
    master_id: str | None = None
    epoch: int = 0
    claims: frozenset[int] = _EMPTY
    migrating: dict[int, str] = field(default_factory=dict)
    importing: dict[int, str] = field(default_factory=dict)
    keys: dict[int, frozenset[str]] = field(default_factory=dict)
    peers: dict[str, Peer] = field(default_factory=dict)
    owned: dict[str, frozenset[int]] = field(default_factory=dict)
    heard: dict[str, tuple[int, int]] = field(default_factory=dict)
    banned: dict[str, int] = field(default_factory=dict)
    version: int = 0
    synced_with: str | None = None
    alive: bool = True
    gone: bool = False
    forgotten: bool = False
    down_since: int = 0
    last_seen_ms: int = T0_MS

    @property
    def dbsize(self) -> int:
        """How many keys the node stores."""
        return sum(map(len, self.keys.values()))

    @property
    def running(self) -> bool:
        """The process runs and answers."""
        return self.alive and not self.gone

    def set_claims(self, claims: Iterable[int]) -> None:
        """Replace the node's own slots; gossip notices the new version."""
        self.claims = frozenset(claims)
        self.version += 1

    def as_peer(self) -> Peer:
        """How other nodes learn this node from its own gossip."""
        return Peer(
            ip=self.ip,
            port=self.port,
            master=self.master,
            master_id=None if self.master else self.master_id,
            epoch=self.epoch,
        )

    def demote(self, master_id: str) -> None:
        """Become a replica; Redis closes every open slot of a former master."""
        self.master = False
        self.master_id = master_id
        self.synced_with = None
        self.migrating = {}
        self.importing = {}
        self.version += 1

    def forget(self, node_id: str) -> None:
        """Drop a peer from the node's tables (its slots become unassigned)."""
        self.peers.pop(node_id, None)
        self.owned.pop(node_id, None)
        self.heard.pop(node_id, None)


@dataclass(eq=False)
class SimPod:
    """A pod of the StatefulSet; its disk (and node) lives in ``pvcs``."""

    ordinal: int
    ip: str
    node_name: str
    zone: str
    booting: bool = False


@dataclass(eq=False)
class SimJob:
    """A migration Job: a queue of (source id, target id, slot) moves."""

    name: str
    queue: list[tuple[str, str, int]]
    total: int
    state: str = "pending"
    current: tuple[str, str, int] | None = None
    error: str = ""

    @property
    def finished(self) -> bool:
        """Complete or failed: the Job will not run again."""
        return self.state in ("complete", "failed")

    def to_json(self) -> dict[str, Any]:
        """The Job as the observer reports it."""
        data: dict[str, Any] = {
            "name": self.name,
            "labels": {"app.kubernetes.io/component": "migration"},
            "annotations": {},
            "active": 1 if self.state in ("pending", "running") else 0,
            "succeeded": 1 if self.state == "complete" else 0,
            "failed": 1 if self.state == "failed" else 0,
            "conditions": [],
        }
        if self.state == "complete":
            data["conditions"] = [{"type": "Complete", "status": "True"}]
        elif self.state == "failed":
            data["conditions"] = [{"type": "Failed", "status": "True"}]
        return data


@dataclass(frozen=True)
class Ownership:
    """Who serves each slot once gossip settles: the highest epoch claim wins."""

    won: Mapping[str, frozenset[int]]
    uncovered: frozenset[int]
    ties: tuple[str, ...]

    def owner(self, slot: int) -> str | None:
        """The node id that serves a slot, if any."""
        for node_id, slots in self.won.items():
            if slot in slots:
                return node_id
        return None


class Simulator:
    """Pods, disks, Redis nodes, Jobs and the Kredis resource, stepped in ticks.

    One tick is ten seconds: booting pods start, Jobs move slots, every
    running node gossips with the peers that know it, Redis fails over dead
    masters on its own and replicas copy their masters' keys.
    """

    def __init__(
        self,
        *,
        name: str = "demo",
        masters: int = 3,
        replicas: int = 1,
        slots_per_tick: int = 1500,
        auto_failover_ticks: int = 3,
        keep_pvcs: bool = True,
        replica_migration: bool = True,
    ) -> None:
        self.name = name
        self.namespace = "default"
        self.masters = masters
        self.replicas = replicas
        self.generation = 1
        self.status: dict[str, Any] = {}
        self.pods: dict[int, SimPod] = {}
        self.pvcs: dict[int, SimNode] = {}
        self.nodes: dict[str, SimNode] = {}
        self.sts_replicas: int | None = None
        self.jobs: list[SimJob] = []
        self.tick_count = 0
        self.expected: dict[int, frozenset[str]] = {}
        self.allowed_losses: list[str] = []
        self.orphaned: set[int] = set()
        self.violations: list[Violation] = []
        self.refusals: list[str] = []
        self.log: list[str] = []
        self.lagging: set[str] = set()
        self.slots_per_tick = slots_per_tick
        self.auto_failover_ticks = auto_failover_ticks
        self.keep_pvcs = keep_pvcs
        self.replica_migration = replica_migration
        self._serial = 0
        self._ip_serial = 0
        self._key_serial = 0

    # -- building ---------------------------------------------------------

    @classmethod
    def converged(
        cls, masters: int = 3, replicas: int = 1, *, key_stride: int = 7, **kw: Any
    ) -> Simulator:
        """A formed cluster that matches its spec, with a key every few slots."""
        sim = cls(masters=masters, replicas=replicas, **kw)
        count = masters * (1 + replicas)
        sim.sts_replicas = count
        for ordinal in range(count):
            sim._create_pod(ordinal, booting=False)
        nodes = [sim.pvcs[ordinal] for ordinal in range(count)]
        for index, slot_range in enumerate(allocate_ranges(masters)):
            nodes[index].epoch = index + 1
            nodes[index].set_claims(slot_range.slots())
        for ordinal in range(masters, count):
            nodes[ordinal].master = False
            nodes[ordinal].master_id = nodes[(ordinal - masters) % masters].node_id
        for slot in range(0, SLOT_COUNT, key_stride):
            keys = frozenset({f"k{slot}"})
            sim.expected[slot] = keys
            for node in nodes[:masters]:
                if slot in node.claims:
                    node.keys[slot] = keys
        for node in nodes:
            for other in nodes:
                if other is not node:
                    node.peers[other.node_id] = other.as_peer()
                    node.owned[other.node_id] = other.claims
                    node.heard[other.node_id] = (other.epoch, other.version)
        sim._sync_replicas()
        sim.status = {"clusterFormed": True}
        return sim

    @classmethod
    def empty(cls, masters: int = 3, replicas: int = 1, **kw: Any) -> Simulator:
        """A Kredis resource that was just created: no StatefulSet yet."""
        return cls(masters=masters, replicas=replicas, **kw)

    def pod_name(self, ordinal: int) -> str:
        """``<name>-<ordinal>``."""
        return f"{self.name}-{ordinal}"

    def ordinal_of(self, pod_name: str) -> int | None:
        """The ordinal of one of our pod names."""
        prefix = self.name + "-"
        if not pod_name.startswith(prefix) or not pod_name[len(prefix) :].isdigit():
            return None
        return int(pod_name[len(prefix) :])

    def node_of(self, ordinal: int) -> SimNode | None:
        """The node on the disk of an existing pod."""
        if ordinal not in self.pods:
            return None
        return self.pvcs.get(ordinal)

    def pod_of_node(self, node: SimNode) -> int | None:
        """The ordinal of the pod that runs a node now."""
        for ordinal in self.pods:
            if self.pvcs.get(ordinal) is node:
                return ordinal
        return None

    def _new_ip(self, ordinal: int) -> str:
        self._ip_serial += 1
        return f"10.{1 + self._ip_serial // 250}.{self._ip_serial % 250}.{ordinal + 2}"

    def _new_node(self, ordinal: int, ip: str) -> SimNode:
        self._serial += 1
        seed = f"{self.pod_name(ordinal)}/{self._serial}"
        node = SimNode(node_id=hashlib.sha1(seed.encode()).hexdigest(), ip=ip)
        node.last_seen_ms = self.now_ms
        node.down_since = self.tick_count
        self.nodes[node.node_id] = node
        return node

    def _create_pod(self, ordinal: int, *, booting: bool) -> SimPod:
        pod = SimPod(
            ordinal=ordinal,
            ip=self._new_ip(ordinal),
            node_name=f"worker-{ordinal % 3}",
            zone=f"zone-{'abc'[ordinal % 3]}",
            booting=booting,
        )
        self.pods[ordinal] = pod
        node = self.pvcs.get(ordinal)
        if node is None:
            node = self._new_node(ordinal, pod.ip)
            self.pvcs[ordinal] = node
        if booting:
            node.alive = False
            node.down_since = self.tick_count
        else:
            self._start(node, pod.ip)
        return pod

    def _start(self, node: SimNode, ip: str) -> None:
        """Start the node's process at the pod's address, with its disk."""
        node.alive = True
        if node.ip != ip:
            node.ip = ip
            node.version += 1
        node.last_seen_ms = self.now_ms

    def _stop(self, node: SimNode) -> None:
        if node.alive:
            node.alive = False
            node.down_since = self.tick_count

    # -- time -------------------------------------------------------------

    @property
    def now_ms(self) -> int:
        """The simulated clock."""
        return T0_MS + self.tick_count * STEP_MS

    def tick(self) -> None:
        """Ten seconds pass: pods boot, Jobs run, gossip, failover, replication."""
        self.tick_count += 1
        for ordinal, pod in sorted(self.pods.items()):
            if pod.booting:
                pod.booting = False
                self._start(self.pvcs[ordinal], pod.ip)
        for node in self.nodes.values():
            if node.running:
                node.last_seen_ms = self.now_ms
        self._run_jobs()
        self._gossip()
        self._auto_failover()
        self._sync_replicas()
        self.lagging = set()

    def _down_ticks(self, node: SimNode) -> int:
        return 0 if node.running else self.tick_count - node.down_since

    def _gossip(self) -> None:
        """One round of cluster-bus gossip between nodes that know each other.

        A node hears a peer only when both know each other. Hearing a peer
        refreshes its address, role and epoch, applies its slot claims (the
        higher config epoch wins; a master that turns replica loses its
        slots) and teaches the ids the peer knows, but never their slots:
        the gossip section carries no slots, so a node that joins while a
        master is down never learns that master's slots.

        Each node hears older news first (peers by ascending config epoch).
        In the other order a node that missed an ownership change can tag a
        stale slot binding with a newer epoch and send an UPDATE that strips
        the slot from its real owner: a real Redis race, but one kredis
        cannot prevent when the stale view sits on a node it cannot observe.
        """
        live = sorted(
            (n for n in self.nodes.values() if n.running), key=lambda n: n.node_id
        )
        for viewer in live:
            if viewer.node_id in self.lagging:
                continue
            order = sorted(
                viewer.peers,
                key=lambda i: (self.nodes[i].epoch if i in self.nodes else 0, i),
            )
            for peer_id in order:
                peer = self.nodes.get(peer_id)
                if peer is None or not peer.running or peer_id not in viewer.peers:
                    continue
                if viewer.node_id not in peer.peers:
                    continue
                self._hear(viewer, peer)

    def _hear(self, viewer: SimNode, peer: SimNode) -> None:
        known = viewer.peers[peer.node_id]
        if known.master and not peer.master:
            viewer.owned[peer.node_id] = _EMPTY
        viewer.peers[peer.node_id] = peer.as_peer()
        viewer.owned.setdefault(peer.node_id, _EMPTY)
        if (
            not viewer.master
            and viewer.master_id == peer.node_id
            and not peer.master
            and peer.master_id not in (None, viewer.node_id)
            and peer.master_id in viewer.peers
        ):
            # Redis 7: a sub-replica follows its grandmaster.
            viewer.master_id = peer.master_id
            viewer.synced_with = None
            viewer.version += 1
        if peer.master and viewer.heard.get(peer.node_id) != (
            peer.epoch,
            peer.version,
        ):
            viewer.heard[peer.node_id] = (peer.epoch, peer.version)
            self._hear_claims(viewer, peer)
        if peer.master and peer.claims:
            self._send_updates(viewer, peer)
        for other_id, info in sorted(peer.peers.items()):
            if other_id == viewer.node_id or other_id in viewer.peers:
                continue
            if viewer.banned.get(other_id, -1) >= self.tick_count:
                continue
            viewer.peers[other_id] = Peer(
                ip=info.ip,
                port=info.port,
                master=info.master,
                master_id=info.master_id,
                epoch=0,
            )
            viewer.owned[other_id] = _EMPTY

    def _hear_claims(self, viewer: SimNode, peer: SimNode) -> None:
        self._apply_claim(viewer, peer.node_id, peer.claims, peer.epoch)

    def _send_updates(self, viewer: SimNode, peer: SimNode) -> None:
        """UPDATE messages: the viewer corrects a peer's stale slot claims.

        When a peer claims slots the viewer gives to another node with a
        greater config epoch, the viewer sends that node's config (id, epoch,
        slots), which the peer applies if it knows the node, even if that
        node is down.
        """
        if viewer.owned.get(peer.node_id) is peer.claims:
            return
        for owner_id in sorted(viewer.owned):
            if owner_id == peer.node_id or owner_id not in peer.peers:
                continue
            slots = viewer.owned[owner_id]
            epoch = viewer.peers[owner_id].epoch
            if slots & peer.claims and epoch > peer.epoch:
                self._apply_claim(peer, owner_id, slots, epoch)

    def _apply_claim(
        self, viewer: SimNode, claimant: str, claim: frozenset[int], epoch: int
    ) -> None:
        if not claim:
            return
        taken: set[int] = set()
        for other_id in sorted(viewer.owned):
            if other_id == claimant:
                continue
            overlap = viewer.owned[other_id] & claim
            if not overlap or epoch <= viewer.peers[other_id].epoch:
                continue
            viewer.owned[other_id] = viewer.owned[other_id] - overlap
            taken |= overlap
            if (
                not viewer.master
                and viewer.master_id == other_id
                and not viewer.owned[other_id]
            ):
                # Replicas follow the node that took all their master's slots.
                viewer.master_id = claimant
                viewer.synced_with = None
        mine = (viewer.claims & claim) - set(viewer.importing)
        if mine and epoch > viewer.epoch:
            had = bool(viewer.claims)
            viewer.set_claims(viewer.claims - mine)
            for slot in mine:
                viewer.migrating.pop(slot, None)
            taken |= mine
            if had and not viewer.claims and viewer.master:
                # It keeps its keys until it syncs from its new master.
                viewer.demote(claimant)
            else:
                dirty = sorted(s for s in mine if viewer.keys.get(s))
                for slot in dirty:
                    # Redis 7 deletes the keys of slots it lost (dirty slots).
                    del viewer.keys[slot]
                if dirty:
                    self.log.append(
                        f"tick {self.tick_count}: {viewer.node_id[:8]} lost slots "
                        f"to {claimant[:8]} and deleted keys of {len(dirty)} slots"
                    )
        assigned = set(viewer.claims)
        for slots in viewer.owned.values():
            assigned |= slots
        free = claim - assigned
        seen = viewer.owned.get(claimant, _EMPTY) | taken | free
        # Keep the claimant's own set when they agree: a cheap identity check.
        viewer.owned[claimant] = claim if seen == claim else seen
        info = viewer.peers.get(claimant)
        if info is not None and info.epoch < epoch:
            info.epoch = epoch

    def _auto_failover(self) -> None:
        """Redis promotes a live replica of a master that is down long enough.

        The replica with the lowest ordinal among those that copied this
        master's data runs the election (Redis' replica validity check keeps
        a replica that never synced with it out); it wins with the votes of a
        majority of the masters it knows to serve slots.
        """
        ownership = self.ownership()
        for master_id in sorted(ownership.won):
            master = self.nodes[master_id]
            if master.running or not ownership.won[master_id]:
                continue
            if self._down_ticks(master) < self.auto_failover_ticks:
                continue
            candidates = [
                n
                for n in self.nodes.values()
                if n.running
                and not n.master
                and n.master_id == master_id
                and n.synced_with == master_id
                and master_id in n.peers
            ]
            if not candidates:
                continue
            replica = min(candidates, key=self._rank)
            if not self._wins_election(replica):
                continue
            self._promote(replica, master_id)
            self.log.append(
                f"tick {self.tick_count}: Redis promoted {replica.node_id[:8]} "
                f"in place of {master_id[:8]}"
            )
            ownership = self.ownership()

    def _wins_election(self, replica: SimNode) -> bool:
        """A majority of the masters with slots in the replica's view vote.

        A voter must run and know the replica; the failing master does not
        vote.
        """
        serving = [
            i
            for i, info in replica.peers.items()
            if info.master and replica.owned.get(i)
        ]
        voters = [
            i
            for i in serving
            if i != replica.master_id
            and self.nodes[i].running
            and replica.node_id in self.nodes[i].peers
        ]
        return 2 * len(voters) > len(serving)

    def _rank(self, node: SimNode) -> tuple[int, str]:
        ordinal = self.pod_of_node(node)
        return (1 << 30 if ordinal is None else ordinal, node.node_id)

    def _majority_alive(self, ownership: Ownership, *, excluding: str = "") -> bool:
        serving = [i for i, slots in ownership.won.items() if slots]
        voters = [i for i in serving if i != excluding and self.nodes[i].running]
        return 2 * len(voters) > len(serving)

    def _promote(self, replica: SimNode, master_id: str) -> None:
        slots = replica.owned.get(master_id, _EMPTY)
        replica.master = True
        replica.master_id = None
        replica.epoch = self._next_epoch()
        replica.set_claims(replica.claims | slots)
        if master_id in replica.owned:
            replica.owned[master_id] = _EMPTY

    def _next_epoch(self) -> int:
        return max((n.epoch for n in self.nodes.values()), default=0) + 1

    def _ensure_top_epoch(self, node: SimNode) -> None:
        others = max((n.epoch for n in self.nodes.values() if n is not node), default=0)
        if node.epoch <= others:
            node.epoch = others + 1
            node.version += 1

    def _sync_replicas(self) -> None:
        for node in self.nodes.values():
            if not node.running or node.master or node.master_id is None:
                continue
            master = self.nodes.get(node.master_id)
            if master is not None and master.running and master.master:
                node.keys = dict(master.keys)
                node.synced_with = master.node_id

    # -- migration Jobs ---------------------------------------------------

    def _run_jobs(self) -> None:
        for job in self.jobs:
            if job.finished:
                continue
            job.state = "running"
            self._run_job(job)

    def _run_job(self, job: SimJob) -> None:
        """Move up to ``slots_per_tick`` slots, then leave the next one open."""
        if job.current is not None:
            error = self._job_move([job.current])
            if error:
                self._fail_job(job, error)
                return
            job.current = None
        batch = job.queue[: self.slots_per_tick]
        del job.queue[: len(batch)]
        error = self._job_move(batch)
        if error:
            self._fail_job(job, error)
            return
        if not job.queue:
            job.state = "complete"
            return
        job.current = job.queue.pop(0)
        error = self._open_slot(*job.current)
        if error:
            self._fail_job(job, error)

    def _fail_job(self, job: SimJob, error: str) -> None:
        job.state = "failed"
        job.error = error
        self.log.append(f"tick {self.tick_count}: Job {job.name} failed: {error}")

    def _job_ends(
        self, source_id: str, target_id: str
    ) -> tuple[SimNode, SimNode] | str:
        source = self.nodes.get(source_id)
        target = self.nodes.get(target_id)
        if source is None or not source.running:
            return f"source {source_id[:8]} is unreachable"
        if target is None or not target.running:
            return f"target {target_id[:8]} is unreachable"
        if not target.master:
            return f"target {target_id[:8]} is not a master"
        return source, target

    def _job_move(self, batch: list[tuple[str, str, int]]) -> str:
        groups: dict[tuple[str, str], set[int]] = {}
        for source_id, target_id, slot in batch:
            groups.setdefault((source_id, target_id), set()).add(slot)
        for (source_id, target_id), slots in sorted(groups.items()):
            ends = self._job_ends(source_id, target_id)
            if isinstance(ends, str):
                return ends
            source, target = ends
            pending = slots - target.claims
            stray = pending - source.claims
            if stray or (pending and not source.master):
                return (
                    f"source {source_id[:8]} does not own slot {min(stray or pending)}"
                )
            for slot in sorted(slots):
                source.migrating.pop(slot, None)
                target.importing.pop(slot, None)
            if not pending:
                continue
            for slot in sorted(pending):
                self._move_keys(source, target, slot, source.keys.get(slot, _EMPTY))
            self._set_slots_node(pending, source, target)
        return ""

    def _open_slot(self, source_id: str, target_id: str, slot: int) -> str:
        ends = self._job_ends(source_id, target_id)
        if isinstance(ends, str):
            return ends
        source, target = ends
        if slot in target.claims:
            return ""
        if slot not in source.claims:
            return f"source {source_id[:8]} does not own slot {slot}"
        target.importing[slot] = source_id
        source.migrating[slot] = target_id
        keys = sorted(source.keys.get(slot, _EMPTY))
        self._move_keys(source, target, slot, frozenset(keys[: len(keys) // 2]))
        return ""

    def _move_keys(
        self, source: SimNode, target: SimNode, slot: int, keys: frozenset[str]
    ) -> None:
        if not keys:
            return
        target.keys[slot] = target.keys.get(slot, _EMPTY) | keys
        left = source.keys.get(slot, _EMPTY) - keys
        if left:
            source.keys[slot] = left
        else:
            source.keys.pop(slot, None)

    def _set_slots_node(
        self, slots: set[int], source: SimNode, target: SimNode
    ) -> None:
        """CLUSTER SETSLOT NODE on the target, the source, then other masters.

        As redis-cli does, every other running master is told too, so only
        replicas learn the move by gossip. With ``replica_migration`` (Redis
        7's default) a master that gives away its last slot becomes a
        replica of the node that took it.
        """
        self._ensure_top_epoch(target)
        target.set_claims(target.claims | slots)
        for slot in slots:
            target.importing.pop(slot, None)
        if source.node_id in target.owned:
            target.owned[source.node_id] = target.owned[source.node_id] - slots
        for other in self.nodes.values():
            if other in (source, target) or not (other.running and other.master):
                continue
            if target.node_id not in other.peers:
                continue
            for owner_id in list(other.owned):
                if other.owned[owner_id] & slots:
                    other.owned[owner_id] = other.owned[owner_id] - slots
            other.owned[target.node_id] = other.owned[target.node_id] | slots
            other.peers[target.node_id] = target.as_peer()
        if not source.running:
            return
        had = bool(source.claims)
        source.set_claims(source.claims - slots)
        for slot in slots:
            source.migrating.pop(slot, None)
        if target.node_id in source.peers:
            source.owned[target.node_id] = source.owned.get(target.node_id, _EMPTY) | (
                slots & target.claims
            )
            source.peers[target.node_id] = target.as_peer()
        if self.replica_migration and had and not source.claims and source.master:
            source.demote(target.node_id)

    def fail_running_job(self) -> bool:
        """The running Job's pod dies: the slot in flight stays open."""
        for job in self.jobs:
            if job.finished:
                continue
            if job.current is None and job.queue:
                job.current = job.queue.pop(0)
                self._open_slot(*job.current)
            self._fail_job(job, "the Job's pod was killed")
            return True
        return False

    # -- world events -----------------------------------------------------

    def kill(self, ordinal: int) -> None:
        """The pod's Redis process dies; the pod stays, not ready."""
        node = self.node_of(ordinal)
        assert node is not None
        self._stop(node)
        self.log.append(f"tick {self.tick_count}: killed {self.pod_name(ordinal)}")

    def restart(self, ordinal: int, *, new_ip: bool = False) -> None:
        """The process starts again from its disk (same id), maybe at a new IP."""
        node = self.node_of(ordinal)
        assert node is not None
        assert not node.gone
        pod = self.pods[ordinal]
        if new_ip:
            pod.ip = self._new_ip(ordinal)
        self._start(node, pod.ip)
        self.log.append(
            f"tick {self.tick_count}: restarted {self.pod_name(ordinal)}"
            + (f" at {pod.ip}" if new_ip else "")
        )

    def lose_disk(self, ordinal: int, *, junk: int = 0) -> None:
        """The pod comes back on a new disk: a new node id, no cluster, no peers.

        With ``junk`` the new disk holds that many keys of someone else's
        data (never expected). Keys whose every copy was on the old disk are
        lost through no fault of the planner: they leave ``expected`` and are
        listed in ``allowed_losses``.
        """
        old = self.node_of(ordinal)
        assert old is not None
        before = self.ownership().uncovered
        self._destroy(old)
        pod = self.pods[ordinal]
        pod.ip = self._new_ip(ordinal)
        node = self._new_node(ordinal, pod.ip)
        for index in range(junk):
            slot = (index * 613) % SLOT_COUNT
            node.keys[slot] = node.keys.get(slot, _EMPTY) | {f"junk{index}"}
        self.pvcs[ordinal] = node
        self._start(node, pod.ip)
        self.log.append(
            f"tick {self.tick_count}: {self.pod_name(ordinal)} lost its disk "
            f"({old.node_id[:8]} -> {node.node_id[:8]})"
        )
        orphaned = self.ownership().uncovered - before
        if orphaned:
            # No node is left that remembers who served these slots.
            self.orphaned |= orphaned
            self.allowed_losses.append(
                f"tick {self.tick_count}: {len(orphaned)} slots lost every record "
                f"of their owner with the disk of {self.pod_name(ordinal)}"
            )
        missing = self.missing_keys()
        for slot, keys in missing.items():
            self.expected[slot] = self.expected[slot] - keys
            if not self.expected[slot]:
                del self.expected[slot]
            self.allowed_losses.append(
                f"tick {self.tick_count}: slot {slot} keys {sorted(keys)} lost "
                f"with the disk of {self.pod_name(ordinal)}"
            )

    def _destroy(self, node: SimNode) -> None:
        self._stop(node)
        node.gone = True
        node.keys = {}
        node.migrating = {}
        node.importing = {}

    def set_spec(self, masters: int, replicas: int) -> None:
        """The user edits the spec; the generation goes up."""
        self.masters = masters
        self.replicas = replicas
        self.generation += 1

    def write_key(self, slot: int) -> bool:
        """A client writes a key through the slot's owner, if safely possible.

        Only when the owner and all its replicas run and the slot is not in
        migration, so that a later failover never loses an acknowledged
        write by asynchronous replication (which Redis allows but no
        planner can prevent).
        """
        ownership = self.ownership()
        owner_id = ownership.owner(slot)
        if owner_id is None:
            return False
        owner = self.nodes[owner_id]
        followers = [n for n in self.nodes.values() if n.master_id == owner_id]
        if not owner.running or any(not n.running for n in followers):
            return False
        if self._slot_open(slot):
            return False
        self._key_serial += 1
        key = f"w{self._key_serial}"
        owner.keys[slot] = owner.keys.get(slot, _EMPTY) | {key}
        self.expected[slot] = self.expected.get(slot, _EMPTY) | {key}
        self._sync_replicas()
        return True

    def _slot_open(self, slot: int) -> bool:
        return any(
            slot in n.migrating or slot in n.importing
            for n in self.nodes.values()
            if not n.gone
        )

    def heal_processes(self) -> None:
        """Kubernetes restarts every dead container; gossip lag ends."""
        for ordinal in sorted(self.pods):
            node = self.pvcs[ordinal]
            if not node.alive and not node.gone and not self.pods[ordinal].booting:
                self.restart(ordinal)
        self.lagging = set()

    # -- the truth, for invariants ------------------------------------------

    def in_play(self) -> list[SimNode]:
        """Nodes whose claims still count: all but destroyed, forgotten ones.

        A node destroyed by the world (lost disk) keeps its claims until the
        planner forgets its id: the cluster still believes it serves them.
        """
        return [n for n in self.nodes.values() if not (n.gone and n.forgotten)]

    def _claims(self) -> list[tuple[int, str, frozenset[int]]]:
        """(epoch, node id, slots) of every claim in play.

        A node with its disk claims what its own config says. A destroyed
        node's config is gone: only what other nodes still believe it serves
        (at the epoch they last heard) counts.
        """
        claims = []
        for node in self.in_play():
            if not node.gone:
                if node.claims and node.master:
                    claims.append((node.epoch, node.node_id, node.claims))
                continue
            believed: set[int] = set()
            epoch = 0
            for viewer in self.nodes.values():
                if viewer.gone or node.node_id not in viewer.owned:
                    continue
                believed |= viewer.owned[node.node_id]
                epoch = max(epoch, viewer.peers[node.node_id].epoch)
            if believed:
                claims.append((epoch, node.node_id, frozenset(believed)))
        return claims

    def ownership(self) -> Ownership:
        """Resolve every claim in play by config epoch, as gossip would."""
        claimants = sorted(self._claims(), key=lambda c: (-c[0], c[1]))
        covered: set[int] = set()
        won: dict[str, frozenset[int]] = {}
        ties: list[str] = []
        by_epoch: dict[int, list[tuple[str, frozenset[int]]]] = {}
        for epoch, node_id, slots in claimants:
            for other_id, other_slots in by_epoch.get(epoch, []):
                clash = slots & other_slots
                if clash:
                    ties.append(
                        f"slot {min(clash)} is claimed by {node_id[:8]} and "
                        f"{other_id[:8]} with the same epoch {epoch}"
                    )
            by_epoch.setdefault(epoch, []).append((node_id, slots))
            new = slots - covered
            if new:
                won[node_id] = frozenset(new)
                covered |= new
        return Ownership(
            won=won,
            uncovered=_ALL_SLOTS - covered,
            ties=tuple(ties),
        )

    def _in_pods(self) -> set[str]:
        """Ids of the nodes that existing pods run (or will run again)."""
        return {self.pvcs[o].node_id for o in self.pods if o in self.pvcs}

    def holders(
        self, slot: int, ownership: Ownership, in_pods: set[str] | None = None
    ) -> list[SimNode]:
        """Nodes whose copy of a slot's keys counts: owner, import end, replicas.

        Only nodes of existing pods count: a disk kept for a deleted pod
        comes back only if someone scales the StatefulSet up again.
        """
        in_pods = self._in_pods() if in_pods is None else in_pods
        owner_id = ownership.owner(slot)
        heads: list[SimNode] = []
        if owner_id is not None:
            heads.append(self.nodes[owner_id])
            target = self.nodes[owner_id].migrating.get(slot)
            if target is not None and target in self.nodes:
                heads.append(self.nodes[target])
        heads += [n for n in self.nodes.values() if slot in n.importing]
        found = [n for n in heads if not n.gone and n.node_id in in_pods]
        ids = {n.node_id for n in heads}
        for node in self.nodes.values():
            if node.gone or node.node_id not in in_pods:
                continue
            if not node.master and node.master_id in ids:
                found.append(node)
        return found

    def missing_keys(self) -> dict[int, frozenset[str]]:
        """Expected keys that no holder of their slot stores."""
        ownership = self.ownership()
        wanted = set(self.expected)
        owner_of: dict[int, str] = {}
        for owner_id, slots in ownership.won.items():
            for slot in slots & wanted:
                owner_of[slot] = owner_id
        # Outside open slots the holders are the owner and its replicas.
        in_pods = self._in_pods()
        families: dict[str, list[SimNode]] = {i: [] for i in ownership.won}
        for node in self.nodes.values():
            if node.gone or node.node_id not in in_pods:
                continue
            if node.node_id in families:
                families[node.node_id].insert(0, node)
            elif not node.master and node.master_id in families:
                families[node.master_id].append(node)
        opened: set[int] = set()
        for node in self.nodes.values():
            if not node.gone:
                opened.update(node.migrating, node.importing)
        missing: dict[int, frozenset[str]] = {}
        for slot, keys in self.expected.items():
            owner_id = owner_of.get(slot)
            if owner_id is None or slot in opened:
                holders = self.holders(slot, ownership, in_pods)
            else:
                holders = families[owner_id]
                if holders and keys <= holders[0].keys.get(slot, _EMPTY):
                    continue
            present: set[str] = set()
            for node in holders:
                present |= node.keys.get(slot, _EMPTY)
            lost = keys - present
            if lost:
                missing[slot] = frozenset(lost)
        return dict(sorted(missing.items()))

    def only_copies(self, node: SimNode) -> int:
        """How many expected keys exist only on this node among the holders."""
        ownership = self.ownership()
        count = 0
        for slot, keys in node.keys.items():
            wanted = keys & self.expected.get(slot, _EMPTY)
            if not wanted:
                continue
            holders = self.holders(slot, ownership)
            if node not in holders:
                continue
            elsewhere: set[str] = set()
            for other in holders:
                if other is not node:
                    elsewhere |= other.keys.get(slot, _EMPTY)
            count += len(wanted - elsewhere)
        return count

    def cluster_ids(self) -> set[str]:
        """Running nodes of the cluster: the component (by mutual knowledge)
        whose running owners serve the most slots, else the one with the most
        replicas of owners.
        """
        live = [n for n in self.nodes.values() if n.running]
        parent = {n.node_id: n.node_id for n in live}

        def find(node_id: str) -> str:
            while parent[node_id] != node_id:
                parent[node_id] = parent[parent[node_id]]
                node_id = parent[node_id]
            return node_id

        for node in live:
            for peer_id in node.peers:
                if peer_id in parent and node.node_id in self.nodes[peer_id].peers:
                    parent[find(node.node_id)] = find(peer_id)
        won = self.ownership().won
        weight: dict[str, tuple[int, int]] = {}
        for node in live:
            root = find(node.node_id)
            slots, size = weight.get(root, (0, 0))
            follows = not node.master and bool(won.get(node.master_id or ""))
            weight[root] = (slots + len(won.get(node.node_id, ())), size + follows)
        if not weight or max(weight.values()) == (0, 0):
            return set()
        best = max(sorted(weight), key=weight.__getitem__)
        return {i for i in parent if find(i) == best}

    def is_member(self, node: SimNode) -> bool:
        """A node the cluster knows: listed by a running node of the cluster."""
        cluster = self.cluster_ids()
        if node.node_id in cluster and node.claims:
            return True
        return any(
            node.node_id in self.nodes[i].peers for i in cluster if i != node.node_id
        )

    def quorum_lost(self) -> bool:
        """Half or more of the slot-serving masters are gone for good.

        Redis Cluster then has no majority to fail anything over, and the
        data of those masters can only come back by a human decision. Slots
        whose every owner record was destroyed count the same way.
        """
        ownership = self.ownership()
        if ownership.uncovered & self.orphaned:
            return True
        serving = [i for i, slots in ownership.won.items() if slots]
        gone = [i for i in serving if self.nodes[i].gone]
        return 2 * len(gone) >= len(serving) > 0 and bool(gone)

    def open_slots(self) -> list[str]:
        """Every migrating or importing marker on a running node.

        A node that is down cannot be observed; if it returns demoted, Redis
        closes its markers, and otherwise they show up again.
        """
        found = []
        for node in self.nodes.values():
            if not node.running:
                continue
            found += [f"{s}->{p[:8]}" for s, p in node.migrating.items()]
            found += [f"{s}<-{p[:8]}" for s, p in node.importing.items()]
        return sorted(found)

    def running_jobs(self) -> list[SimJob]:
        """Jobs that have not finished."""
        return [job for job in self.jobs if not job.finished]

    def spec_problems(self, *, tolerance: int = 327) -> list[str]:
        """How the world differs from the spec; empty once it converged.

        Converged means: exactly the spec's pods, all running; the spec's
        number of masters, balanced within ``tolerance`` slots; each with
        exactly the spec's number of replicas; every node knowing exactly
        the others and agreeing on every slot; no open slot and no Job.
        """
        problems: list[str] = []
        count = self.masters * (1 + self.replicas)
        if self.sts_replicas != count:
            problems.append(f"StatefulSet at {self.sts_replicas}, spec needs {count}")
        if sorted(self.pods) != list(range(count)):
            problems.append(f"pods {sorted(self.pods)}")
        nodes = [self.pvcs[o] for o in sorted(self.pods)]
        down = [self.pod_name(o) for o in sorted(self.pods) if not self.pvcs[o].running]
        if down:
            problems.append(f"not running: {down}")
        ownership = self.ownership()
        ids = {n.node_id for n in nodes}
        serving = {i: s for i, s in ownership.won.items() if s}
        if ownership.uncovered or not set(serving) <= ids:
            problems.append("slots are uncovered or served outside the pods")
        if len(serving) != self.masters:
            problems.append(f"{len(serving)} masters serve slots, spec {self.masters}")
        sizes = [len(s) for s in serving.values()]
        if sizes and max(sizes) - min(sizes) > tolerance:
            problems.append(f"unbalanced: {sorted(sizes)}")
        for node in nodes:
            if node.master and node.node_id not in serving:
                problems.append(f"{node.node_id[:8]} is a master without slots")
        for master_id in serving:
            followers = [n for n in nodes if not n.master and n.master_id == master_id]
            if len(followers) != self.replicas:
                problems.append(f"{master_id[:8]} has {len(followers)} replicas")
        for node in nodes:
            if set(node.peers) != ids - {node.node_id}:
                problems.append(f"{node.node_id[:8]} knows {len(node.peers)} others")
                continue
            views = {i: node.owned.get(i, _EMPTY) for i in ids if i != node.node_id}
            views[node.node_id] = node.claims if node.master else _EMPTY
            if any(views[i] != serving.get(i, _EMPTY) for i in views):
                problems.append(f"{node.node_id[:8]} disagrees on slot owners")
        if self.open_slots():
            problems.append(f"open slots {self.open_slots()[:4]}")
        if self.jobs:
            problems.append(f"Jobs left: {[job.name for job in self.jobs]}")
        return problems

    # -- observing ----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole ``kredis.snapshot/v1`` document an observer would build."""
        pods: list[dict[str, Any]] = []
        redis: dict[str, Any] = {}
        ownership = self.ownership()
        for ordinal, pod in sorted(self.pods.items()):
            node = self.pvcs[ordinal]
            name = self.pod_name(ordinal)
            ready = node.running and not pod.booting
            pods.append(
                {
                    "name": name,
                    "ip": pod.ip,
                    "phase": "Pending" if pod.booting else "Running",
                    "ready": ready,
                    "terminating": False,
                    "nodeName": pod.node_name,
                    "zone": pod.zone,
                }
            )
            if pod.booting:
                continue
            if not ready:
                redis[name] = {"reachable": False, "error": "connection refused"}
                continue
            redis[name] = {
                "reachable": True,
                "myId": node.node_id,
                "clusterNodes": self.cluster_nodes(node, ownership),
                "clusterInfo": self.cluster_info(node, ownership),
                "dbsize": node.dbsize,
            }
        ready_pods = sum(1 for p in pods if p["ready"])
        return {
            "format": "kredis.snapshot/v1",
            "observedAt": rfc3339(self.now_ms),
            "kredis": {
                "apiVersion": "kredis.io/v1alpha1",
                "kind": "Kredis",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "generation": self.generation,
                    "uid": "0000-sim",
                },
                "spec": {
                    "masters": self.masters,
                    "replicas": self.replicas,
                    "basePort": PORT,
                    "image": "redis:7.0",
                    "maxMemory": "512mb",
                },
                "status": copy.deepcopy(self.status),
            },
            "statefulSet": None
            if self.sts_replicas is None
            else {"replicas": self.sts_replicas, "readyReplicas": ready_pods},
            "pods": pods,
            "redis": redis,
            "jobs": [job.to_json() for job in self.jobs],
        }

    def _flags_of(self, node: SimNode, ownership: Ownership) -> set[NodeFlag]:
        if self._down_ticks(node) < PFAIL_TICKS:
            return set()
        if self._majority_alive(ownership):
            return {NodeFlag.FAILED}
        return {NodeFlag.SUSPECTED}

    def cluster_nodes(self, viewer: SimNode, ownership: Ownership | None = None) -> str:
        """CLUSTER NODES as the viewer answers it, from its own tables."""
        ownership = ownership or self.ownership()
        entries = [
            NodeEntry(
                node_id=viewer.node_id,
                ip=viewer.ip,
                port=viewer.port,
                bus_port=viewer.port + 10000,
                flags=frozenset(
                    {
                        NodeFlag.MYSELF,
                        NodeFlag.MASTER if viewer.master else NodeFlag.REPLICA,
                    }
                ),
                master_id=None if viewer.master else viewer.master_id,
                ping_sent=0,
                pong_received=0,
                config_epoch=viewer.epoch,
                link=LinkState.CONNECTED,
                slots=ranges(viewer.claims) if viewer.master else (),
                migrating=tuple(
                    OpenSlot(s, p) for s, p in sorted(viewer.migrating.items())
                ),
                importing=tuple(
                    OpenSlot(s, p) for s, p in sorted(viewer.importing.items())
                ),
            )
        ]
        for peer_id in sorted(viewer.peers):
            info = viewer.peers[peer_id]
            node = self.nodes[peer_id]
            flags = {NodeFlag.MASTER if info.master else NodeFlag.REPLICA}
            flags |= self._flags_of(node, ownership)
            entries.append(
                NodeEntry(
                    node_id=peer_id,
                    ip=info.ip,
                    port=info.port,
                    bus_port=info.port + 10000,
                    flags=frozenset(flags),
                    master_id=None if info.master else info.master_id,
                    ping_sent=0,
                    pong_received=node.last_seen_ms,
                    config_epoch=info.epoch,
                    link=LinkState.CONNECTED
                    if node.running
                    else LinkState.DISCONNECTED,
                    slots=ranges(viewer.owned.get(peer_id, _EMPTY))
                    if info.master
                    else (),
                )
            )
        return render_cluster_nodes(entries)

    def cluster_info(self, viewer: SimNode, ownership: Ownership | None = None) -> str:
        """CLUSTER INFO as the viewer answers it."""
        ownership = ownership or self.ownership()
        assigned = len(viewer.claims) if viewer.master else 0
        failing = False
        size = 1 if viewer.claims and viewer.master else 0
        for peer_id, slots in viewer.owned.items():
            if not slots or not viewer.peers[peer_id].master:
                continue
            assigned += len(slots)
            size += 1
            if NodeFlag.FAILED in self._flags_of(self.nodes[peer_id], ownership):
                failing = True
        epoch = max([viewer.epoch] + [p.epoch for p in viewer.peers.values()])
        ok = assigned == SLOT_COUNT and not failing
        return (
            f"cluster_state:{'ok' if ok else 'fail'}\r\n"
            f"cluster_slots_assigned:{assigned}\r\n"
            f"cluster_known_nodes:{1 + len(viewer.peers)}\r\n"
            f"cluster_size:{size}\r\n"
            f"cluster_current_epoch:{epoch}\r\n"
        )

    # -- acting -------------------------------------------------------------

    def apply_plan(self, plan: Plan, *, limit: int | None = None) -> list[Action]:
        """Apply a plan's actions in order, as the operator would.

        Stops at the first refusal (the operator ends the pass on an error)
        and after ``limit`` actions (the operator crashed). Returns the
        actions that were carried out.
        """
        actions = plan.actions if limit is None else plan.actions[:limit]
        done: list[Action] = []
        created: set[str] = set()
        for action in actions:
            error = self.apply(action, plan=plan, created_jobs=created)
            if error:
                self.refusals.append(f"tick {self.tick_count}: {error}")
                break
            done.append(action)
        return done

    def apply(
        self,
        action: Action,
        *,
        plan: Plan | None = None,
        created_jobs: set[str] | None = None,
    ) -> str:
        """Carry out one action; return Redis' or Kubernetes' refusal, if any."""
        match action:
            case ResetNode():
                return self._reset(action)
            case MeetNode():
                return self._meet(action, plan.command_pod if plan else "")
            case AssignSlots():
                return self._assign(action)
            case Replicate():
                return self._replicate(action)
            case MigrateSlots():
                return self._migrate(action, plan, created_jobs)
            case FinishMigration():
                return self._finish(action)
            case Failover():
                return self._failover(action)
            case ForgetNode():
                return self._forget(action)
            case ScaleStatefulSet():
                return self._scale(action)
            case DeleteJob():
                return self._delete_job(action)
            case Wait():
                return ""
        raise AssertionError(f"unknown action {action!r}")

    def _violate(self, kind: str, detail: str) -> None:
        self.violations.append(Violation(self.tick_count, kind, detail))

    def _running_node(self, pod_name: str) -> SimNode | str:
        ordinal = self.ordinal_of(pod_name)
        pod = None if ordinal is None else self.pods.get(ordinal)
        if pod is None:
            return f"pod {pod_name} does not exist"
        node = self.pvcs[pod.ordinal]
        if not node.running or pod.booting:
            return f"pod {pod_name} does not answer"
        return node

    def _reset(self, action: ResetNode) -> str:
        """FLUSHALL and CLUSTER RESET HARD: the node gets a new id and no data."""
        node = self._running_node(action.pod)
        if isinstance(node, str):
            return node
        if self.is_member(node):
            self._violate(
                RESET_MEMBER, f"{action.pod} ({node.node_id[:8]}) is a member"
            )
        if node.claims:
            self._violate(
                RESET_MEMBER,
                f"{action.pod} ({node.node_id[:8]}) serves {len(node.claims)} slots",
            )
        only = self.only_copies(node)
        if only:
            self._violate(
                RESET_MEMBER,
                f"{action.pod} ({node.node_id[:8]}) holds the only copy of {only} keys",
            )
        ordinal = self.ordinal_of(action.pod)
        assert ordinal is not None
        self._destroy(node)
        fresh = self._new_node(ordinal, self.pods[ordinal].ip)
        self.pvcs[ordinal] = fresh
        self._start(fresh, self.pods[ordinal].ip)
        return ""

    def _meet(self, action: MeetNode, command_pod: str) -> str:
        """CLUSTER MEET from the command pod; gossip spreads the news later."""
        command = self._running_node(command_pod) if command_pod else "no command pod"
        if isinstance(command, str):
            return f"meet {action.pod}: {command}"
        ordinal = self.ordinal_of(action.pod)
        pod = self.pods.get(ordinal) if ordinal is not None else None
        if pod is None:
            return f"meet: pod {action.pod} does not exist"
        node = self.pvcs[pod.ordinal]
        if not node.running or pod.booting or node is command:
            return ""  # The handshake never completes; MEET itself said OK.
        if node.claims and node.node_id not in command.peers:
            ownership = self.ownership()
            theirs = set()
            for owner, slots in ownership.won.items():
                if owner != node.node_id:
                    theirs |= slots & node.claims
            if theirs:
                self._violate(
                    DOUBLE_OWNER,
                    f"meet merges {action.pod}, which claims {len(theirs)} slots "
                    "the cluster serves",
                )
        command.peers[node.node_id] = node.as_peer()
        command.owned.setdefault(node.node_id, _EMPTY)
        command.banned.pop(node.node_id, None)
        node.peers[command.node_id] = command.as_peer()
        node.owned.setdefault(command.node_id, _EMPTY)
        node.banned.pop(command.node_id, None)
        return ""

    def _assign(self, action: AssignSlots) -> str:
        """ADDSLOTS (refused on a busy slot), or a takeover by SETSLOT NODE.

        A takeover (``from_node_id``) bumps the taker's epoch and gives it,
        on every running node, slots the failed node serves (refused for any
        other slot); it is a data-loss operation if any holder of those slots
        still has their keys.
        """
        node = self._running_node(action.pod)
        if isinstance(node, str):
            return node
        slots = slots_of(action.slots)
        if not node.master:
            return f"assign to {action.pod}: a replica cannot serve slots"
        if action.config_epoch is not None:
            if node.peers:
                return (
                    f"set-config-epoch on {action.pod}: the node already knows "
                    "other nodes"
                )
            if node.epoch:
                return f"set-config-epoch on {action.pod}: epoch is already non-zero"
        if action.from_node_id is None:
            busy = slots & node.claims
            for slots_seen in node.owned.values():
                busy |= slots & slots_seen
            if busy:
                return f"addslots on {action.pod}: slot {min(busy)} is busy"
            if action.config_epoch is not None:
                node.epoch = action.config_epoch
            ownership = self.ownership()
            for owner, won in ownership.won.items():
                if owner != node.node_id and won & slots:
                    self._violate(
                        DOUBLE_OWNER,
                        f"{action.pod} was given slot {min(won & slots)} which "
                        f"{owner[:8]} serves",
                    )
            node.set_claims(node.claims | slots)
            return ""
        ownership = self.ownership()
        served = ownership.won.get(action.from_node_id, _EMPTY)
        if not slots <= served:
            return (
                f"takeover on {action.pod}: slot {min(slots - served)} is not "
                f"served by {action.from_node_id[:8]}"
            )
        kept = 0
        for slot in sorted(slots & set(self.expected)):
            for holder in self.holders(slot, ownership):
                if holder is not node:
                    kept += len(holder.keys.get(slot, _EMPTY) & self.expected[slot])
        if kept:
            self._violate(
                DATA_LOSS,
                f"{action.pod} takes over slots of {action.from_node_id[:8]} while "
                f"{kept} of their keys still exist elsewhere",
            )
        self._ensure_top_epoch(node)
        node.set_claims(node.claims | slots)
        # The adapter gives the slots to the taker on every node.
        for viewer in self.nodes.values():
            if not viewer.running or viewer is node:
                continue
            if action.from_node_id in viewer.owned:
                viewer.owned[action.from_node_id] -= slots
            if node.node_id in viewer.peers:
                viewer.owned[node.node_id] = viewer.owned[node.node_id] | slots
                viewer.peers[node.node_id] = node.as_peer()
                viewer.heard[node.node_id] = (node.epoch, node.version)
        if action.from_node_id in node.owned:
            node.owned[action.from_node_id] -= slots
        return ""

    def _replicate(self, action: Replicate) -> str:
        """CLUSTER REPLICATE, with Redis' refusals; the copy syncs at once.

        As documented for the adapter, it first waits until the node knows
        the master, which gossip teaches any node that knows a live peer.
        """
        node = self._running_node(action.pod)
        if isinstance(node, str):
            return node
        if action.master_id == node.node_id:
            return f"replicate on {action.pod}: cannot replicate myself"
        info = node.peers.get(action.master_id)
        master = self.nodes.get(action.master_id)
        if info is None and master is not None and master.running and node.peers:
            # The adapter waits until gossip has taught the node its master.
            info = node.peers[action.master_id] = master.as_peer()
            node.owned[action.master_id] = master.claims
        if info is None:
            return f"replicate on {action.pod}: unknown node {action.master_id[:8]}"
        if not info.master:
            return f"replicate on {action.pod}: I can only replicate a master"
        if node.master and (node.claims or node.dbsize):
            return (
                f"replicate on {action.pod}: to set a master the node must be empty "
                "and without assigned slots"
            )
        node.demote(action.master_id)
        self._sync_replicas()
        return ""

    def _migrate(
        self, action: MigrateSlots, plan: Plan | None, created: set[str] | None
    ) -> str:
        """Create the migration Job named by the action, with all its moves."""
        created = set() if created is None else created
        if action.job in created:
            return ""
        if any(job.name == action.job for job in self.jobs):
            return f"create Job {action.job}: AlreadyExists"
        if self.running_jobs():
            self._violate(
                TWO_JOBS,
                f"Job {action.job} created while "
                f"{', '.join(j.name for j in self.running_jobs())} runs",
            )
        opened = self.open_slots()
        if opened:
            self._violate(
                MIGRATE_OPEN,
                f"Job {action.job} created while slots are open: {opened[:4]}",
            )
        moves = [action]
        if plan is not None:
            moves = [
                a
                for a in plan.actions
                if isinstance(a, MigrateSlots) and a.job == action.job
            ]
        queue = [
            (move.source_id, move.target_id, slot)
            for move in moves
            for slot in sorted(slots_of(move.slots))
        ]
        self.jobs.append(SimJob(name=action.job, queue=queue, total=len(queue)))
        created.add(action.job)
        return ""

    def _finish(self, action: FinishMigration) -> str:
        """Move what is left of each slot to the target, then SETSLOT NODE.

        With the source down its keys cannot move; claiming the slot for the
        target anyway discards them (a data-loss operation). A target equal
        to the source closes the slots on their owner (SETSLOT STABLE).
        """
        running = self.running_jobs()
        if running:
            self._violate(
                TWO_JOBS,
                f"finish-migration of {format_ranges(action.slots)} while Job "
                f"{running[0].name} runs",
            )
        if action.target_id == action.source_id:
            return self._close(action)
        target = self.nodes.get(action.target_id)
        if target is None or not target.running:
            return f"finish migration: target {action.target} does not answer"
        if not target.master:
            return f"finish migration: target {action.target} is not a master"
        source = self.nodes.get(action.source_id)
        slots = set(slots_of(action.slots))
        ownership = self.ownership()
        for slot in sorted(slots):
            owner = ownership.owner(slot)
            if owner not in (action.source_id, action.target_id):
                self._violate(
                    DATA_LOSS,
                    f"finish-migration of slot {slot} toward {action.target}, but "
                    f"its owner is {owner and owner[:8]}",
                )
        if source is not None and source.running:
            for slot in sorted(slots):
                self._move_keys(source, target, slot, source.keys.get(slot, _EMPTY))
            moving = slots & source.claims
            if moving and not source.master:
                return f"finish migration: source {action.source} is not a master"
            self._set_slots_node(slots - target.claims, source, target)
            for slot in slots:
                source.migrating.pop(slot, None)
                target.importing.pop(slot, None)
            return ""
        left = 0
        if source is not None:
            for slot in slots:
                left += len(
                    source.keys.get(slot, _EMPTY) & self.expected.get(slot, _EMPTY)
                )
        if left:
            self._violate(
                DATA_LOSS,
                f"finish-migration gives slots to {action.target} while the source "
                f"{action.source} is down with {left} of their keys",
            )
        self._ensure_top_epoch(target)
        target.set_claims(target.claims | slots)
        for slot in slots:
            target.importing.pop(slot, None)
        if action.source_id in target.owned:
            target.owned[action.source_id] = target.owned[action.source_id] - slots
        return ""

    def _close(self, action: FinishMigration) -> str:
        owner = self.nodes.get(action.source_id)
        if owner is None or not owner.running:
            return f"close slots: owner {action.source} does not answer"
        for slot in slots_of(action.slots):
            owner.migrating.pop(slot, None)
            owner.importing.pop(slot, None)
        return ""

    def _failover(self, action: Failover) -> str:
        """CLUSTER FAILOVER [FORCE|TAKEOVER] on a replica.

        The default mode needs the master up and swaps the two at once.
        FORCE needs the votes of a majority of the slot-serving masters the
        replica knows (without them nothing happens); TAKEOVER needs none.
        The old master learns by gossip that it lost its slots.
        """
        node = self._running_node(action.pod)
        if isinstance(node, str):
            return node
        if node.master or node.master_id is None:
            return f"failover on {action.pod}: send CLUSTER FAILOVER to a replica"
        master = self.nodes.get(node.master_id)
        if action.mode is FailoverMode.DEFAULT:
            if master is None or not master.running:
                return (
                    f"failover on {action.pod}: master is down or failed, please use "
                    "CLUSTER FAILOVER FORCE"
                )
            slots = master.claims
            self._promote(node, master.node_id)
            node.set_claims(node.claims | slots)
            master.set_claims(_EMPTY)
            master.demote(node.node_id)
            master.peers[node.node_id] = node.as_peer()
            if node.node_id in master.owned:
                master.owned[node.node_id] = node.claims
            self._sync_replicas()
            return ""
        if action.mode is FailoverMode.FORCE and not self._wins_election(node):
            self.log.append(
                f"tick {self.tick_count}: forced failover of {action.pod} got no "
                "majority"
            )
            return ""
        self._promote(node, node.master_id)
        return ""

    def _forget(self, action: ForgetNode) -> str:
        """CLUSTER FORGET on every running node but the forgotten one.

        A replica refuses to forget its own master; nodes that are down keep
        the id (and may gossip it back after the 60 s ban).
        """
        ownership = self.ownership()
        serves = ownership.won.get(action.node_id, _EMPTY)
        if serves:
            self._violate(
                FORGET_HOLDER,
                f"{action.node_id[:8]} ({action.pod or 'no pod'}) still serves "
                f"{len(serves)} slots",
            )
        target = self.nodes.get(action.node_id)
        if target is not None:
            target.forgotten = True
        refused = []
        for node in sorted(self.nodes.values(), key=lambda n: n.node_id):
            if not node.running or node.node_id == action.node_id:
                continue
            if action.node_id not in node.peers:
                continue
            if not node.master and node.master_id == action.node_id:
                refused.append(node.node_id[:8])
                continue
            node.forget(action.node_id)
            node.banned[action.node_id] = self.tick_count + FORGET_BAN_TICKS
        if refused:
            return (
                f"forget {action.node_id[:8]}: {', '.join(refused)} cannot forget "
                "their master"
            )
        return ""

    def _scale(self, action: ScaleStatefulSet) -> str:
        """Set the StatefulSet's replicas: pods above it go, missing ones boot.

        A deleted pod's disk is kept (Kubernetes' default retention), so a
        later scale-up brings the old node back with its id and peers.
        """
        count = action.replicas
        self.sts_replicas = count
        ownership = self.ownership()
        for ordinal in sorted(self.pods, reverse=True):
            if ordinal < count:
                continue
            node = self.pvcs[ordinal]
            serves = ownership.won.get(node.node_id, _EMPTY)
            if serves:
                self._violate(
                    SHRINK_HOLDER,
                    f"pod {self.pod_name(ordinal)} is deleted while its node serves "
                    f"{len(serves)} slots",
                )
            only = self.only_copies(node)
            if only:
                self._violate(
                    SHRINK_HOLDER,
                    f"pod {self.pod_name(ordinal)} is deleted with the only copy of "
                    f"{only} keys",
                )
            self._stop(node)
            del self.pods[ordinal]
            if not self.keep_pvcs:
                self._destroy(node)
                del self.pvcs[ordinal]
        for ordinal in range(count):
            if ordinal not in self.pods:
                self._create_pod(ordinal, booting=True)
        return ""

    def _delete_job(self, action: DeleteJob) -> str:
        for job in self.jobs:
            if job.name == action.job:
                if not job.finished:
                    self.log.append(
                        f"tick {self.tick_count}: running Job {job.name} deleted"
                    )
                self.jobs.remove(job)
                return ""
        return ""
