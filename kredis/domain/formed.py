"""The order of work on a formed cluster: guard, Jobs, heal, join, shape.

Each pass takes the first step that has work and returns; later steps wait
for a fresh observation. It never plans creation and never resets a member.
"""

from __future__ import annotations

import attrs

from kredis.domain import heal, shape
from kredis.domain.actions import Action, Wait
from kredis.domain.context import Context, Outcome
from kredis.domain.jobs import JobReview, review_jobs
from kredis.domain.nodes import NodeEntry
from kredis.domain.slots import SLOT_COUNT, count_slots
from kredis.domain.status import ClusterState, MigrationStatus, OperationKind
from kredis.domain.topology import Agreement

_KIND_STATE = {
    OperationKind.SCALE_UP: ClusterState.SCALING,
    OperationKind.SCALE_DOWN: ClusterState.SCALING_DOWN,
    OperationKind.REBALANCE: ClusterState.REBALANCING,
}


@attrs.frozen
class _Pass:
    """One pass over a formed cluster: folds Job results into every outcome."""

    jobs: JobReview

    def outcome(
        self,
        actions: tuple[Action, ...],
        state: ClusterState,
        summary: str,
        *,
        problem: str = "",
        migration: MigrationStatus | None = None,
        converged: bool = False,
    ) -> Outcome:
        note = f"{self.jobs.note}; {summary}" if self.jobs.note else summary
        return Outcome(
            actions=self.jobs.deletes + actions,
            state=state,
            summary=note,
            problem=problem,
            migration=migration,
            migration_failures=self.jobs.failures,
            converged=converged,
        )


def plan_formed(ctx: Context) -> Outcome:
    """Plan the next safe step for a cluster that already formed."""
    topology = ctx.topology
    jobs = review_jobs(ctx)
    grow = shape.grow_stateful_set(ctx)
    run = _Pass(jobs)
    outcome = run.outcome

    # Never act on a picture the nodes do not agree on.
    if topology.agreement is not Agreement.AGREED:
        return outcome(
            (Wait(reason=topology.problem),),
            ClusterState.DEGRADED,
            f"waiting: {topology.problem}",
            problem=topology.problem,
            migration=jobs.migration,
        )

    if jobs.running:
        return _wait_for_job(jobs, grow, run)

    # Limitation: slots that no node owns are reported, never assigned: the
    # snapshot cannot say whether some node still holds keys in them.
    if not topology.masters:
        problem = (
            "no member of the cluster answers with a view of it; nothing changes "
            "until one does"
        )
        return outcome(
            (*grow, Wait(reason=problem)),
            ClusterState.DEGRADED,
            problem,
            problem=problem,
        )
    uncovered = SLOT_COUNT - sum(count_slots(e.slots) for e in topology.nodes.values())
    if uncovered:
        problem = (
            f"{uncovered} slots have no owner in the agreed view; kredis does not "
            "assign them because it cannot tell where their keys are"
        )
        return outcome(
            (Wait(reason=problem),), ClusterState.DEGRADED, problem, problem=problem
        )

    finishing = heal.finish_open_slots(ctx)
    if finishing.blocking:
        return outcome(
            finishing.actions,
            ClusterState.DEGRADED if finishing.degraded else ClusterState.HEALING,
            "finishing interrupted migrations",
            problem=finishing.degraded,
        )

    failed = heal.heal_failed_masters(ctx)
    tidy = heal.forget_ghosts(ctx) + heal.meet_moved_pods(ctx)
    if failed.blocking:
        state = ClusterState.DEGRADED if failed.degraded else ClusterState.HEALING
        return outcome(
            grow + failed.actions + tidy,
            state,
            "healing failed masters",
            problem=failed.degraded,
        )

    # A member kredis cannot reach, though the cluster has not failed it,
    # may hold anything: no shape change until it answers or is failed.
    unseen = [
        p.name
        for p in topology.members
        if not p.reachable
        and not _reported_down(topology.nodes.get(p.node_id or p.recorded_id))
    ]
    if unseen:
        reason = (
            f"kredis cannot reach member pods {', '.join(unseen[:5])} although the "
            "cluster does not report them down; waiting before changing the shape"
        )
        return outcome(
            (*grow, *tidy, Wait(reason=reason)), ClusterState.HEALING, reason
        )

    joins = shape.join_pods(ctx)
    if joins:
        return outcome(
            grow + tidy + joins,
            ClusterState.SCALING,
            f"joining {len(joins)} pods",
        )

    # A change that raises a config epoch while a view is stale can make that
    # node send an UPDATE built on stale owners, costing a live slot its keys.
    if topology.stale:
        reason = (
            f"the views of {', '.join(topology.stale[:5])} still credit slots to "
            "other owners; waiting for gossip before moving slots"
        )
        return outcome(
            (*grow, *tidy, Wait(reason=reason)), ClusterState.HEALING, reason
        )

    roles = shape.choose_roles(ctx)
    promotions = shape.promote(ctx, roles)
    if promotions:
        return outcome(
            grow + tidy + promotions,
            ClusterState.SCALING_DOWN,
            "handing leaving masters' slots to staying replicas by failover",
        )

    released = shape.release(ctx, roles)
    if released:
        return outcome(
            grow + tidy + released,
            ClusterState.SCALING,
            "releasing replicas to become the missing masters",
        )

    replicas = shape.assign_replicas(ctx, roles)
    if ctx.snapshot.resource.status.migration_failures and not _may_retry(ctx, jobs):
        problem = (
            f"migration failed {jobs.failures} times in a row; fix the cause "
            "(see the Job's logs) and edit the spec to try again"
        )
        return outcome(
            grow + tidy + replicas + (Wait(reason=problem),),
            ClusterState.FAILED,
            problem,
            problem=problem,
        )
    migration = shape.migrate(ctx, roles)
    if migration.actions:
        assert migration.migration is not None
        # A node whose cluster_state is not ok yet (a master that just
        # joined waits out Redis' rejoin delay) answers MIGRATE with
        # CLUSTERDOWN: the Job would fail for nothing.
        not_ok = _not_serving(ctx)
        if not_ok:
            reason = (
                f"cluster_state is not ok yet on {', '.join(not_ok[:5])}; slots "
                "move once every member serves"
            )
            return outcome(
                (*grow, *tidy, *replicas, Wait(reason=reason)),
                _KIND_STATE[migration.migration.kind],
                reason,
            )
        return outcome(
            grow + tidy + replicas + migration.actions,
            _KIND_STATE[migration.migration.kind],
            f"{migration.migration.kind.value}: moving "
            f"{migration.migration.slots_total} slots in Job {migration.migration.job}",
            migration=migration.migration,
        )

    forgets = shape.forget_leaving(ctx, roles)
    shrink = shape.shrink_stateful_set(ctx)
    changes = grow + tidy + replicas + forgets + shrink
    if forgets or shrink:
        return outcome(changes, ClusterState.SCALING_DOWN, "removing leaving pods")
    if changes:
        state = ClusterState.SCALING if grow else ClusterState.HEALING
        return outcome(changes, state, "adjusting replicas and membership")

    return _settled(ctx, roles.shortfall, run)


