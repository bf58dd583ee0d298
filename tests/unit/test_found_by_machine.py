"""Planner bugs found by the stateful cluster machine, as minimal scenarios.

Role: each test builds by hand the smallest world the machine shrank a
failure to (tests/property/test_cluster_machine.py) and asserts the correct
behaviour, so the bug stays fixed once the planner is changed. It must not
assert today's wrong plan, and it never edits the planner.
"""

from __future__ import annotations

import json
from typing import Any

from kredis.domain.actions import (
    AssignSlots,
    FinishMigration,
    MeetNode,
    MigrateSlots,
    ResetNode,
    action_to_json,
)
from kredis.domain.planner import Plan
from kredis.domain.slots import ranges_from_slots, slots_of
from kredis.domain.status import ClusterState
from tests.support.planning import plan_world
from tests.support.world import T0_MS, Node, World, node_id_for


def _explain(result: Plan) -> str:
    actions = [action_to_json(a) for a in result.actions]
    return f"{result.cluster_state.value}: {json.dumps(actions)[:1500]}"


def _lose_disk(world: World, ordinal: int) -> Node:
    """The pod comes back on an empty disk; its old id stays known, failed."""
    pod = world.pods[f"{world.name}-{ordinal}"]
    old = world.node(ordinal)
    old.failed = True
    old.reachable = False
    old.pong_ms = T0_MS - 90_000
    world.members.discard(old.node_id)
    world.ghosts.append(old)
    pod.ip = "10.1.9.9"
    pod.node = Node(node_id=node_id_for(f"{pod.name}/new"), ip=pod.ip)
    return old


def _without_slots_of(document: dict[str, Any], pod: str, node_id: str) -> None:
    """Render one node as the pod's Redis learned it by gossip: no slots.

    Gossip sections carry ids, addresses and flags but neither slots nor
    config epochs, so a node met after a master died lists that master
    with no slots and epoch 0.
    """
    lines = []
    for line in document["redis"][pod]["clusterNodes"].splitlines():
        fields = line.split()
        if fields and fields[0] == node_id:
            fields = fields[:8]
            fields[6] = "0"
        lines.append(" ".join(fields))
    document["redis"][pod]["clusterNodes"] = "\n".join(lines) + "\n"


def _credit_in_view(
    document: dict[str, Any], pod: str, node_id: str, slots: set[int]
) -> None:
    """Make one pod's Redis believe a node serves exactly these slots."""
    lines = []
    for line in document["redis"][pod]["clusterNodes"].splitlines():
        fields = line.split()
        if fields and fields[0] == node_id:
            fields = fields[:8] + [str(r) for r in ranges_from_slots(slots)]
        lines.append(" ".join(fields))
    document["redis"][pod]["clusterNodes"] = "\n".join(lines) + "\n"


def _promote(world: World, replica: int, master: int) -> None:
    """Redis failed the master over: the replica serves its slots now."""
    old, new = world.node(master), world.node(replica)
    new.master = True
    new.master_id = None
    new.slots = set(old.slots)
    new.epoch = 10
    old.slots = set()


def test_lost_master_slots_are_taken_over_though_the_new_node_never_saw_them() -> None:
    """A new node met after its master died blocks no takeover of its slots."""
    # Machine: 3x0, demo-0 loses its disk; kredis meets the new node, which
    # learns the old id by gossip without its slots; the views then differ
    # for ever and every pass waits "views still converging".
    world = World.formed(replicas=0)
    old = _lose_disk(world, 0)
    world.join(0)
    document = world.snapshot()
    _without_slots_of(document, "demo-0", old.node_id)

    result = plan_world(document)

    takeovers = [
        a
        for a in result.actions
        if isinstance(a, AssignSlots) and a.from_node_id == old.node_id
    ]
    assert takeovers, _explain(result)
    assert takeovers[0].pod == "demo-0"


