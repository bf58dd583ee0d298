"""Jobs by their conditions, status fields and transitions, idempotence."""

from __future__ import annotations

import json
from typing import Any

from kredis.domain.actions import ActionKind, DeleteJob, ForgetNode, MigrateSlots
from kredis.domain.context import migration_job_name
from kredis.domain.slots import SlotRange
from kredis.domain.status import ClusterState, ConditionType, SlotMove
from tests.support.planning import kinds, plan_world
from tests.support.world import Node, World, node_id_for


def _job(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "labels": {}, "annotations": {}, **fields}


def test_job_with_failed_pods_but_no_failed_condition_is_still_running() -> None:
    """Pods that failed while the Job retries do not make the Job failed."""
    world = World.formed()
    world.jobs.append(_job("demo-migrate-aaaa0000", active=1, failed=2))

    result = plan_world(world)

    assert kinds(result) == [ActionKind.WAIT]


def test_failed_condition_deletes_the_job_and_counts_the_failure() -> None:
    """A Job whose Failed condition is true is deleted and counted."""
    world = World.formed()
    world.jobs.append(
        _job("demo-migrate-aaaa0000", conditions=[{"type": "Failed", "status": "True"}])
    )
    world.status["migration"] = {"job": "demo-migrate-aaaa0000", "kind": "rebalance"}

    result = plan_world(world)

    deletes = [a for a in result.actions if isinstance(a, DeleteJob)]
    assert [d.job for d in deletes] == ["demo-migrate-aaaa0000"]
    assert result.status.migration_failures == 1
    assert result.status.migration is None

    world.status = result.status.to_json()
    again = plan_world(world)

    assert again.status.migration_failures == 1


def test_completed_job_is_deleted() -> None:
    """A Job whose Complete condition is true is deleted."""
    world = World.formed()
    world.jobs.append(
        _job(
            "demo-migrate-bbbb0000", conditions=[{"type": "Complete", "status": "True"}]
        )
    )

    result = plan_world(world)

    assert [a.job for a in result.actions if isinstance(a, DeleteJob)] == [
        "demo-migrate-bbbb0000"
    ]
    assert result.cluster_state is ClusterState.RUNNING


def test_vanished_job_whose_work_is_done_counts_as_success() -> None:
    """No Job, but the cluster shows the moves done: the operation succeeded."""
    world = World.formed()
    move = SlotMove(
        source=world.node(0).node_id,
        target=world.node(1).node_id,
        slots=(SlotRange(5462, 5462),),
    )
    world.status["migration"] = {
        "job": "demo-migrate-cccc0000",
        "kind": "rebalance",
        "moves": [move.to_json()],
        "slotsTotal": 1,
        "slotsMoved": 0,
        "startedAt": "2026-11-30T00:50:00Z",
    }

    result = plan_world(world)

    assert result.cluster_state is ClusterState.RUNNING
    assert result.status.migration is None
    assert "finished" in result.status.last_cluster_operation


def test_vanished_job_with_work_left_is_planned_again() -> None:
    """No Job and the slots did not move: the migration is planned again."""
    world = World.formed()
    world.masters, world.replicas = 4, 0
    world.replicate(3, 0)
    world.node(3).master, world.node(3).master_id = True, None
    world.status["migration"] = {
        "job": "demo-migrate-dddd0000",
        "kind": "scale-up",
        "moves": [],
        "slotsTotal": 4096,
        "slotsMoved": 0,
        "startedAt": "2026-11-30T00:50:00Z",
    }

    result = plan_world(world)

    assert ActionKind.MIGRATE_SLOTS in kinds(result)
    assert "planning the rest again" in result.status.last_cluster_operation


def test_repeated_migration_failures_stop_retries_and_report_failed() -> None:
    """After the allowed attempts, no new migration; state Failed with the reason."""
    world = World.formed()
    moving = set(sorted(world.node(1).slots)[:2000])
    world.node(1).slots -= moving
    world.node(0).slots |= moving
    world.status["migrationFailures"] = 3
    world.status["observedGeneration"] = world.generation

    result = plan_world(world)

    assert ActionKind.MIGRATE_SLOTS not in kinds(result)
    assert result.cluster_state is ClusterState.FAILED
    world.generation += 1
    assert ActionKind.MIGRATE_SLOTS in kinds(plan_world(world))


def test_migration_job_names_are_deterministic_and_fit_kubernetes() -> None:
    """The same moves give the same name, at most 63 characters."""
    moves = (SlotMove(source="a" * 40, target="b" * 40, slots=(SlotRange(0, 9),)),)

    name = migration_job_name("x" * 80, moves)

    assert name == migration_job_name("x" * 80, moves)
    assert len(name) <= 63
    assert name != migration_job_name("x" * 80, (*moves, *moves))


def test_all_migrations_of_a_plan_share_one_job() -> None:
    """Many moves in one plan run in one Job."""
    world = World.formed()
    world.masters, world.replicas = 5, 0
    for ordinal in range(3, 6):
        world.node(ordinal).master = True
        world.node(ordinal).master_id = None

    result = plan_world(world)

    jobs = {a.job for a in result.actions if isinstance(a, MigrateSlots)}
    assert len(jobs) == 1


