"""Safety properties of single plans over generated snapshots.

Role: generate worlds of many shapes (spec changes, StatefulSet sizes, dead,
suspected and unreachable nodes, lost disks, dirty and stray pods, open
slots, migration Jobs in any state, recorded status) and check that no plan
resets a member or a slot holder, forgets a node with slots, shrinks the
StatefulSet below a slot holder or starts a second migration, that every
action says why, and that planning is a function of the snapshot. The worlds
are arbitrary, not reachable: these are properties of one pass. It never
edits the planner and never weakens a property to make it pass.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kredis.domain.actions import (
    Action,
    ForgetNode,
    MigrateSlots,
    ResetNode,
    ScaleStatefulSet,
    action_to_json,
)
from kredis.domain.context import migration_job_prefix
from kredis.domain.planner import Plan
from tests.support.planning import plan_world
from tests.support.world import T0_MS, Node, World, node_id_for

POD_STATES = ["killed", "failed", "suspected", "lost-disk"]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    """A formed cluster, then a spec edit and a random set of troubles."""
    masters = draw(st.integers(1, 5))
    replicas = draw(st.integers(0, 2))
    world = World.formed(masters, replicas, keys=draw(st.sampled_from([0, 50])))
    count = masters * (1 + replicas)
    world.masters = draw(st.integers(1, 5))
    world.replicas = draw(st.integers(0, 2))

    troubles = st.tuples(st.integers(0, count - 1), st.sampled_from(POD_STATES))
    for ordinal, state in dict(draw(st.lists(troubles, max_size=3))).items():
        _trouble(draw, world, ordinal, state)

    for ordinal in range(count, count + draw(st.integers(0, 3))):
        pod = world.add_pod(ordinal, ready=draw(st.booleans()))
        assert pod.node is not None
        if draw(st.booleans()):
            pod.node.keys = draw(st.integers(1, 20))
        if draw(st.booleans()):
            pod.node.knows = set(world.members)
    # Kubernetes never runs a pod at or above the StatefulSet's size.
    world.sts_replicas = len(world.pods) + draw(st.integers(0, 2))

    if draw(st.booleans()):
        _open_slot(draw, world)
    if draw(st.booleans()):
        state = draw(st.sampled_from(["running", "Complete", "Failed"]))
        world.jobs.append(_job(world, draw(st.integers(0, 1 << 31)), state))
    world.status["migrationFailures"] = draw(st.integers(0, 3))
    if draw(st.booleans()):
        world.generation += 1
    return world


def _trouble(draw: st.DrawFn, world: World, ordinal: int, state: str) -> None:
    pod = world.pods[f"{world.name}-{ordinal}"]
    node = pod.node
    assert node is not None
    if state in ("killed", "failed", "suspected"):
        node.reachable = False
        pod.ready = False
        node.failed = state == "failed"
        node.suspected = state == "suspected"
        node.pong_ms = T0_MS - draw(st.sampled_from([1_000, 20_000, 90_000]))
    elif state == "lost-disk":
        # The old id stays known to the cluster as a failed ghost.
        world.members.discard(node.node_id)
        node.failed = True
        node.reachable = False
        node.pong_ms = T0_MS - 90_000
        world.ghosts.append(node)
        pod.node = Node(node_id=node_id_for(f"{pod.name}/new"), ip=pod.ip)
        if draw(st.booleans()):
            world.members.add(pod.node.node_id)


def _open_slot(draw: st.DrawFn, world: World) -> None:
    holders = [n for n in world.all_nodes() if n.master and n.slots]
    if len(holders) < 2:
        return
    source = draw(st.sampled_from(holders))
    target = draw(st.sampled_from([n for n in holders if n is not source]))
    slot = min(source.slots)
    side = draw(st.sampled_from(["both", "migrating", "importing"]))
    if side != "importing":
        source.migrating[slot] = target.node_id
    if side != "migrating":
        target.importing[slot] = source.node_id


def _job(world: World, seed: int, state: str) -> dict[str, Any]:
    name = migration_job_prefix(world.name) + f"{seed:08x}"[-8:]
    job: dict[str, Any] = {"name": name, "active": 0, "conditions": []}
    if state == "running":
        job["active"] = 1
    else:
        job["conditions"] = [{"type": state, "status": "True"}]
    return job


def _nodes_by_id(world: World) -> dict[str, Node]:
    return {node.node_id: node for node in world.all_nodes()}


def _open_anywhere(world: World) -> bool:
    # Only markers on nodes that answer can be observed.
    return any(n.migrating or n.importing for n in world.all_nodes() if n.reachable)


def _job_running(world: World) -> bool:
    return any(
        not any(c["status"] == "True" for c in job["conditions"]) for job in world.jobs
    )


def _explain(result: Plan) -> str:
    return json.dumps([action_to_json(a) for a in result.actions], indent=1)[:3000]


@settings(max_examples=min(settings.default.max_examples, 150))
@given(worlds())
def test_no_plan_resets_a_member_or_a_slot_holder(world: World) -> None:
    """A reset never targets a member, a known node or a node with slots."""
    result = plan_world(world)
    by_id = _nodes_by_id(world)
    for action in result.actions:
        if not isinstance(action, ResetNode):
            continue
        node = world.pods[action.pod].node
        assert node is not None
        known = node.node_id in world.members or any(
            other.knows and node.node_id in other.knows
            for other in by_id.values()
            if other.node_id in world.members
        )
        assert not known, f"reset of a member: {_explain(result)}"
        assert not node.slots, f"reset of a slot holder: {_explain(result)}"


@settings(max_examples=min(settings.default.max_examples, 150))
@given(worlds())
def test_no_plan_forgets_a_node_with_slots(world: World) -> None:
    """ForgetNode only names ids that serve no slot."""
    result = plan_world(world)
    by_id = _nodes_by_id(world)
    for action in result.actions:
        if isinstance(action, ForgetNode) and action.node_id in by_id:
            node = by_id[action.node_id]
            assert not (node.master and node.slots), (
                f"forgets {action.node_id} with slots: {_explain(result)}"
            )


@settings(max_examples=min(settings.default.max_examples, 150))
@given(worlds())
def test_no_plan_shrinks_the_statefulset_below_a_slot_holder(world: World) -> None:
    """A shrink never removes a pod whose node (old or new) serves slots."""
    result = plan_world(world)
    recorded = {
        entry["podName"]: entry["nodeId"]
        for entry in world.status.get("clusterNodes", [])
    }
    by_id = _nodes_by_id(world)
    for action in result.actions:
        if not isinstance(action, ScaleStatefulSet):
            continue
        if world.sts_replicas is None or action.replicas >= world.sts_replicas:
            continue
        for pod in world.pods.values():
            ordinal = int(pod.name.rsplit("-", 1)[1])
            if ordinal < action.replicas:
                continue
            nodes = [pod.node, by_id.get(recorded.get(pod.name, ""))]
            for node in nodes:
                assert node is None or not (node.master and node.slots), (
                    f"shrinks to {action.replicas} below {pod.name}: {_explain(result)}"
                )


@settings(max_examples=min(settings.default.max_examples, 150))
@given(worlds())
def test_at_most_one_migration_and_never_over_another(world: World) -> None:
    """All MigrateSlots share one Job, and none while a Job runs or slots are open."""
    result = plan_world(world)
    moves = [a for a in result.actions if isinstance(a, MigrateSlots)]
    assert len({move.job for move in moves}) <= 1, _explain(result)
    if moves:
        assert not _job_running(world), f"second Job: {_explain(result)}"
        assert not _open_anywhere(world), f"over open slots: {_explain(result)}"


@settings(max_examples=min(settings.default.max_examples, 150))
@given(worlds())
def test_every_action_says_why(world: World) -> None:
    """Every action of every plan carries a non-empty reason."""
    result = plan_world(world)
    empty: list[Action] = [a for a in result.actions if not a.reason.strip()]
    assert not empty, _explain(result)


@settings(max_examples=min(settings.default.max_examples, 150))
@given(worlds())
def test_planning_the_same_snapshot_twice_gives_the_same_plan(world: World) -> None:
    """The plan is a function of the snapshot, also after a JSON round trip."""
    document = world.snapshot()
    first = plan_world(document).to_json()
    second = plan_world(json.loads(json.dumps(document))).to_json()
    assert first == second