def test_scale_down_undone_after_the_drained_master_became_a_replica() -> None:
    """3x0 to 2x0 and back: the drained master, now a replica, is no dead end."""
    # Machine: Redis 7 turns a master that migrated away its last slot into
    # a replica of the node that took it (cluster-allow-replica-migration).
    # When the spec returns to 3x0 before the pod is removed, the planner
    # reports "only 2 staying pods can be masters" and stays Failed, though
    # forgetting that replica, then resetting and meeting it, is safe.
    world = World.formed(replicas=0)
    first, second, drained = world.node(0), world.node(1), world.node(2)
    first.slots = set(range(0, 8192))
    second.slots = set(range(8192, 16384))
    world.replicate(2, 0)
    drained.keys = first.keys
    world.record_status()

    result = plan_world(world)

    assert result.cluster_state is not ClusterState.FAILED, _explain(result)
    assert result.mutating, _explain(result)
    for action in result.actions:
        assert not (isinstance(action, ResetNode) and action.pod == "demo-2")


def test_open_slot_is_never_finished_toward_a_node_that_became_a_replica() -> None:
    """A target that lost its master role after a failover is not finished to."""
    # Machine: a Job moving slots from demo-2 to demo-1 dies with a slot open;
    # demo-1 dies, Redis promotes demo-4, demo-1 returns as its replica (and
    # Redis closes its importing slot). Every pass then plans
    # finish-migration toward demo-1, which a replica refuses: a livelock.
    world = World.formed()
    _promote(world, replica=4, master=1)
    world.replicate(1, 4)
    world.node(2).migrating[10923] = world.node(1).node_id

    result = plan_world(world)

    replica_id = world.node(1).node_id
    for action in result.actions:
        if isinstance(action, FinishMigration):
            assert action.target_id != replica_id, _explain(result)
    assert result.mutating, _explain(result)


def test_open_slot_toward_a_failed_over_dead_target_does_not_block_for_ever() -> None:
    """A slot left migrating toward an id whose disk is gone does not wedge."""
    # Machine: a Job moving slots from demo-2 to demo-1 dies with a slot open;
    # demo-1 loses its disk and Redis promotes its replica demo-4. The old id
    # can never answer again (demo-1 runs a new id), yet every pass waits
    # "cannot finish open slots ... down or unknown", so nothing else heals.
    world = World.formed()
    _promote(world, replica=4, master=1)
    old = _lose_disk(world, 1)
    world.join(1)
    world.node(2).migrating[10923] = old.node_id

    result = plan_world(world)

    assert result.mutating, _explain(result)
    for action in result.actions:
        if isinstance(action, FinishMigration):
            assert action.target_id != old.node_id, _explain(result)


def test_open_slot_toward_a_lost_master_without_replica_does_not_block() -> None:
    """With no replica, the lost target's slot is closed and its slots retaken."""
    # Machine: 3x0 scaled to 2x0; the Job dies with a slot open from demo-2
    # to demo-1, then demo-1 loses its disk. The open slot blocks the
    # takeover of demo-1's slots for ever (Degraded, waiting).
    world = World.formed(replicas=0)
    old = _lose_disk(world, 1)
    world.join(1)
    world.node(2).migrating[10923] = old.node_id
    world.masters = 2

    result = plan_world(world)

    assert result.mutating, _explain(result)
    for action in result.actions:
        if isinstance(action, FinishMigration):
            assert action.target_id != old.node_id, _explain(result)


def test_open_slot_is_not_finished_while_its_source_is_unreachable() -> None:
    """Keys left on a source that does not answer cannot move: no finish yet."""
    # Machine: a slot is open from demo-2 to demo-0 and demo-2's process dies;
    # the next pass finishes the slot toward demo-0 at once. The keys still
    # on demo-2 cannot be migrated, and giving the slot to demo-0 anyway
    # makes demo-2 drop them when it returns (Redis 7 deletes keys of slots
    # it lost).
    world = World.formed()
    source, target = world.node(2), world.node(0)
    source.migrating[10923] = target.node_id
    target.importing[10923] = source.node_id
    source.reachable = False
    source.pong_ms = T0_MS - 5_000
    world.pods["demo-2"].ready = False

    result = plan_world(world)

    finishes = [a for a in result.actions if isinstance(a, FinishMigration)]
    assert not finishes, _explain(result)


