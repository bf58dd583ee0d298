"""Healing: ghosts, moved pods, failed masters, lost disks, open slots."""

from __future__ import annotations

from kredis.domain.actions import (
    ActionKind,
    AssignSlots,
    Failover,
    FailoverMode,
    FinishMigration,
    ForgetNode,
    MeetNode,
)
from kredis.domain.heal import failover_grace_ms
from kredis.domain.slots import SlotRange
from kredis.domain.status import ClusterState
from tests.support.planning import kinds, of_kind, plan_world
from tests.support.world import T0_MS, Node, World, node_id_for


def test_failed_slotless_node_that_no_pod_holds_is_forgotten() -> None:
    """A ghost id (fail, no slots, no pod) is forgotten on every node."""
    world = World.formed()
    ghost = Node(node_id=node_id_for("ghost"), ip="10.9.9.9", master=False)
    ghost.master_id = world.node(0).node_id
    ghost.failed = True
    world.ghosts.append(ghost)

    result = plan_world(world)

    (forget,) = [a for a in result.actions if isinstance(a, ForgetNode)]
    assert forget.node_id == ghost.node_id
    assert result.cluster_state is ClusterState.HEALING


def test_failed_node_that_still_owns_slots_is_never_forgotten() -> None:
    """A failed master with slots and no pod is reported, not forgotten."""
    world = World.formed(replicas=0)
    ghost = Node(node_id=node_id_for("ghost"), ip="10.9.9.9", failed=True)
    ghost.slots = set(range(10923, 16384))
    world.node(2).slots = set()
    world.ghosts.append(ghost)

    result = plan_world(world)

    assert ActionKind.FORGET_NODE not in kinds(result)
    assert result.cluster_state is ClusterState.DEGRADED


def test_pod_with_a_new_address_and_known_id_is_met_not_reset() -> None:
    """A restarted pod on a new IP keeps its id: it is met again."""
    world = World.formed()
    world.pods["demo-4"].ip = "10.7.7.7"

    result = plan_world(world)

    (meet,) = [a for a in result.actions if isinstance(a, MeetNode)]
    assert meet.pod == "demo-4"
    assert "10.7.7.7" in meet.reason
    assert ActionKind.RESET_NODE not in kinds(result)


def test_failed_master_is_left_to_redis_failover_within_the_node_timeout() -> None:
    """Redis gets one whole election round to promote the replica itself."""
    world = World.formed()
    world.node(1).failed = True
    world.node(1).reachable = False
    world.node(1).pong_ms = T0_MS - 5_000

    result = plan_world(world)

    assert ActionKind.FAILOVER not in kinds(result)
    assert "Redis' own failover" in result.actions[-1].reason
    assert result.cluster_state is ClusterState.HEALING


def test_failed_master_past_the_timeout_gets_a_forced_failover() -> None:
    """After Redis' election round the best replica is promoted with FORCE."""
    world = World.formed()
    world.node(1).failed = True
    world.node(1).reachable = False
    world.node(1).pong_ms = T0_MS - 60_000

    result = plan_world(world)

    (failover,) = [a for a in result.actions if isinstance(a, Failover)]
    assert failover.mode is FailoverMode.FORCE
    assert failover.pod == "demo-4"


def test_master_back_with_empty_disk_rejoins_then_takes_over_lost_slots() -> None:
    """A master without replica that lost its disk takes its old slots, empty."""
    world = World.formed(replicas=0)
    old = world.node(2)
    old.failed = True
    lost_slots = set(old.slots)
    world.ghosts.append(old)
    world.pods["demo-2"].node = Node(node_id=node_id_for("demo-2/1"), ip=old.ip)

    meeting = plan_world(world)

    (meet,) = [a for a in meeting.actions if isinstance(a, MeetNode)]
    assert meet.pod == "demo-2"
    assert ActionKind.RESET_NODE not in kinds(meeting)
    previous = {n.pod_name: n.previous_node_id for n in meeting.status.cluster_nodes}
    assert previous["demo-2"] == old.node_id

    world.status = meeting.status.to_json()
    world.join(2)
    taking = plan_world(world)

    (assign,) = [a for a in taking.actions if isinstance(a, AssignSlots)]
    assert assign.pod == "demo-2"
    assert assign.from_node_id == old.node_id
    assert {s for r in assign.slots for s in r.slots()} == lost_slots
    assert "already gone" in assign.reason


def test_replica_back_with_empty_disk_is_met_and_its_old_id_forgotten() -> None:
    """A replica that lost its disk: old id forgotten, new node joins clean."""
    world = World.formed()
    old = world.node(4)
    old.failed = True
    world.ghosts.append(old)
    world.pods["demo-4"].node = Node(node_id=node_id_for("demo-4/1"), ip=old.ip)

    result = plan_world(world)

    forgotten = {a.node_id for a in result.actions if isinstance(a, ForgetNode)}
    met = {a.pod for a in result.actions if isinstance(a, MeetNode)}
    assert forgotten == {old.node_id}
    assert met == {"demo-4"}
    assert ActionKind.RESET_NODE not in kinds(result)


def test_open_slot_without_a_job_is_finished_toward_the_importing_node() -> None:
    """An interrupted migration is completed toward its importing node."""
    world = World.formed()
    source, target = world.node(0), world.node(1)
    source.migrating[7] = target.node_id
    target.importing[7] = source.node_id

    result = plan_world(world)

    (finish,) = [a for a in result.actions if isinstance(a, FinishMigration)]
    assert (finish.source, finish.target) == ("demo-0", "demo-1")
    assert finish.slots == (SlotRange(7, 7),)
    assert ActionKind.ASSIGN_SLOTS not in kinds(result)
    assert ActionKind.MIGRATE_SLOTS not in kinds(result)


def test_open_slot_toward_a_failed_node_is_reported_not_reassigned() -> None:
    """If the importing node is down the slot is left alone and reported."""
    world = World.formed()
    source, target = world.node(0), world.node(1)
    source.migrating[7] = target.node_id
    target.reachable = False
    target.failed = True
    target.pong_ms = T0_MS - 1_000

    result = plan_world(world)

    assert ActionKind.FINISH_MIGRATION not in kinds(result)
    assert ActionKind.ASSIGN_SLOTS not in kinds(result)
    assert result.cluster_state is ClusterState.DEGRADED


def test_open_slot_with_a_running_job_means_wait() -> None:
    """While the migration Job runs, open slots are its business."""
    world = World.formed()
    world.node(0).migrating[7] = world.node(1).node_id
    world.jobs.append({"name": "demo-migrate-0123abcd", "active": 1})

    result = plan_world(world)

    assert kinds(result) == [ActionKind.WAIT]
    assert of_kind(result, ActionKind.WAIT)[0].reason.startswith("migration Job")


def test_failover_grace_covers_a_whole_redis_election_round() -> None:
    """Short node timeouts still leave Redis its fixed election delays."""

    assert failover_grace_ms(2_000, 1) == 2_000 + 4_000 + 2_000
    assert failover_grace_ms(500, 2) == 500 + 2_000 + 3_000
    assert failover_grace_ms(15_000, 1) == 15_000 + 30_000 + 2_000
