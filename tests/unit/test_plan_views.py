"""Views and quorum: identity by node id, split brain, no majority."""

from __future__ import annotations

from kredis.domain.actions import ActionKind, is_mutating
from kredis.domain.status import ClusterState, NodeHealth
from tests.support.planning import kinds, plan_world
from tests.support.world import World


def test_pods_are_matched_to_nodes_by_id_not_by_address() -> None:
    """Two pods that swapped addresses keep their own node ids in status."""
    world = World.formed()
    first, second = world.pods["demo-0"], world.pods["demo-1"]
    first.ip, second.ip = second.ip, first.ip

    result = plan_world(world)

    recorded = {n.pod_name: n.node_id for n in result.status.cluster_nodes}
    assert recorded["demo-0"] == world.node(0).node_id
    assert recorded["demo-1"] == world.node(1).node_id
    assert ActionKind.RESET_NODE not in kinds(result)


def test_views_that_disagree_on_slot_owners_mean_degraded_and_no_change() -> None:
    """Split brain: two views give slot 0 different owners; nothing topological."""
    world = World.formed()
    snapshot = world.snapshot()
    rogue = world.node(3)
    text = snapshot["redis"]["demo-3"]["clusterNodes"]
    lines = []
    for line in text.splitlines():
        parts = line.split(" ")
        if parts[0] == world.node(0).node_id:
            parts = parts[:8]
        if parts[0] == rogue.node_id:
            parts[2] = "myself,master"
            parts[3] = "-"
            parts = [*parts[:8], "0-5461"]
        lines.append(" ".join(parts))
    snapshot["redis"]["demo-3"]["clusterNodes"] = "\n".join(lines) + "\n"

    result = plan_world(snapshot)

    assert result.cluster_state is ClusterState.DEGRADED
    assert not any(is_mutating(a) for a in result.actions)
    assert "disagree" in result.actions[-1].reason


def test_without_a_majority_of_masters_nothing_changes() -> None:
    """Two of three masters unreachable: no quorum, no topology change."""
    world = World.formed(replicas=0)
    world.node(1).reachable = False
    world.node(2).reachable = False

    result = plan_world(world)

    assert result.cluster_state is ClusterState.DEGRADED
    assert not any(is_mutating(a) for a in result.actions)
    assert "majority" in result.actions[-1].reason


def test_unreachable_pod_keeps_its_recorded_node_id() -> None:
    """An unreachable pod is reported as such with the id status recorded."""
    world = World.formed()
    world.node(4).reachable = False

    result = plan_world(world)

    node = next(n for n in result.status.cluster_nodes if n.pod_name == "demo-4")
    assert node.status is NodeHealth.UNREACHABLE
    assert node.node_id == world.node(4).node_id


def test_joined_pods_list_members_and_drop_deleted_pods() -> None:
    """joinedPods names current members only, never stale names."""
    world = World.formed()
    world.status["joinedPods"] = ["demo-0", "demo-9"]

    result = plan_world(world)

    assert result.status.joined_pods == tuple(f"demo-{n}" for n in range(6))


def test_command_pod_is_a_joined_master_with_slots() -> None:
    """Commands go to a member master with slots, never a pod that has not joined."""
    world = World.formed()
    world.masters = 4
    world.add_pod(6)
    world.add_pod(7)

    result = plan_world(world)

    assert result.command_pod == "demo-0"
    world.node(0).reachable = False
    assert plan_world(world).command_pod == "demo-1"


def test_unreachable_member_not_failed_blocks_shape_changes() -> None:
    """A master kredis cannot reach is still a member; nothing moves meanwhile."""
    world = World.formed()
    world.masters = 4
    world.add_pod(6)
    world.add_pod(7)
    world.join(6, 7)
    world.node(1).reachable = False

    result = plan_world(world)

    assert not any(is_mutating(a) for a in result.actions)
    assert "demo-1" in result.status.joined_pods
    assert "cannot reach member pods demo-1" in result.actions[-1].reason
