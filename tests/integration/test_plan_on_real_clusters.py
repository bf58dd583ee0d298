"""Integration: the planner's decisions on snapshots of live Redis clusters.

Each scenario drives real redis-server processes (one loopback address per
pod) into one situation, captures a ``kredis.snapshot/v1`` document from what
they answer and checks the plan. Server sets are module fixtures, shared only
by scenarios that read them or put them back as they found them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kredis.domain.actions import (
    Action,
    ActionKind,
    AssignSlots,
    FinishMigration,
    MeetNode,
    Replicate,
    kind_of,
)
from kredis.domain.planner import Plan
from kredis.domain.slots import SLOT_COUNT
from kredis.domain.status import ClusterState
from tests.support.planning import kinds, of_kind
from tests.support.real_cluster import (
    RedisHarness,
    RedisServer,
    key_slot,
    redis_available,
    wait_converged,
)
from tests.support.real_scenarios import (
    SPEC_4X1,
    Creation,
    FormedCluster,
    MasterFailure,
    create_by_plan,
    dirty_newcomer,
    failover_pending,
    move,
    move_out_of_reach,
    plan_real,
    slot_left_open,
    start_pods,
    watch_master_failure,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not redis_available(), reason="needs redis-server and redis-cli installed"
    ),
]

MEMBERS = [f"demo-{n}" for n in range(6)]


def targets(result: Plan) -> list[tuple[str, str]]:
    """(action, pod) pairs of a plan, for actions that name a pod."""
    return [(kind_of(a).value, getattr(a, "pod", "")) for a in result.actions]


def pods_of(result: Plan, kind: ActionKind) -> list[str]:
    """The pods that a plan's actions of one kind name, in plan order."""
    return [getattr(action, "pod", "") for action in of_kind(result, kind)]


def address_in_view(document: dict[str, Any], viewer: str, node_id: str) -> str:
    """The ip at which one pod's CLUSTER NODES shows a node id."""
    view: str = document["redis"][viewer]["clusterNodes"]
    for line in view.splitlines():
        if line.startswith(node_id):
            return line.split()[1].rsplit(":", 1)[0]
    return ""


def mutating(actions: tuple[Action, ...]) -> list[str]:
    """The kinds of actions that would change something."""
    return [kind_of(a).value for a in actions if kind_of(a) is not ActionKind.WAIT]


@dataclass
class Moved:
    """A snapshot of a cluster in which one pod came back on a new address."""

    pod: str
    node_id: str
    old_ip: str
    new_ip: str
    document: dict[str, Any]
    cluster: FormedCluster


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisHarness]:
    """Every redis-server of this module; all are killed when it ends."""
    with RedisHarness(tmp_path_factory.mktemp("redis")) as harness:
        yield harness


@pytest.fixture(scope="module")
def creation(harness: RedisHarness) -> Creation:
    """Six fresh servers' snapshot, then the 3x1 cluster formed by its plan."""
    return create_by_plan(harness, "create")


@pytest.fixture(scope="module")
def cluster(creation: Creation) -> FormedCluster:
    """The converged 3x1 cluster with keys (shared: scenarios put it back)."""
    return creation.cluster


@pytest.fixture(scope="module")
def newcomers(harness: RedisHarness) -> list[RedisServer]:
    """Fresh servers for pods demo-6 and demo-7."""
    return start_pods(harness, "newcomers", [6, 7])


@pytest.fixture(scope="module")
def dirty(harness: RedisHarness) -> RedisServer:
    """A server for pod demo-6 holding keys, knowing nobody, serving no slot."""
    return dirty_newcomer(harness, "dirty", 6)


@pytest.fixture(
    scope="module",
    params=[2000, 1000],
    ids=lambda ms: f"node-timeout-{ms}",
)
def master_failure(
    harness: RedisHarness, request: pytest.FixtureRequest
) -> MasterFailure:
    """Snapshots of a 3x1 cluster from kill -9 of master demo-1 to failover."""
    timeout: int = request.param
    cluster = create_by_plan(
        harness, f"failover-{timeout}", node_timeout_ms=timeout
    ).cluster
    return watch_master_failure(cluster, cluster.pod(1))