def test_invalid_spec_changes_nothing_and_reports_failed() -> None:
    """700Mi: no mutating action, state Failed, the reason names the field."""
    world = World.formed()
    world.max_memory = "700Mi"

    result = plan_world(world)

    assert kinds(result) == [ActionKind.WAIT]
    assert result.cluster_state is ClusterState.FAILED
    assert "spec.maxMemory" in result.actions[0].reason


def test_state_is_not_sticky_once_the_cause_is_gone() -> None:
    """Failed for a bad spec becomes Running when the spec is fixed."""
    world = World.formed()
    world.max_memory = "700Mi"
    failed = plan_world(world)
    world.status = failed.status.to_json()
    world.max_memory = "512mb"
    world.generation += 1

    result = plan_world(world)

    assert result.cluster_state is ClusterState.RUNNING
    ready = result.status.condition(ConditionType.READY)
    assert ready is not None
    assert ready.status
    assert ready.observed_generation == world.generation


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    """lastTransitionTime moves only when a condition's status flips."""
    world = World.formed()
    first = plan_world(world)
    world.status = first.status.to_json()
    world.observed_at = "2026-11-30T01:00:00Z"

    second = plan_world(world)

    ready = second.status.condition(ConditionType.READY)
    assert ready is not None
    assert ready.last_transition_time == "2026-11-30T00:53:20Z"


def test_converged_cluster_status_is_running_ready_and_not_degraded() -> None:
    """A converged cluster: Running, Ready True, Progressing and Degraded False."""
    world = World.formed()

    result = plan_world(world)

    assert result.cluster_state is ClusterState.RUNNING
    conditions = {c.type: c.status for c in result.status.conditions}
    assert conditions == {
        ConditionType.READY: True,
        ConditionType.PROGRESSING: False,
        ConditionType.DEGRADED: False,
    }


def test_warning_below_three_masters_is_in_status() -> None:
    """Fewer than three masters: a warning in status, still Running."""
    world = World.formed(masters=2)

    result = plan_world(world)

    assert result.cluster_state is ClusterState.RUNNING
    assert any("no majority" in w for w in result.status.warnings)


def test_same_snapshot_gives_the_same_plan() -> None:
    """Planning is deterministic: identical JSON for the same snapshot."""
    world = World.formed(masters=4)
    world.masters = 3
    document = world.snapshot()

    first = json.dumps(plan_world(document).to_json(), sort_keys=True)
    second = json.dumps(plan_world(document).to_json(), sort_keys=True)

    assert first == second


def test_cluster_is_not_running_until_every_member_knows_every_other() -> None:
    """A member that gossip has not yet told about another keeps it Healing."""
    world = World.formed(replicas=1, keys=10)
    world.record_status()
    newest = world.node(5).node_id
    world.node(2).knows = world.members - {newest}

    result = plan_world(world)

    assert result.cluster_state is not ClusterState.RUNNING
    assert not result.mutating
    assert "gossip has not yet introduced every member to demo-2" in (
        result.actions[0].reason
    )


def test_failed_action_marks_the_planned_status_degraded_with_the_error() -> None:
    """with_failed_action sets Degraded (ActionFailed) and says what failed."""
    world = World.formed(replicas=1, keys=10)
    world.record_status()
    status = plan_world(world).status

    failed = status.with_failed_action(
        message="failover failed: demo-3 did not become master",
        at="2026-12-03T12:05:00Z",
    )

    degraded = failed.condition(ConditionType.DEGRADED)
    assert degraded is not None
    assert (degraded.status, degraded.reason) == (True, "ActionFailed")
    assert degraded.last_transition_time == "2026-12-03T12:05:00Z"
    assert failed.last_cluster_operation.startswith("failover failed")
    assert failed.cluster_nodes == status.cluster_nodes


def test_cluster_is_not_running_while_a_node_no_pod_holds_is_still_known() -> None:
    """The old id of a pod back on a new disk keeps the state off Running."""
    world = World.formed(replicas=1, keys=10)
    old = world.node(5)
    pod = world.pods["demo-5"]
    pod.ip = "10.1.0.99"
    pod.node = Node(node_id=node_id_for("demo-5/new"), ip=pod.ip, keys=10)
    world.replicate(5, 2)
    world.members.discard(old.node_id)
    world.join(5)
    world.ghosts.append(old)
    world.record_status()

    waiting = plan_world(world)
    old.failed = True
    forgetting = plan_world(world)

    assert waiting.cluster_state is not ClusterState.RUNNING
    assert not waiting.mutating
    assert "nodes no pod holds are still known" in waiting.actions[0].reason
    assert old.node_id in waiting.actions[0].reason
    assert [a.node_id for a in forgetting.actions if isinstance(a, ForgetNode)] == [
        old.node_id
    ]