def test_slots_of_a_lost_master_are_not_written_off_while_its_replica_is_down() -> None:
    """A takeover empties slots only when no replica may still hold their keys."""
    # Machine: 3x1, demo-2 (master) loses its disk while its replica demo-5's
    # process is down. The planner calls the old id "failed, has no replica"
    # and gives its slots to demo-2's new, empty node: when demo-5 returns
    # it follows the new owner and its full copy of the keys is dropped.
    world = World.formed()
    old = _lose_disk(world, 2)
    world.join(2)
    replica = world.node(5)
    replica.reachable = False
    replica.pong_ms = T0_MS - 20_000
    world.pods["demo-5"].ready = False

    result = plan_world(world)

    for action in result.actions:
        assert not (
            isinstance(action, AssignSlots) and action.from_node_id == old.node_id
        ), _explain(result)


def test_a_view_that_missed_a_move_to_a_lost_master_does_not_wedge_healing() -> None:
    """A stale view crediting a slot to a node that no longer claims it heals."""
    # Machine: slot 16383 moved from demo-2 to demo-3 while demo-0 was down;
    # demo-3 then lost its disk before demo-0 came back. Gossip never carries
    # slots and UPDATE messages only correct a node's own claims, so demo-0
    # keeps crediting the slot to demo-2, which does not claim it. Every pass
    # then reports a split brain and waits, so the lost slots are never
    # taken over by demo-3's new node.
    world = World.formed(masters=4, replicas=0)
    moved_from = world.node(2)
    old = _lose_disk(world, 3)
    world.join(3)
    document = world.snapshot()
    _credit_in_view(document, "demo-0", moved_from.node_id, moved_from.slots | {16383})
    _credit_in_view(document, "demo-0", old.node_id, old.slots - {16383})

    result = plan_world(document)

    takeovers = [
        a
        for a in result.actions
        if isinstance(a, AssignSlots) and a.from_node_id == old.node_id
    ]
    assert takeovers, _explain(result)
    assert takeovers[0].pod == "demo-3"


def test_lost_master_slots_are_not_written_off_while_a_forgotten_replica_has_them() -> (
    None
):
    """Pods that still replicate a lost master hold its keys, even if forgotten."""
    # Machine: 3x2 scaled to 3x0; the six leaving replicas are forgotten but
    # the StatefulSet has not shrunk yet when demo-0 loses its disk. Its
    # replicas demo-3 and demo-6 still run with every key, yet the planner
    # calls the old id "failed, has no replica", gives its slots to demo-0's
    # empty new node and then shrinks the StatefulSet: the keys are gone.
    world = World.formed(replicas=2)
    world.replicas = 0
    members = set(world.members)
    for ordinal in range(3, 9):
        node = world.node(ordinal)
        world.members.discard(node.node_id)
        node.knows = members - {node.node_id}
    old = _lose_disk(world, 0)
    world.join(0)

    result = plan_world(world)

    for action in result.actions:
        assert not (
            isinstance(action, AssignSlots) and action.from_node_id == old.node_id
        ), _explain(result)


def test_the_id_a_pod_lost_is_remembered_while_the_pod_is_unreachable() -> None:
    """previousNodeId survives a pass in which the returned pod does not answer."""
    # Machine: demo-0 (3x0) comes back from a lost disk with a new id, which
    # status records as previousNodeId; its process then dies for one pass,
    # and that pass writes status without previousNodeId. Once demo-0 is
    # back, nothing links it to the failed id any more: every pass waits
    # "until its pod comes back" and the lost slots are never taken over.
    world = World.formed(replicas=0)
    old = _lose_disk(world, 0)
    returned = plan_world(world)
    world.status = returned.status.to_json()

    world.node(0).reachable = False
    world.pods["demo-0"].ready = False
    down = plan_world(world)
    world.status = down.status.to_json()

    previous = {n.pod_name: n.previous_node_id for n in down.status.cluster_nodes}
    assert previous["demo-0"] == old.node_id, _explain(down)

    world.node(0).reachable = True
    world.pods["demo-0"].ready = True
    world.join(0)
    back = plan_world(world)

    takeovers = [
        a
        for a in back.actions
        if isinstance(a, AssignSlots) and a.from_node_id == old.node_id
    ]
    assert takeovers, _explain(back)