@pytest.fixture(scope="module")
def moved(harness: RedisHarness) -> Moved:
    """Master demo-1 restarted elsewhere with its nodes.conf, once Redis knows."""
    cluster = create_by_plan(harness, "move").cluster
    before = cluster.pod(1)
    node_id = before.node_id()
    move(harness, cluster, before)
    after = cluster.pod(1)
    return Moved(after.pod, node_id, before.ip, after.ip, cluster.capture(), cluster)


@pytest.fixture(scope="module")
def stale(harness: RedisHarness) -> Moved:
    """Replica demo-5 restarted elsewhere while its peers show the old address."""
    cluster = create_by_plan(harness, "stale").cluster
    before = cluster.pod(5)
    node_id = before.node_id()
    move_out_of_reach(harness, cluster, before)
    after = cluster.pod(5)
    return Moved(after.pod, node_id, before.ip, after.ip, cluster.capture(), cluster)


def test_fresh_servers_get_a_creation_plan_of_slots_meets_and_replicas(
    creation: Creation,
) -> None:
    """Six fresh servers, spec 3x1: slots for 0..2, meets, replicas for 3..5."""
    fresh = creation.fresh

    result = plan_real(fresh)

    assert result.cluster_state is ClusterState.CREATING
    assert kinds(result) == (
        [ActionKind.ASSIGN_SLOTS] * 3
        + [ActionKind.MEET_NODE] * 5
        + [ActionKind.REPLICATE] * 3
    )
    assigns = [a for a in result.actions if isinstance(a, AssignSlots)]
    assert [a.pod for a in assigns] == ["demo-0", "demo-1", "demo-2"]
    bounds = [(r.start, r.end) for a in assigns for r in a.slots]
    starts = [start for start, _ in bounds]
    ends = [end for _, end in bounds]
    assert starts == [0] + [end + 1 for end in ends[:-1]]
    assert ends[-1] == SLOT_COUNT - 1
    sizes = [end - start + 1 for start, end in bounds]
    assert max(sizes) - min(sizes) <= 1
    assert pods_of(result, ActionKind.MEET_NODE) == [
        f"demo-{n}" for n in (1, 2, 3, 4, 5)
    ]
    replicas = [a for a in result.actions if isinstance(a, Replicate)]
    assert [a.pod for a in replicas] == ["demo-3", "demo-4", "demo-5"]
    assert sorted(a.master_pod for a in replicas) == ["demo-0", "demo-1", "demo-2"]
    assert all(a.master_id == creation.fresh_ids[a.master_pod] for a in replicas)


def test_cluster_formed_by_the_creation_plan_runs_with_nothing_to_do(
    cluster: FormedCluster,
) -> None:
    """A converged 3x1 cluster holding keys is Running with no mutating action."""
    document = cluster.capture()

    result = plan_real(document)

    assert sum(o["dbsize"] for o in document["redis"].values()) > 0
    assert result.cluster_state is ClusterState.RUNNING
    assert mutating(result.actions) == []


def test_fresh_pods_for_a_fourth_master_are_met_and_never_reset(
    cluster: FormedCluster, newcomers: list[RedisServer]
) -> None:
    """Converged 3x1 plus fresh demo-6, demo-7 and spec 4x1: meet both."""
    document = cluster.capture(*newcomers, spec=SPEC_4X1, generation=2)

    result = plan_real(document)

    assert targets(result) == [("meet-node", "demo-6"), ("meet-node", "demo-7")]
    assert result.cluster_state is ClusterState.SCALING


def test_dirty_newcomer_is_reset_and_no_member_ever_is(
    cluster: FormedCluster, newcomers: list[RedisServer], dirty: RedisServer
) -> None:
    """A newcomer with keys that knows nobody is reset before it may join."""
    document = cluster.capture(dirty, newcomers[1], spec=SPEC_4X1, generation=2)

    result = plan_real(document)

    assert document["redis"]["demo-6"]["dbsize"] > 0
    assert pods_of(result, ActionKind.RESET_NODE) == ["demo-6"]
    assert not set(pods_of(result, ActionKind.RESET_NODE)) & set(MEMBERS)
    assert pods_of(result, ActionKind.MEET_NODE) == ["demo-7"]


