"""Creating a cluster: layout, resets of dirty pods only, never re-creation."""

from __future__ import annotations

from kredis.domain.actions import (
    ActionKind,
    AssignSlots,
    Replicate,
    ResetNode,
    ScaleStatefulSet,
)
from kredis.domain.slots import count_slots
from kredis.domain.status import ClusterState
from tests.support.planning import kinds, of_kind, plan_world
from tests.support.world import World, node_id_for


def _fresh(count: int = 6) -> World:
    world = World()
    for ordinal in range(count):
        world.add_pod(ordinal)
    return world


def test_clean_pods_get_balanced_slots_then_meets_then_replicas() -> None:
    """Six clean pods for 3x1: three masters with balanced ranges, met, replicated."""
    world = _fresh()

    result = plan_world(world)

    assert result.cluster_state is ClusterState.CREATING
    assigns = of_kind(result, ActionKind.ASSIGN_SLOTS)
    sizes = [count_slots(a.slots) for a in assigns if isinstance(a, AssignSlots)]
    assert sum(sizes) == 16384
    assert max(sizes) - min(sizes) <= 1
    assert [a.config_epoch for a in assigns if isinstance(a, AssignSlots)] == [1, 2, 3]
    order = kinds(result)
    assert order.index(ActionKind.MEET_NODE) > order.index(ActionKind.ASSIGN_SLOTS)
    assert order.index(ActionKind.REPLICATE) > order.index(ActionKind.MEET_NODE)
    assert len(of_kind(result, ActionKind.MEET_NODE)) == 5
    assert ActionKind.RESET_NODE not in order


def test_replicas_go_to_masters_on_other_kubernetes_nodes_and_zones() -> None:
    """Placement: no replica shares a Kubernetes node or zone with its master."""
    world = _fresh()
    snapshot = world.snapshot()
    where = {p["name"]: (p["nodeName"], p["zone"]) for p in snapshot["pods"]}

    result = plan_world(world)

    for action in of_kind(result, ActionKind.REPLICATE):
        assert isinstance(action, Replicate)
        assert where[action.pod][0] != where[action.master_pod][0]
        assert where[action.pod][1] != where[action.master_pod][1]


def test_creation_waits_until_every_pod_is_ready_and_reachable() -> None:
    """A pod that is not ready yet means wait, with no Redis change."""
    world = _fresh()
    world.pods["demo-4"].ready = False

    result = plan_world(world)

    assert set(kinds(result)) <= {ActionKind.WAIT, ActionKind.SCALE_STATEFULSET}
    assert "demo-4 (not ready)" in result.actions[-1].reason


def test_missing_stateful_set_is_created_first() -> None:
    """No StatefulSet yet: the plan creates it with masters*(1+replicas) pods."""
    world = World()
    world.sts_replicas = None

    result = plan_world(world)

    (scale,) = [a for a in result.actions if isinstance(a, ScaleStatefulSet)]
    assert kinds(result)[0] is ActionKind.SCALE_STATEFULSET
    assert scale.replicas == 6


def test_only_dirty_pods_are_reset_before_creation() -> None:
    """A pod with keys or peers is reset; clean pods are left alone."""
    world = _fresh()
    world.node(1).keys = 10
    world.node(2).knows = {node_id_for("elsewhere")}
    world.ghosts.append(
        type(world.node(0))(node_id=node_id_for("elsewhere"), ip="10.9.9.9")
    )

    result = plan_world(world)

    resets = {a.pod for a in of_kind(result, ActionKind.RESET_NODE)}
    assert resets == {"demo-1", "demo-2"}
    assert all(isinstance(a, ResetNode) and a.reason for a in result.actions)
    assert ActionKind.ASSIGN_SLOTS not in kinds(result)


def test_interrupted_creation_resumes_without_resetting_slot_holders() -> None:
    """Slots already given to planned masters are kept; the rest continues."""
    world = _fresh()
    first = plan_world(world)
    assign = of_kind(first, ActionKind.ASSIGN_SLOTS)[0]
    assert isinstance(assign, AssignSlots)
    world.node(0).slots = {s for r in assign.slots for s in r.slots()}
    world.node(0).epoch = 1

    result = plan_world(world)

    assert ActionKind.RESET_NODE not in kinds(result)
    assert {a.pod for a in of_kind(result, ActionKind.ASSIGN_SLOTS)} == {
        "demo-1",
        "demo-2",
    }


def test_cluster_with_keys_is_never_created_again() -> None:
    """Slots with keys mean formed: no assign for creation, no reset of members."""
    world = World.formed()
    world.status = {}
    for ordinal in range(6):
        world.node(ordinal).reachable = ordinal != 3

    result = plan_world(world)

    assert ActionKind.RESET_NODE not in kinds(result)
    assert ActionKind.ASSIGN_SLOTS not in kinds(result)
    assert result.status.cluster_formed


def test_cluster_state_fail_on_a_formed_cluster_heals_not_recreates() -> None:
    """cluster_state:fail (a master down) never leads to creation or resets."""
    world = World.formed(replicas=0)
    world.node(1).failed = True
    world.node(1).reachable = False

    result = plan_world(world)

    assert ActionKind.RESET_NODE not in kinds(result)
    assert ActionKind.ASSIGN_SLOTS not in kinds(result)
    assert result.cluster_state is ClusterState.DEGRADED


def test_converged_new_cluster_is_running_and_recorded_as_formed() -> None:
    """Once creation completed the status says formed and Running."""
    world = World.formed()
    world.status = {}
    for ordinal in range(6):
        world.node(ordinal).keys = 0

    result = plan_world(world)

    assert result.actions == ()
    assert result.cluster_state is ClusterState.RUNNING
    assert result.status.cluster_formed
