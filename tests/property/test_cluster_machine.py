"""Stateful property test: the planner drives a simulated cluster through failures.

Role: start from a converged cluster with keys, interleave world events (pods
dying, restarting, moving, losing disks, spec edits, failed Jobs, operator
crashes, gossip lag) with reconcile passes (observe, plan, apply), check the
named safety invariants after every step, and check at the end that once the
events stop the planner brings the cluster to its spec within a bounded
number of passes. It must not weaken an invariant to let the planner pass,
and it never edits the planner: a failure here is a planner bug or a
simulator bug, to be reproduced as a unit test.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from kredis.domain.actions import action_to_json
from kredis.domain.context import PlannerSettings
from kredis.domain.planner import Plan, plan
from kredis.domain.snapshot import load_snapshot
from kredis.domain.status import ClusterState
from tests.property.simulator import (
    DATA_LOSS,
    DOUBLE_OWNER,
    FORGET_HOLDER,
    MIGRATE_OPEN,
    RESET_MEMBER,
    SHRINK_HOLDER,
    TWO_JOBS,
    Simulator,
)

# Passes allowed for the cluster to reach its spec once events stop.
CONVERGE_PASSES = 40
PLANNER = PlannerSettings()
SHAPES = [(3, 1), (3, 0), (2, 1), (3, 2)]


class ClusterMachine(RuleBasedStateMachine):
    """A converged cluster, world events and reconcile passes, checked each step."""

    def __init__(self) -> None:
        super().__init__()
        self.sim = Simulator.converged(3, 1)
        self.started = False
        # Slot coverage is checked once the cluster has served every slot.
        self.formed = False
        self.unstable: list[str] = []
        self.silent: list[str] = []

    # -- helpers ---------------------------------------------------------

    def _fail(self, message: str) -> None:
        tail = "\n".join(self.sim.log[-25:])
        raise AssertionError(f"{message}\n-- recent simulator log --\n{tail}")

    def _reconcile(self, *, limit: int | None = None) -> Plan:
        """One operator pass: observe, plan (twice), apply, write status."""
        self.sim.tick()
        document = self.sim.snapshot()
        result = plan(load_snapshot(document), PLANNER)
        again = plan(load_snapshot(json.loads(json.dumps(document))), PLANNER)
        if again.to_json() != result.to_json():
            self.unstable.append(
                f"tick {self.sim.tick_count}: {result.to_json()['actions']} then "
                f"{again.to_json()['actions']}"
            )
        for action in result.actions:
            if not action.reason.strip():
                self.silent.append(
                    f"tick {self.sim.tick_count}: {action_to_json(action)}"
                )
        self.sim.apply_plan(result, limit=limit)
        if limit is None:
            self.sim.status = result.status.to_json()
        return result

    def _pods(self, which: str) -> list[int]:
        found = []
        for ordinal in sorted(self.sim.pods):
            node = self.sim.pvcs[ordinal]
            if self.sim.pods[ordinal].booting or node.gone:
                continue
            fits = {
                "alive": node.running,
                "dead": not node.running,
                "replica": not node.master,
                "master": node.master and bool(node.claims),
            }
            if fits[which]:
                found.append(ordinal)
        return found

    def _violations(self, *kinds: str) -> list[str]:
        return [
            f"tick {v.tick} {v.kind}: {v.detail}"
            for v in self.sim.violations
            if v.kind in kinds
        ]

    # -- start -----------------------------------------------------------

    @initialize(
        shape=st.sampled_from(SHAPES),
        auto_failover_ticks=st.sampled_from([3, 2, 5]),
        slots_per_tick=st.sampled_from([2000, 1000, 8000]),
        key_stride=st.sampled_from([7, 3]),
        fresh=st.sampled_from([False, False, False, True]),
    )
    def start(
        self,
        shape: tuple[int, int],
        auto_failover_ticks: int,
        slots_per_tick: int,
        key_stride: int,
        fresh: bool,
    ) -> None:
        """A converged cluster with keys (first pass idle), or nothing yet."""
        masters, replicas = shape
        options = {
            "auto_failover_ticks": auto_failover_ticks,
            "slots_per_tick": slots_per_tick,
        }
        if fresh:
            # Creation itself meets the events; keys come from clients.
            self.sim = Simulator.empty(masters, replicas, **options)
        else:
            self.sim = Simulator.converged(
                masters, replicas, key_stride=key_stride, **options
            )
            first = self._reconcile()
            assert not first.mutating, first.to_json()["actions"]
        self.started = True

    # -- operator --------------------------------------------------------

    @rule(passes=st.integers(1, 3))
    def reconcile(self, passes: int) -> None:
        """The operator runs full passes."""
        for _ in range(passes):
            self._reconcile()

    @rule(cut=st.integers(0, 8))
    def operator_crashes_mid_plan(self, cut: int) -> None:
        """The operator applies a prefix of its plan (maybe all) and no status."""
        self.sim.tick()
        result = plan(load_snapshot(self.sim.snapshot()), PLANNER)
        limit = min(cut, len(result.actions))
        self.sim.apply_plan(result, limit=limit)

    # -- world events ----------------------------------------------------

    @precondition(lambda self: bool(self._pods("alive")))
    @rule(pick=st.integers(0, 15))
    def kill_pod(self, pick: int) -> None:
        """A Redis process dies; its pod stays, not ready."""
        alive = self._pods("alive")
        self.sim.kill(alive[pick % len(alive)])

    @precondition(lambda self: bool(self._pods("dead")))
    @rule(pick=st.integers(0, 15), new_ip=st.booleans())
    def restart_pod(self, pick: int, new_ip: bool) -> None:
        """A dead process starts again from its disk, maybe at a new address."""
        dead = self._pods("dead")
        self.sim.restart(dead[pick % len(dead)], new_ip=new_ip)

    @precondition(lambda self: bool(self._pods("alive")))
    @rule(pick=st.integers(0, 15))
    def reschedule_pod(self, pick: int) -> None:
        """A running pod moves: same disk and node id, new IP."""
        alive = self._pods("alive")
        ordinal = alive[pick % len(alive)]
        self.sim.kill(ordinal)
        self.sim.restart(ordinal, new_ip=True)

    @precondition(lambda self: bool(self._pods("replica")))
    @rule(pick=st.integers(0, 15), junk=st.sampled_from([0, 0, 5]))
    def lose_replica_disk(self, pick: int, junk: int) -> None:
        """A replica's pod comes back on a new disk (empty or with junk keys)."""
        replicas = self._pods("replica")
        self.sim.lose_disk(replicas[pick % len(replicas)], junk=junk)

    @precondition(lambda self: bool(self._pods("master")))
    @rule(pick=st.integers(0, 15), junk=st.sampled_from([0, 0, 5]))
    def lose_master_disk(self, pick: int, junk: int) -> None:
        """A master's pod comes back on a new disk (empty or with junk keys)."""
        masters = self._pods("master")
        self.sim.lose_disk(masters[pick % len(masters)], junk=junk)

    # A creation interrupted and then given another spec is a documented
    # limitation (docs/limitations.md): spec edits wait until status says
    # the cluster formed.
    @precondition(lambda self: self.sim.status.get("clusterFormed") is True)
    @rule(masters=st.integers(1, 5), replicas=st.integers(0, 2))
    def change_spec(self, masters: int, replicas: int) -> None:
        """The user edits spec.masters and spec.replicas."""
        self.sim.set_spec(masters, replicas)

    @precondition(lambda self: bool(self.sim.running_jobs()))
    @rule()
    def migration_job_fails(self) -> None:
        """The running migration Job dies with its current slot open."""
        self.sim.fail_running_job()

    @rule(mask=st.integers(1, (1 << 15) - 1))
    def gossip_lags(self, mask: int) -> None:
        """Some nodes miss the next gossip round, so views disagree for a pass."""
        self.sim.lagging = {
            self.sim.pvcs[o].node_id
            for o in self.sim.pods
            if mask >> o & 1 and o in self.sim.pvcs
        }

    @rule(slot=st.integers(0, 16383))
    def client_writes(self, slot: int) -> None:
        """A client writes a new key through the slot's owner."""
        self.sim.write_key(slot)

    # -- invariants ------------------------------------------------------

    @invariant()
    def every_slot_has_exactly_one_owner(self) -> None:
        """Each slot is served by exactly one node once gossip settles."""
        if not self.started:
            return
        ownership = self.sim.ownership()
        if not ownership.uncovered:
            self.formed = True
        problems = list(ownership.ties) + self._violations(DOUBLE_OWNER)
        unowned = ownership.uncovered - self.sim.orphaned if self.formed else set()
        if unowned:
            problems.append(f"{len(unowned)} slots have no owner, from {min(unowned)}")
        if problems:
            self._fail("slot ownership broken: " + "; ".join(problems))

    @invariant()
    def no_key_is_lost(self) -> None:
        """Every key survives unless every copy of it was on a lost disk."""
        if not self.started:
            return
        missing = self.sim.missing_keys()
        problems = self._violations(DATA_LOSS)
        if missing:
            shown = sorted(missing.items())[:5]
            problems.append(f"keys lost in {len(missing)} slots: {shown}")
        if problems:
            self._fail("data lost: " + "; ".join(problems))

    @invariant()
    def no_member_or_holder_is_reset(self) -> None:
        """Never reset a member, a node with slots or the only copy of keys."""
        problems = self._violations(RESET_MEMBER)
        if problems:
            self._fail("unsafe reset: " + "; ".join(problems))

    @invariant()
    def no_node_with_slots_is_forgotten(self) -> None:
        """Never forget a node that still serves slots."""
        problems = self._violations(FORGET_HOLDER)
        if problems:
            self._fail("unsafe forget: " + "; ".join(problems))

    @invariant()
    def at_most_one_migration_at_a_time(self) -> None:
        """Never two migration Jobs, and none started while slots are open."""
        problems = self._violations(TWO_JOBS, MIGRATE_OPEN)
        running = self.sim.running_jobs()
        if len(running) > 1:
            problems.append(f"running Jobs: {[job.name for job in running]}")
        if problems:
            self._fail("concurrent migrations: " + "; ".join(problems))

    @invariant()
    def statefulset_keeps_every_slot_holder(self) -> None:
        """The StatefulSet never shrinks below a pod that holds slots or keys."""
        problems = self._violations(SHRINK_HOLDER)
        if problems:
            self._fail("unsafe shrink: " + "; ".join(problems))

    @invariant()
    def planning_is_idempotent(self) -> None:
        """The same snapshot always gives the same plan, every action a reason."""
        if self.unstable or self.silent:
            self._fail(
                f"unstable plans: {self.unstable[:2]}; no reason: {self.silent[:2]}"
            )

    # -- convergence -----------------------------------------------------

    def teardown(self) -> None:
        """Once events stop, the cluster reaches its spec within a bound."""
        if not self.started or self._has_failed():
            return
        self.sim.heal_processes()
        edits = 0
        history: list[str] = []
        for _ in range(CONVERGE_PASSES):
            if self.sim.quorum_lost():
                # No majority is left to fail over; only a human can decide.
                return
            result = self._reconcile()
            self.check_everything()
            history.append(
                f"tick {self.sim.tick_count} {result.cluster_state.value}: "
                + "; ".join(
                    f"{action_to_json(a)['action']} {a.reason[:100]}"
                    for a in result.actions
                )
            )
            problems = self.sim.spec_problems()
            if len(result.status.joined_pods) != len(self.sim.pods):
                problems.append(f"status joins {result.status.joined_pods}")
            if (
                not result.mutating
                and result.cluster_state is ClusterState.RUNNING
                and not problems
            ):
                return
            if (
                result.cluster_state is ClusterState.FAILED
                and result.status.migration_failures >= PLANNER.migration_attempts
                and edits < 2
            ):
                # The user reads the status and edits the spec to retry.
                edits += 1
                self.sim.generation += 1
        self._fail(
            f"no convergence to {self.sim.masters}x{self.sim.replicas} within "
            f"{CONVERGE_PASSES} passes: {self.sim.spec_problems()}\n"
            f"refusals: {self.sim.refusals[-5:]}\n-- last passes --\n"
            + "\n".join(history[-8:])
        )

    def check_everything(self) -> None:
        """Every invariant, as after a rule."""
        self.every_slot_has_exactly_one_owner()
        self.no_key_is_lost()
        self.no_member_or_holder_is_reset()
        self.no_node_with_slots_is_forgotten()
        self.at_most_one_migration_at_a_time()
        self.statefulset_keeps_every_slot_holder()
        self.planning_is_idempotent()

    def _has_failed(self) -> bool:
        try:
            self.check_everything()
        except AssertionError:
            return True
        return False


