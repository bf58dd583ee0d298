"""Migration Jobs: which run, which finished, and how far the migration got.

Judges Jobs only by their conditions (failed means the ``Failed`` condition
is true) and judges a vanished Job by the cluster itself. Plans deletions of
finished Jobs and nothing else.
"""

from __future__ import annotations

import attrs

from kredis.domain.actions import DeleteJob
from kredis.domain.context import Context, migration_job_prefix
from kredis.domain.slots import slots_of
from kredis.domain.snapshot import JobInfo
from kredis.domain.status import MigrationStatus, OperationKind, SlotMove
from kredis.domain.topology import Topology


@attrs.frozen
class JobReview:
    """What the migration Jobs say about this pass."""

    deletes: tuple[DeleteJob, ...]
    running: tuple[JobInfo, ...]
    migration: MigrationStatus | None
    failures: int
    note: str


def moved_slots(topology: Topology, moves: tuple[SlotMove, ...]) -> int:
    """How many slots of the moves their targets own now."""
    done = 0
    for move in moves:
        owned = slots_of(topology.slots_of(move.target))
        done += len(slots_of(move.slots) & owned)
    return done


def review_jobs(ctx: Context) -> JobReview:
    """Sort the cluster's migration Jobs into running and finished."""
    resource = ctx.snapshot.resource
    status = resource.status
    prefix = migration_job_prefix(ctx.name)
    jobs = [job for job in ctx.snapshot.jobs if job.name.startswith(prefix)]
    # A new generation of the spec gets fresh attempts.
    failures = (
        status.migration_failures
        if status.observed_generation == resource.generation
        else 0
    )
    previous = status.migration
    deletes: list[DeleteJob] = []
    notes: list[str] = []
    for job in jobs:
        if job.is_failed:
            # Counted once: the pass that sees it failing clears the record.
            if previous is not None and previous.job == job.name:
                failures += 1
            deletes.append(
                DeleteJob(
                    job=job.name,
                    reason=f"migration Job {job.name} failed (attempt {failures}); "
                    "the cluster decides what is left to move",
                )
            )
            notes.append(f"migration Job {job.name} failed")
        elif job.is_complete:
            failures = 0
            deletes.append(
                DeleteJob(job=job.name, reason=f"migration Job {job.name} completed")
            )
            notes.append(f"migration Job {job.name} completed")
    running = tuple(job for job in jobs if not job.is_finished)

    migration: MigrationStatus | None = None
    if running:
        current = running[0]
        if previous is not None and previous.job == current.name:
            migration = attrs.evolve(
                previous, slots_moved=moved_slots(ctx.topology, previous.moves)
            )
        else:
            migration = MigrationStatus(
                job=current.name,
                kind=OperationKind.REBALANCE,
                moves=(),
                slots_total=0,
                slots_moved=0,
                started_at="",
            )
    elif previous is not None and all(job.name != previous.job for job in jobs):
        # The Job is gone: the cluster says whether its work was done.
        done = moved_slots(ctx.topology, previous.moves)
        if done >= previous.slots_total:
            notes.append(f"migration {previous.job} finished: {done} slots moved")
        else:
            notes.append(
                f"migration {previous.job} ended with {done} of "
                f"{previous.slots_total} slots moved; planning the rest again"
            )
    return JobReview(
        deletes=tuple(deletes),
        running=running,
        migration=migration,
        failures=failures,
        note="; ".join(notes),
    )
