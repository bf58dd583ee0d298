"""A test-only model of pods and Redis nodes that renders real snapshots.

Unit and property tests describe a cluster here (who is master, which slots,
which node is down, what each node knows) and get ``kredis.snapshot/v1`` JSON
whose CLUSTER NODES text is rendered in Redis' own format. It is a fake for
tests only and never talks to a real process.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any

from kredis.domain.nodes import LinkState, NodeEntry, NodeFlag, render_cluster_nodes
from kredis.domain.slots import SLOT_COUNT, allocate_ranges, ranges_from_slots

T0_MS = 1_796_000_000_000
OBSERVED_AT = "2026-11-30T00:53:20Z"  # T0_MS as RFC 3339


def node_id_for(seed: str) -> str:
    """A stable, valid node id derived from a seed string."""
    return hashlib.sha1(seed.encode()).hexdigest()


@dataclass
class Node:
    """A Redis node as the model sees it (mutable, test-only)."""

    node_id: str
    ip: str
    port: int = 6379
    master: bool = True
    master_id: str | None = None
    slots: set[int] = field(default_factory=set)
    keys: int = 0
    failed: bool = False
    suspected: bool = False
    reachable: bool = True
    epoch: int = 0
    pong_ms: int = T0_MS
    knows: set[str] | None = None
    migrating: dict[int, str] = field(default_factory=dict)
    importing: dict[int, str] = field(default_factory=dict)
    no_address: bool = False


@dataclass
class Pod:
    """A pod of the StatefulSet (mutable, test-only)."""

    name: str
    ip: str
    ready: bool = True
    node_name: str = ""
    zone: str = ""
    node: Node | None = None


@dataclass
class World:
    """Pods, nodes, Jobs and the resource: everything a snapshot holds."""

    name: str = "demo"
    namespace: str = "default"
    masters: int = 3
    replicas: int = 1
    port: int = 6379
    max_memory: str = "512mb"
    generation: int = 1
    status: dict[str, Any] = field(default_factory=dict)
    pods: dict[str, Pod] = field(default_factory=dict)
    ghosts: list[Node] = field(default_factory=list)
    sts_replicas: int | None = None
    jobs: list[dict[str, Any]] = field(default_factory=list)
    members: set[str] = field(default_factory=set)
    spec_extra: dict[str, Any] = field(default_factory=dict)
    observed_at: str = OBSERVED_AT

    # -- building -------------------------------------------------------

    def add_pod(self, ordinal: int, *, fresh: bool = True, **pod: Any) -> Pod:
        """Add pod ``<name>-<ordinal>`` with a fresh, clean node."""
        name = f"{self.name}-{ordinal}"
        defaults = {
            "ip": f"10.1.{ordinal // 250}.{ordinal % 250 + 2}",
            "node_name": f"worker-{ordinal % 3}",
            "zone": f"zone-{'abc'[ordinal % 3]}",
        }
        defaults.update(pod)
        created = Pod(name=name, **defaults)
        if fresh:
            created.node = Node(node_id=node_id_for(f"{name}/0"), ip=created.ip)
        self.pods[name] = created
        if self.sts_replicas is None or self.sts_replicas <= ordinal:
            self.sts_replicas = ordinal + 1
        return created

    def node(self, ordinal: int) -> Node:
        """The node of pod ``<name>-<ordinal>``."""
        pod = self.pods[f"{self.name}-{ordinal}"]
        assert pod.node is not None
        return pod.node

    def join(self, *ordinals: int) -> None:
        """Make the nodes of these pods members that all know each other."""
        for ordinal in ordinals:
            self.members.add(self.node(ordinal).node_id)

    def replicate(self, replica: int, master: int) -> None:
        """Make one pod's node a replica of another's."""
        node = self.node(replica)
        node.master = False
        node.master_id = self.node(master).node_id
        node.slots = set()

    @classmethod
    def formed(
        cls, masters: int = 3, replicas: int = 1, *, keys: int = 100, **kwargs: Any
    ) -> World:
        """A converged cluster: first ordinals are masters, then replicas."""
        world = cls(masters=masters, replicas=replicas, **kwargs)
        count = masters * (1 + replicas)
        for ordinal in range(count):
            world.add_pod(ordinal)
        for index, slot_range in enumerate(allocate_ranges(masters)):
            node = world.node(index)
            node.slots = set(slot_range.slots())
            node.keys = keys
            node.epoch = index + 1
        for ordinal in range(masters, count):
            world.replicate(ordinal, (ordinal - masters) % masters)
            world.node(ordinal).keys = keys
        world.join(*range(count))
        world.status = {"clusterFormed": True}
        world.record_status()
        return world

    def record_status(self) -> None:
        """Record every pod's current node id in status, as a pass would."""
        nodes = []
        for pod in self.sorted_pods():
            if pod.node is None:
                continue
            nodes.append(
                {
                    "podName": pod.name,
                    "nodeId": pod.node.node_id,
                    "ip": pod.ip,
                    "port": self.port,
                    "role": "master" if pod.node.master else "replica",
                    "masterId": pod.node.master_id or "",
                    "slotCount": len(pod.node.slots),
                    "status": "ok",
                }
            )
        self.status["clusterNodes"] = nodes

    # -- rendering ------------------------------------------------------

    def sorted_pods(self) -> list[Pod]:
        """Pods by ordinal."""
        return sorted(self.pods.values(), key=lambda p: int(p.name.rsplit("-", 1)[1]))

    def all_nodes(self) -> list[Node]:
        """Nodes of pods and ghosts."""
        nodes = [p.node for p in self.sorted_pods() if p.node is not None]
        return nodes + list(self.ghosts)

    def _entry(self, node: Node, viewer: Node) -> NodeEntry:
        flags = {NodeFlag.MASTER if node.master else NodeFlag.REPLICA}
        if node is viewer:
            flags.add(NodeFlag.MYSELF)
        elif node.failed:
            flags.add(NodeFlag.FAILED)
        elif node.suspected:
            flags.add(NodeFlag.SUSPECTED)
        if node.no_address and node is not viewer:
            flags.add(NodeFlag.NO_ADDRESS)
        mine = node is viewer
        from kredis.domain.nodes import OpenSlot

        return NodeEntry(
            node_id=node.node_id,
            ip="" if node.no_address and not mine else node.ip,
            port=0 if node.no_address and not mine else node.port,
            bus_port=0 if node.no_address and not mine else node.port + 10000,
            flags=frozenset(flags),
            master_id=node.master_id,
            ping_sent=0,
            pong_received=0 if mine else node.pong_ms,
            config_epoch=node.epoch,
            link=LinkState.DISCONNECTED
            if (node.failed or node.suspected) and not mine
            else LinkState.CONNECTED,
            slots=ranges_from_slots(node.slots) if node.master else (),
            migrating=tuple(OpenSlot(s, p) for s, p in sorted(node.migrating.items()))
            if mine
            else (),
            importing=tuple(OpenSlot(s, p) for s, p in sorted(node.importing.items()))
            if mine
            else (),
        )

    def view(self, viewer: Node) -> str:
        """CLUSTER NODES as ``viewer`` would answer it."""
        if viewer.knows is not None:
            known = viewer.knows
        elif viewer.node_id in self.members:
            known = self.members | {g.node_id for g in self.ghosts}
        else:
            known = set()
        entries = [
            self._entry(node, viewer)
            for node in self.all_nodes()
            if node is viewer or node.node_id in known
        ]
        return render_cluster_nodes(entries)

    def info(self, viewer: Node) -> str:
        """CLUSTER INFO as ``viewer`` would answer it."""
        assigned = sum(len(n.slots) for n in self.all_nodes() if n.master)
        failed_slots = any(n.failed and n.slots for n in self.all_nodes() if n.master)
        ok = (
            viewer.node_id in self.members
            and assigned == SLOT_COUNT
            and not failed_slots
        )
        epoch = max((n.epoch for n in self.all_nodes()), default=0)
        return (
            f"cluster_state:{'ok' if ok else 'fail'}\r\n"
            f"cluster_slots_assigned:{assigned}\r\n"
            f"cluster_known_nodes:{len(self.members)}\r\n"
            f"cluster_size:{sum(1 for n in self.all_nodes() if n.slots)}\r\n"
            f"cluster_current_epoch:{epoch}\r\n"
        )

    def snapshot(self) -> dict[str, Any]:
        """The whole ``kredis.snapshot/v1`` document."""
        redis: dict[str, Any] = {}
        pods = []
        for pod in self.sorted_pods():
            pods.append(
                {
                    "name": pod.name,
                    "ip": pod.ip,
                    "phase": "Running",
                    "ready": pod.ready,
                    "terminating": False,
                    "nodeName": pod.node_name,
                    "zone": pod.zone,
                }
            )
            node = pod.node
            if node is None:
                continue
            if not node.reachable:
                redis[pod.name] = {"reachable": False, "error": "connection refused"}
                continue
            redis[pod.name] = {
                "reachable": True,
                "myId": node.node_id,
                "clusterNodes": self.view(node),
                "clusterInfo": self.info(node),
                "dbsize": node.keys,
            }
        spec = {
            "masters": self.masters,
            "replicas": self.replicas,
            "basePort": self.port,
            "image": "redis:7.0",
            "maxMemory": self.max_memory,
        }
        spec.update(self.spec_extra)
        return {
            "format": "kredis.snapshot/v1",
            "observedAt": self.observed_at,
            "kredis": {
                "apiVersion": "kredis.io/v1alpha1",
                "kind": "Kredis",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "generation": self.generation,
                    "uid": "0000-test",
                },
                "spec": spec,
                "status": copy.deepcopy(self.status),
            },
            "statefulSet": None
            if self.sts_replicas is None
            else {"replicas": self.sts_replicas, "readyReplicas": self.sts_replicas},
            "pods": pods,
            "redis": redis,
            "jobs": copy.deepcopy(self.jobs),
        }
