"""Scaling up and down: join, masters first, balance, hand over, forget, shrink."""

from __future__ import annotations

from kredis.domain.actions import (
    ActionKind,
    Failover,
    FailoverMode,
    ForgetNode,
    MeetNode,
    MigrateSlots,
    Replicate,
    ScaleStatefulSet,
)
from kredis.domain.slots import count_slots
from kredis.domain.status import ClusterState
from tests.support.planning import kinds, plan_world
from tests.support.world import World


def _grown(masters: int = 4, replicas: int = 1) -> World:
    world = World.formed()
    world.masters, world.replicas = masters, replicas
    for ordinal in range(6, masters * (1 + replicas)):
        world.add_pod(ordinal)
    return world


def test_new_ready_pods_are_met_not_reset() -> None:
    """Scale 3x1 to 4x1: the two clean new pods are met."""
    world = _grown()

    result = plan_world(world)

    met = {a.pod for a in result.actions if isinstance(a, MeetNode)}
    assert met == {"demo-6", "demo-7"}
    assert ActionKind.RESET_NODE not in kinds(result)
    assert result.cluster_state is ClusterState.SCALING


def test_joined_empty_pods_become_a_master_with_slots_and_its_replica() -> None:
    """After joining: the lowest new pod is a master taking its share, one job."""
    world = _grown()
    world.join(6, 7)

    result = plan_world(world)

    migrations = [a for a in result.actions if isinstance(a, MigrateSlots)]
    assert migrations
    assert {m.target for m in migrations} == {"demo-6"}
    assert len({m.job for m in migrations}) == 1
    moved = sum(count_slots(m.slots) for m in migrations)
    assert moved in (4096, 4097)
    (replicate,) = [a for a in result.actions if isinstance(a, Replicate)]
    assert (replicate.pod, replicate.master_pod) == ("demo-7", "demo-6")
    assert result.cluster_state is ClusterState.SCALING
    assert result.status.migration is not None
    assert result.status.migration.slots_total == moved


def test_masters_within_two_percent_are_not_rebalanced() -> None:
    """A spread of up to 2 % of 16384 slots moves nothing."""
    world = World.formed()
    moving = set(sorted(world.node(1).slots)[:150])
    world.node(1).slots -= moving
    world.node(0).slots |= moving

    result = plan_world(world)

    assert result.actions == ()
    assert result.cluster_state is ClusterState.RUNNING


def test_unbalanced_masters_are_rebalanced_by_one_job() -> None:
    """A spread beyond 2 % moves slots from the largest to the smallest."""
    world = World.formed()
    moving = set(sorted(world.node(1).slots)[:2000])
    world.node(1).slots -= moving
    world.node(0).slots |= moving

    result = plan_world(world)

    migrations = [a for a in result.actions if isinstance(a, MigrateSlots)]
    assert ("demo-0", "demo-1") in {(m.source, m.target) for m in migrations}
    assert result.cluster_state is ClusterState.REBALANCING


def test_replicas_attach_to_the_masters_with_fewest_replicas() -> None:
    """3x1 to 3x2: each master gets one of the three new replicas."""
    world = _grown(masters=3, replicas=2)
    world.join(6, 7, 8)

    result = plan_world(world)

    replicates = [a for a in result.actions if isinstance(a, Replicate)]
    assert sorted(r.master_pod for r in replicates) == ["demo-0", "demo-1", "demo-2"]
    assert ActionKind.MIGRATE_SLOTS not in kinds(result)


def test_leaving_master_drains_its_slots_to_staying_masters() -> None:
    """4x1 to 3x1 with the fourth master staying as a pod: it drains by migration."""
    world = World.formed(masters=4)
    world.masters = 3

    result = plan_world(world)

    migrations = [a for a in result.actions if isinstance(a, MigrateSlots)]
    assert {m.source for m in migrations} == {"demo-3"}
    assert {m.target for m in migrations} == {"demo-0", "demo-1", "demo-2"}
    assert ActionKind.FORGET_NODE not in kinds(result)
    assert ActionKind.SCALE_STATEFULSET not in kinds(result)
    assert result.cluster_state is ClusterState.SCALING_DOWN


