"""Situations built on real Redis servers, shared by tests and the capture script.

Each builder drives live servers from ``tests.support.real_cluster`` into one
situation (a fresh set, a formed cluster, a dirty newcomer, an open slot, a
failed master, a moved pod) so that the integration tests and
``tests.data.capture_snapshots`` observe exactly the same thing. The status a
snapshot carries is the one the planner wrote on the previous healthy pass,
as the operator would have stored it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kredis.domain.actions import AssignSlots, Replicate
from kredis.domain.context import PlannerSettings
from kredis.domain.planner import Plan, plan
from kredis.domain.snapshot import load_snapshot
from tests.support.real_cluster import (
    NODE_TIMEOUT_MS,
    SETTLE_TIMEOUT_S,
    HarnessError,
    RedisHarness,
    RedisServer,
    capture,
    close_slot,
    cluster_nodes,
    cluster_state_ok,
    fill_unassigned,
    form_cluster,
    line_of,
    open_slot,
    spec_of,
    wait_converged,
    wait_for,
    write_keys,
)

CLUSTER = "demo"
KEYS = 120
STRAY_KEYS = 40
SPEC_3X1 = spec_of(3, 1)
SPEC_4X1 = spec_of(4, 1)


def plan_real(document: dict[str, Any], node_timeout_ms: int = NODE_TIMEOUT_MS) -> Plan:
    """Plan a captured document with the servers' node timeout."""
    settings = PlannerSettings(node_timeout_ms=node_timeout_ms)
    return plan(load_snapshot(document), settings)


def start_pods(
    harness: RedisHarness,
    group: str,
    ordinals: Sequence[int],
    *,
    node_timeout_ms: int = NODE_TIMEOUT_MS,
) -> list[RedisServer]:
    """Fresh servers for pods ``demo-<ordinal>`` in one directory group."""
    return [
        harness.start(f"{CLUSTER}-{n}", group=group, node_timeout_ms=node_timeout_ms)
        for n in ordinals
    ]


@dataclass
class FormedCluster:
    """A converged cluster of live servers and the status last recorded for it."""

    servers: list[RedisServer]
    spec: dict[str, Any]
    status: dict[str, Any]

    def pod(self, ordinal: int) -> RedisServer:
        """The server of pod ``demo-<ordinal>``."""
        return self.servers[ordinal]

    def replace(self, server: RedisServer) -> None:
        """Put a restarted server in its pod's place."""
        self.servers[server.ordinal] = server

    def live(self) -> list[RedisServer]:
        """Servers whose process runs."""
        return [server for server in self.servers if server.alive]

    def capture(
        self,
        *newcomers: RedisServer,
        spec: dict[str, Any] | None = None,
        generation: int = 1,
    ) -> dict[str, Any]:
        """A snapshot of the cluster's pods plus ``newcomers``."""
        return capture(
            [*self.servers, *newcomers],
            spec=spec or self.spec,
            status=self.status,
            generation=generation,
        )

    def role_of(self, server: RedisServer) -> str:
        """``master`` or ``slave``, as the server says of itself."""
        for line in cluster_nodes(server):
            if "myself" in line.flags:
                return "master" if line.is_master else "slave"
        raise HarnessError(f"{server.pod} has no myself line")

    def replica_of(self, master: RedisServer) -> RedisServer:
        """The pod replicating ``master``, from the replicas' own views."""
        master_id = master.node_id()
        for server in self.live():
            mine = line_of(server, server.node_id())
            if mine is not None and mine.master_id == master_id:
                return server
        raise HarnessError(f"no live replica of {master.pod}")


@dataclass
class Creation:
    """Six fresh servers' snapshot, then the cluster formed by its plan."""

    fresh: dict[str, Any]
    fresh_ids: dict[str, str]
    cluster: FormedCluster


def create_by_plan(
    harness: RedisHarness, group: str, *, node_timeout_ms: int = NODE_TIMEOUT_MS
) -> Creation:
    """Capture six fresh servers, form them as the creation plan says, add keys.

    The plan's slot ranges, config epochs and replica pairs are carried out
    with redis-cli; the recorded status is the planner's own once formed.
    """
    servers = start_pods(harness, group, range(6), node_timeout_ms=node_timeout_ms)
    fresh = capture(servers, spec=SPEC_3X1)
    fresh_ids = {server.pod: server.node_id() for server in servers}
    creation = plan_real(fresh, node_timeout_ms)
    by_pod = {server.pod: server for server in servers}
    masters = []
    replicas = []
    for action in creation.actions:
        if isinstance(action, AssignSlots):
            (slots,) = action.slots
            masters.append((by_pod[action.pod], (slots.start, slots.end)))
        elif isinstance(action, Replicate):
            replicas.append((by_pod[action.pod], by_pod[action.master_pod]))
    if len(masters) != 3 or len(replicas) != 3:
        raise HarnessError(f"the creation plan is not 3 masters x 1: {creation}")
    form_cluster(masters, replicas)
    write_keys(servers, KEYS)
    cluster = FormedCluster(servers=servers, spec=SPEC_3X1, status={})
    cluster.status = plan_real(cluster.capture(), node_timeout_ms).status.to_json()
    return Creation(fresh=fresh, fresh_ids=fresh_ids, cluster=cluster)


def dirty_newcomer(harness: RedisHarness, group: str, ordinal: int) -> RedisServer:
    """A server that knows nobody, serves no slot and still holds keys."""
    (server,) = start_pods(harness, group, [ordinal])
    fill_unassigned(server, STRAY_KEYS)
    return server