def test_slot_left_open_without_a_job_is_finished_toward_the_importing_node(
    cluster: FormedCluster,
) -> None:
    """IMPORTING on the target and MIGRATING on the source: finish to target."""
    slot = key_slot("key:0")
    with slot_left_open(cluster, slot) as (source, target):
        document = cluster.capture()
        target_id = target.node_id()

    result = plan_real(document)

    finishes = [a for a in result.actions if isinstance(a, FinishMigration)]
    assert [(r.start, r.end) for f in finishes for r in f.slots] == [(slot, slot)]
    assert [(f.source, f.target, f.target_id) for f in finishes] == [
        (source.pod, target.pod, target_id)
    ]
    assert mutating(result.actions) == ["finish-migration"]
    assert result.cluster_state is ClusterState.HEALING


def test_plans_during_a_master_failure_leave_failover_to_redis(
    master_failure: MasterFailure, tmp_path: Path
) -> None:
    """From kill -9 until Redis fails over by itself, every plan only waits."""
    during = master_failure.during

    plans = [plan_real(d, master_failure.node_timeout_ms) for d in during]

    assert any(failover_pending(d, master_failure.dead_id) for d in during)
    offending = [
        (index, mutating(result.actions), [a.reason for a in result.actions])
        for index, result in enumerate(plans)
        if mutating(result.actions)
    ]
    for index, _, _ in offending:
        path = tmp_path / f"during-{index}.json"
        path.write_text(json.dumps(during[index], indent=2), encoding="utf-8")
    assert offending == [], f"offending snapshots are in {tmp_path}"


def test_after_redis_fails_over_the_plan_waits_and_forgets_nothing(
    master_failure: MasterFailure,
) -> None:
    """Once a replica took over, the dead pod is waited for, not forgotten."""
    after = master_failure.after

    result = plan_real(after, master_failure.node_timeout_ms)

    assert mutating(result.actions) == []
    assert result.cluster_state is ClusterState.HEALING
    dead = result.status.node_of(master_failure.dead_pod)
    assert dead is not None
    assert dead.node_id == master_failure.dead_id
    assert dead.status.value == "unreachable"
    promoted = result.status.node_of(master_failure.replica_pod)
    assert promoted is not None
    assert promoted.role.value == "master"
    assert promoted.slot_count > 0


def test_pod_back_on_a_new_address_with_its_node_id_is_neither_reset_nor_met(
    moved: Moved,
) -> None:
    """Once every node learned the new address, nothing is left to do."""
    document = moved.document

    result = plan_real(document)

    assert document["redis"][moved.pod]["myId"] == moved.node_id
    assert moved.new_ip != moved.old_ip
    assert result.cluster_state is ClusterState.RUNNING
    assert mutating(result.actions) == []


def test_pod_back_where_peers_show_its_old_address_is_met_and_not_reset(
    stale: Moved,
) -> None:
    """The cluster still has the old address: meet the pod, never reset it."""
    document = stale.document

    result = plan_real(document)

    assert document["redis"][stale.pod]["myId"] == stale.node_id
    assert address_in_view(document, "demo-0", stale.node_id) == stale.old_ip
    assert targets(result) == [("meet-node", stale.pod)]
    meet = result.actions[0]
    assert isinstance(meet, MeetNode)
    assert stale.old_ip in meet.reason
    assert stale.new_ip in meet.reason


def test_meeting_the_moved_pod_from_the_command_pod_heals_the_cluster(
    stale: Moved,
) -> None:
    """Carrying out the planned meet-node lets every node find the pod again."""
    planned = plan_real(stale.document)
    command = stale.cluster.pod(int(planned.command_pod.rsplit("-", 1)[1]))
    moved = stale.cluster.pod(int(stale.pod.rsplit("-", 1)[1]))
    command.value("CLUSTER", "MEET", moved.ip, moved.port)
    wait_converged(stale.cluster.servers)

    result = plan_real(stale.cluster.capture())

    assert result.cluster_state is ClusterState.RUNNING
    assert mutating(result.actions) == []