def test_the_id_a_pod_lost_survives_a_pass_in_which_no_master_answers() -> None:
    """A pass that sees no cluster at all does not erase previousNodeId."""
    # Machine: demo-1 (3x0) comes back from a lost disk and status records
    # its old id; then, for one pass, every other master is down, so the
    # planner has no picture at all and writes status without
    # previousNodeId. The masters return, but the failed id is never linked
    # to demo-1 again and its slots wait for ever.
    world = World.formed(replicas=0)
    old = _lose_disk(world, 1)
    returned = plan_world(world)
    world.status = returned.status.to_json()

    for ordinal in (0, 2):
        world.node(ordinal).reachable = False
        world.pods[f"demo-{ordinal}"].ready = False
    blind = plan_world(world)
    world.status = blind.status.to_json()

    previous = {n.pod_name: n.previous_node_id for n in blind.status.cluster_nodes}
    assert previous["demo-1"] == old.node_id, _explain(blind)

    for ordinal in (0, 2):
        world.node(ordinal).reachable = True
        world.pods[f"demo-{ordinal}"].ready = True
    world.join(1)
    back = plan_world(world)

    takeovers = [
        a
        for a in back.actions
        if isinstance(a, AssignSlots) and a.from_node_id == old.node_id
    ]
    assert takeovers, _explain(back)


def test_no_migration_starts_while_a_member_view_is_stale() -> None:
    """A rebalance waits until every member's view agrees with the owners."""
    # Machine: a replica (here demo-4) misses a gossip round after slot 100
    # was finished on demo-0, so it still credits the slot to demo-2, which
    # does not claim it. Since stale views no longer block, the next pass
    # starts a migration to demo-2, which bumps demo-2's config epoch above
    # demo-0's. demo-4 then sees demo-0 claim slot 100 below the epoch of its
    # "owner" demo-2 and sends demo-0 an UPDATE carrying its stale view:
    # demo-0 drops slot 100 and its keys, and demo-2 never claims it.
    world = World.formed()
    first, second, third = world.node(0), world.node(1), world.node(2)
    first.slots = set(range(0, 8000))
    second.slots = set(range(8000, 12000))
    third.slots = set(range(12000, 16384))
    world.record_status()
    document = world.snapshot()
    _credit_in_view(document, "demo-4", first.node_id, first.slots - {100})
    _credit_in_view(document, "demo-4", third.node_id, third.slots | {100})

    result = plan_world(document)

    moves = [a for a in result.actions if isinstance(a, MigrateSlots)]
    assert not moves, _explain(result)


def test_slot_open_on_a_source_lost_for_good_does_not_wedge_healing() -> None:
    """An open slot whose owner's disk is gone is finished where its keys are."""
    # Machine: a Job moving slots from demo-0 to demo-1 dies with slot 100
    # open, then demo-0 (3x0, no replica) loses its disk. demo-0 now runs a
    # new id, so the old one will never answer again, yet every pass waits
    # "until it is back or failed over": the keys already on demo-1 stay
    # unreachable and demo-0's lost slots are never taken over.
    world = World.formed(replicas=0)
    source, target = world.node(0), world.node(1)
    source.migrating[100] = target.node_id
    target.importing[100] = source.node_id
    _lose_disk(world, 0)
    world.join(0)

    result = plan_world(world)

    assert result.mutating, _explain(result)