@pytest.mark.parametrize(
    ("masters", "replicas"), [(m, r) for m in range(1, 6) for r in range(3)]
)
def test_a_new_cluster_is_created_and_reaches_its_spec(
    masters: int, replicas: int
) -> None:
    """From no StatefulSet at all, reconcile passes create the spec's cluster."""
    sim = Simulator.empty(masters, replicas)
    for _ in range(CONVERGE_PASSES):
        sim.tick()
        result = plan(load_snapshot(sim.snapshot()), PLANNER)
        sim.apply_plan(result)
        sim.status = result.status.to_json()
        if result.cluster_state is ClusterState.RUNNING and not result.mutating:
            break
    assert sim.spec_problems() == []
    assert not sim.violations
    assert not sim.refusals


# The explain phase traces every line of every replay, which makes shrinking
# a failure of this machine several times slower; its report adds little.
ClusterMachine.TestCase.settings = settings(
    settings.default,
    stateful_step_count=50,
    max_examples=min(settings.default.max_examples, 150),
    phases=[p for p in settings.default.phases if p is not Phase.explain],
)
# A failing run shrinks for up to Hypothesis' five minutes before it reports;
# the suite-wide 300 s timeout would cut that report off.
TestClusterMachine = pytest.mark.timeout(900)(ClusterMachine.TestCase)