def _not_serving(ctx: Context) -> list[str]:
    # Members that answer but report cluster_state other than ok.
    members = {p.name for p in ctx.topology.members}
    return sorted(
        name
        for name, observed in ctx.snapshot.redis.items()
        if observed.info is not None and not observed.info.state_ok and name in members
    )


def _reported_down(entry: NodeEntry | None) -> bool:
    return entry is not None and (entry.is_failed or entry.is_suspected)


def _may_retry(ctx: Context, jobs: JobReview) -> bool:
    return jobs.failures < ctx.settings.migration_attempts


def _wait_for_job(jobs: JobReview, grow: tuple[Action, ...], run: _Pass) -> Outcome:
    names = ", ".join(job.name for job in jobs.running)
    migration = jobs.migration
    state = _KIND_STATE[migration.kind] if migration else ClusterState.REBALANCING
    progress = ""
    if migration is not None and migration.slots_total:
        progress = f" ({migration.slots_moved} of {migration.slots_total} slots moved)"
    return run.outcome(
        (*grow, Wait(reason=f"migration Job {names} is running{progress}")),
        state,
        f"migration Job {names} running{progress}",
        migration=migration,
    )


def _settled(ctx: Context, shortfall: str, run: _Pass) -> Outcome:
    # Nothing to change: running if the shape matches, otherwise say why not.
    topology = ctx.topology
    waits: list[str] = []
    if shortfall:
        waits.append(shortfall)
    missing = [
        p.name
        for p in ctx.staying_pods
        if not (p.member and p.reachable and p.pod.ready)
    ]
    known = {p.ordinal for p in ctx.topology.pods}
    missing += [f"{ctx.name}-{n}" for n in range(ctx.pod_count) if n not in known]
    if missing:
        waits.append(f"waiting for pods to be ready members: {', '.join(missing[:5])}")
    suspects = [
        topology.label(i)
        for i, e in topology.nodes.items()
        if e.is_failed or e.is_suspected
    ]
    if suspects:
        waits.append(f"nodes reported down: {', '.join(sorted(suspects)[:5])}")
    # A node no pod holds (the id of a pod that came back on a new disk at a
    # new address) is forgotten once the cluster reports it down; until then
    # the cluster still counts it, so it is not yet the spec's shape.
    unheld = [
        i
        for i, e in topology.nodes.items()
        if topology.pod_of(i) is None and not (e.is_failed or e.is_suspected)
    ]
    if unheld:
        waits.append(
            f"nodes no pod holds are still known: {', '.join(sorted(unheld)[:5])}; "
            "each is forgotten once the cluster reports it down"
        )
    not_ok = _not_serving(ctx)
    if not_ok:
        waits.append(f"cluster_state is not ok on {', '.join(sorted(not_ok)[:5])}")
    # Running means every member already knows every other member, so that a
    # client or redis-cli sees one cluster whichever node it asks.
    member_ids = {p.node_id for p in topology.members if p.node_id}
    unaware = [
        p.name
        for p in topology.members
        if p.view is not None and not member_ids - {p.node_id} <= p.view.known_ids
    ]
    if unaware:
        waits.append(
            "gossip has not yet introduced every member to "
            f"{', '.join(sorted(unaware)[:5])}"
        )
    if waits:
        reason = "; ".join(waits)
        recorded = {n.pod_name for n in ctx.snapshot.resource.status.cluster_nodes}
        growing = any(name not in recorded for name in missing)
        state = (
            ClusterState.FAILED
            if shortfall
            else ClusterState.SCALING
            if growing
            else ClusterState.HEALING
        )
        return run.outcome((Wait(reason=reason),), state, reason, problem=shortfall)
    return run.outcome(
        (),
        ClusterState.RUNNING,
        f"running with {ctx.spec.masters} masters and {ctx.spec.replicas} "
        "replicas each",
        converged=True,
    )