@contextmanager
def slot_left_open(
    cluster: FormedCluster, slot: int
) -> Iterator[tuple[RedisServer, RedisServer]]:
    """Open ``slot`` from its owner toward the next master; close it after.

    Yields (source, target).
    """
    masters = [s for s in cluster.servers if cluster.role_of(s) == "master"]
    masters.sort(key=lambda server: server.ordinal)
    owner_id = _owner_of(cluster.servers[0], slot)
    source = next(s for s in masters if s.node_id() == owner_id)
    target = masters[(masters.index(source) + 1) % len(masters)]
    open_slot(slot, source, target)
    try:
        yield source, target
    finally:
        close_slot(slot, [source, target])


def _owner_of(observer: RedisServer, slot: int) -> str:
    for line in cluster_nodes(observer):
        for token in line.slots:
            start, _, end = token.partition("-")
            if int(start) <= slot <= int(end or start):
                return line.node_id
    raise HarnessError(f"{observer.pod} sees no owner for slot {slot}")


@dataclass
class MasterFailure:
    """Snapshots taken while Redis handled a killed master, and after."""

    dead_pod: str
    dead_id: str
    replica_pod: str
    node_timeout_ms: int
    during: list[dict[str, Any]]
    after: dict[str, Any]


def failover_problem(cluster: FormedCluster, dead_id: str) -> str:
    """Why Redis' own failover of ``dead_id`` is not complete; "" once it is.

    Complete: no live node shows the dead node with slots, all live nodes
    agree on the slots and report cluster_state ok.
    """
    pictures = set()
    for server in cluster.live():
        lines = cluster_nodes(server)
        pictures.add(tuple(sorted((line.node_id, line.slots) for line in lines)))
        dead = next((line for line in lines if line.node_id == dead_id), None)
        if dead is not None and dead.slots:
            return f"{server.pod} still sees the dead master with slots"
        if not cluster_state_ok(server):
            return f"{server.pod} reports cluster_state other than ok"
    if len(pictures) > 1:
        return "live nodes disagree on slots"
    return ""


def watch_master_failure(cluster: FormedCluster, victim: RedisServer) -> MasterFailure:
    """kill -9 a master, snapshot the cluster over and over until Redis fails over.

    Every snapshot taken before the failover completed is in ``during``; the
    first one taken after it is ``after``.
    """
    dead_id = victim.node_id()
    replica = cluster.replica_of(victim)
    victim.kill()
    during: list[dict[str, Any]] = []
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while failover_problem(cluster, dead_id):
        if time.monotonic() >= deadline:
            raise HarnessError(
                f"Redis did not fail over {victim.pod} within {SETTLE_TIMEOUT_S} s: "
                f"{failover_problem(cluster, dead_id)}"
            )
        during.append(cluster.capture())
    return MasterFailure(
        dead_pod=victim.pod,
        dead_id=dead_id,
        replica_pod=replica.pod,
        node_timeout_ms=victim.node_timeout_ms,
        during=during,
        after=cluster.capture(),
    )


def failover_pending(document: dict[str, Any], dead_id: str) -> bool:
    """Every reachable node in the snapshot flags ``dead_id`` fail with slots."""
    views = [
        observed["clusterNodes"]
        for observed in document["redis"].values()
        if observed["reachable"]
    ]
    for view in views:
        fields = next(
            (line.split() for line in view.splitlines() if line.startswith(dead_id)),
            None,
        )
        if fields is None or "fail" not in fields[2].split(",") or len(fields) < 9:
            return False
    return bool(views)


def silence_ms(document: dict[str, Any], node_id: str) -> int:
    """How long before ``observedAt`` any reachable node last heard ``node_id``."""
    observed = datetime.fromisoformat(document["observedAt"].replace("Z", "+00:00"))
    last_pong = 0
    for observation in document["redis"].values():
        if not observation["reachable"]:
            continue
        for line in observation["clusterNodes"].splitlines():
            fields = line.split()
            if fields and fields[0] == node_id:
                last_pong = max(last_pong, int(fields[5]))
    return int(observed.timestamp() * 1000) - last_pong


def move(harness: RedisHarness, cluster: FormedCluster, server: RedisServer) -> None:
    """Restart a pod's server on a new address with its nodes.conf; converge."""
    moved = harness.restart_elsewhere(server)
    cluster.replace(moved)

    def learned() -> str:
        for other in cluster.servers:
            line = line_of(other, moved.node_id())
            if line is None or line.ip != moved.ip:
                return f"{other.pod} does not show {moved.pod} at {moved.ip}"
        return ""

    wait_for(learned, what=f"{moved.pod}'s new address", timeout=SETTLE_TIMEOUT_S)
    wait_converged(cluster.servers)


def move_out_of_reach(
    harness: RedisHarness, cluster: FormedCluster, server: RedisServer
) -> str:
    """Restart a pod's server on a new address from where it reaches no peer.

    Its nodes.conf is kept, but every peer's address in it is rewritten to
    one where nothing listens, as for a pod that came back before its peers'
    addresses resolve: the peers keep showing its old address. Returns that
    old address.
    """
    old_ip = server.ip
    nowhere = harness.unused_address()
    moved = harness.restart_elsewhere(
        server, edit_nodes_conf=lambda text: _redirect_peers(text, nowhere)
    )
    cluster.replace(moved)
    return old_ip


_PEER_LINE = re.compile(r"^(?P<id>[0-9a-f]{40}) (?P<ip>[^:]+):(?P<rest>\S+) ")


def _redirect_peers(nodes_conf: str, ip: str) -> str:
    lines = []
    for line in nodes_conf.splitlines():
        match = _PEER_LINE.match(line)
        if match is not None and "myself" not in line.split()[2]:
            line = f"{match['id']} {ip}:{match['rest']} " + line[match.end() :]
        lines.append(line)
    return "\n".join(lines) + "\n"