def _interrupted_creation_with_a_lost_master() -> tuple[World, Node]:
    """3x1 created up to its last step (no status yet); demo-2's disk is lost."""
    world = World.formed(replicas=1, keys=0)
    world.status = {}
    old = _lose_disk(world, 2)
    return world, old


def test_a_resumed_creation_never_resets_a_member() -> None:
    """Pods that joined the interrupted creation are not reset as dirty."""
    # Machine: creation of a fresh 3x1 is interrupted (the operator crashes
    # after the slots and the meets), then demo-2 loses its disk. The next
    # pass resumes creation and resets demo-3, demo-4 and demo-5 as "not a
    # member and dirty", though the masters holding slots know them and
    # they know the masters: only because they still list demo-2's old id.
    world, _ = _interrupted_creation_with_a_lost_master()

    result = plan_world(world)

    member_pods = {f"demo-{o}" for o in (0, 1, 3, 4, 5)}
    resets = [a.pod for a in result.actions if isinstance(a, ResetNode)]
    assert not member_pods & set(resets), _explain(result)


def test_a_resumed_creation_never_reuses_the_epoch_of_a_lost_master() -> None:
    """Slots still held by a lost id are taken over, not added at its epoch."""
    # Machine: same interruption; once demo-2's new node is clean, creation
    # gives it 10923-16383 by ADDSLOTS with config epoch 3, the epoch the lost
    # id still holds those slots at. After the meet two nodes claim the
    # slots at one epoch; the lost one can never take part in Redis' epoch
    # collision handling, so the views stay split for ever.
    world, old = _interrupted_creation_with_a_lost_master()
    for ordinal in (3, 4, 5):
        world.members.discard(world.node(ordinal).node_id)
        pod = world.pods[f"demo-{ordinal}"]
        pod.node = Node(node_id=node_id_for(f"{pod.name}/reset"), ip=pod.ip)

    result = plan_world(world)

    for action in result.actions:
        if isinstance(action, AssignSlots) and action.pod == "demo-2":
            overlap = slots_of(action.slots) & old.slots
            taken_over = action.from_node_id == old.node_id
            assert taken_over or not overlap, _explain(result)


def test_lost_id_survives_a_pass_that_sees_only_the_returning_pod() -> None:
    """With every other pod down, the empty pod's old id stays in status."""
    # Machine: all three masters of a 3x0 died and demo-0 came back first
    # with an empty disk. The pass that saw only demo-0 (knowing nobody)
    # wrote status without its old id, so once the others returned nobody
    # took over demo-0's slots: "unserved until its pod comes back", forever.
    world = World.formed(replicas=0, keys=20)
    world.record_status()
    old = _lose_disk(world, 0)
    for ordinal in (1, 2):
        world.node(ordinal).reachable = False
    alone = plan_world(world)
    world.status = alone.status.to_json()
    for ordinal in (1, 2):
        world.node(ordinal).reachable = True

    result = plan_world(world)

    assert alone.status.node_of("demo-0").previous_node_id == old.node_id
    meets = [a for a in result.actions if isinstance(a, MeetNode)]
    assert [a.pod for a in meets] == ["demo-0"], _explain(result)


def test_a_master_back_on_a_dirty_new_disk_is_reset_then_takes_over() -> None:
    """Junk keys on a lost master's new disk are wiped so it can take over."""
    # Machine: 3x0, demo-0 died and came back on a new disk holding 5 keys of
    # someone else's. No taker was clean, so every pass waited "unserved
    # until its pod comes back" though the pod was back.
    world = World.formed(replicas=0, keys=20)
    world.record_status()
    old = _lose_disk(world, 0)
    world.node(0).keys = 5

    result = plan_world(world)

    resets = [a.pod for a in result.actions if isinstance(a, ResetNode)]
    assert resets == ["demo-0"], _explain(result)
    assert old.node_id in result.actions[0].reason
    assert result.status.node_of("demo-0").previous_node_id == old.node_id