def test_leaving_master_with_a_staying_replica_hands_over_by_failover() -> None:
    """The staying replica of a leaving master is promoted instead of moving keys."""
    world = World.formed()
    world.replicate(2, 5)
    world.node(5).master, world.node(5).master_id = True, None
    world.node(5).slots = set(range(10923, 16384))
    world.replicas = 0

    result = plan_world(world)

    (failover,) = [a for a in result.actions if isinstance(a, Failover)]
    assert (failover.pod, failover.mode) == ("demo-2", FailoverMode.DEFAULT)
    assert ActionKind.MIGRATE_SLOTS not in kinds(result)


def _drained_fourth_master() -> World:
    world = World.formed(masters=4)
    world.masters = 3
    world.node(3).slots = set()
    world.node(0).slots |= set(range(12288, 13654))
    world.node(1).slots |= set(range(13654, 15019))
    world.node(2).slots |= set(range(15019, 16384))
    world.node(3).keys = 0
    world.replicate(3, 2)
    return world


def test_drained_leaving_nodes_are_forgotten_then_the_set_shrinks() -> None:
    """Slot-less leaving nodes are forgotten; the StatefulSet shrinks only after."""
    world = _drained_fourth_master()

    forgetting = plan_world(world)

    forgotten = {a.pod for a in forgetting.actions if isinstance(a, ForgetNode)}
    assert forgotten == {"demo-6", "demo-7"}
    assert ActionKind.SCALE_STATEFULSET not in kinds(forgetting)

    world.members -= {world.node(6).node_id, world.node(7).node_id}
    world.node(6).knows = world.members | {world.node(7).node_id}
    world.node(7).knows = world.members | {world.node(6).node_id}

    shrinking = plan_world(world)

    (shrink,) = [a for a in shrinking.actions if isinstance(a, ScaleStatefulSet)]
    assert shrink.replicas == 6
    assert shrinking.cluster_state is ClusterState.SCALING_DOWN


def test_leaving_master_with_keys_but_no_slots_is_not_forgotten() -> None:
    """Keys without slots on a leaving master block its removal."""
    world = _drained_fourth_master()
    world.replicate(7, 1)
    world.replicate(6, 1)
    world.node(7).master, world.node(7).master_id = True, None
    world.node(7).keys = 5

    result = plan_world(world)

    forgotten = {a.pod for a in result.actions if isinstance(a, ForgetNode)}
    assert "demo-7" not in forgotten
    assert "demo-6" in forgotten
    assert ActionKind.SCALE_STATEFULSET not in kinds(result)


def test_masters_short_of_replicas_get_spare_replicas_repointed() -> None:
    """A master with two replicas gives one to a master with none."""
    world = World.formed()
    world.replicate(5, 0)

    result = plan_world(world)

    (replicate,) = [a for a in result.actions if isinstance(a, Replicate)]
    assert replicate.master_pod == "demo-2"
    assert replicate.pod in {"demo-3", "demo-5"}


def test_more_masters_from_fewer_replicas_releases_a_replica_to_rejoin() -> None:
    """3x2 to 4x1: a replica is forgotten so it can rejoin clean as a master."""
    world = World.formed(replicas=2)
    world.masters, world.replicas = 4, 1

    result = plan_world(world)

    (forget,) = [a for a in result.actions if isinstance(a, ForgetNode)]
    assert forget.pod == "demo-7"
    assert ActionKind.RESET_NODE not in kinds(result)
    assert result.cluster_state is ClusterState.SCALING


def test_no_replica_is_released_while_new_pods_are_still_starting() -> None:
    """3x1 to 4x1 with the new pods not ready: wait for them, release nothing."""
    world = _grown()
    world.pods["demo-6"].ready = False
    world.pods["demo-7"].ready = False

    result = plan_world(world)

    assert ActionKind.FORGET_NODE not in kinds(result)
