"""The operator loop: observe, plan, apply; one pass at a time.

A pass builds a snapshot from the platform and Redis, asks the pure planner
for the next step, stores the status, then carries the actions out in order
and stops at the first failure (later actions may depend on it; the next
pass plans again from what it sees). It decides nothing itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, assert_never

import attrs

from kredis.adapters.redis_client import Address
from kredis.app.ports import ClusterActions, Platform, RedisPort
from kredis.domain.actions import (
    Action,
    AssignSlots,
    DeleteJob,
    Failover,
    FinishMigration,
    ForgetNode,
    MeetNode,
    MigrateSlots,
    Replicate,
    ResetNode,
    ScaleStatefulSet,
    Wait,
    action_to_json,
)
from kredis.domain.context import PlannerSettings
from kredis.domain.errors import KredisError
from kredis.domain.planner import Plan, plan
from kredis.domain.slots import SlotRange
from kredis.domain.snapshot import load_snapshot
from kredis.domain.status import ClusterState

SNAPSHOT_FORMAT = "kredis.snapshot/v1"
_log = logging.getLogger(__name__)


@attrs.frozen
class PassReport:
    """What one pass planned, carried out and failed at."""

    plan: Plan
    applied: tuple[Action, ...] = ()
    failure: str = ""

    @property
    def converged(self) -> bool:
        """Running, with nothing left to do or wait for."""
        return (
            self.plan.cluster_state is ClusterState.RUNNING
            and not self.plan.actions
            and not self.failure
        )


class Reconciler:
    """Runs passes of observe, plan and apply for one Kredis resource."""

    def __init__(
        self,
        *,
        platform: Platform,
        redis: RedisPort,
        settings: PlannerSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._platform = platform
        self._redis = redis
        self._settings = settings
        self._clock = clock

    def observe(self) -> dict[str, Any]:
        """One snapshot document of everything the pass can see."""
        resource = self._platform.resource()
        pods = self._platform.pods()
        return {
            "format": SNAPSHOT_FORMAT,
            "observedAt": _rfc3339(self._clock()),
            "kredis": resource,
            "statefulSet": self._platform.stateful_set(),
            "pods": pods,
            "redis": self._redis.observe(_addresses(resource, pods)),
            "jobs": self._platform.jobs(),
        }

    def plan_once(self) -> tuple[Plan, dict[str, Any]]:
        """Observe and plan, applying nothing: the dry run."""
        snapshot = self.observe()
        return plan(load_snapshot(snapshot), self._settings), snapshot

    def run_pass(self) -> PassReport:
        """Observe, plan, store the status, then apply the actions in order."""
        result, snapshot = self.plan_once()
        self._platform.write_status(result.status.to_json())
        addresses = _addresses(snapshot["kredis"], snapshot["pods"])
        executor = self._redis.actions(
            addresses=addresses, command_pod=result.command_pod
        )
        applied: list[Action] = []
        started_jobs: set[str] = set()
        for action in result.actions:
            try:
                if isinstance(action, MigrateSlots):
                    if action.job not in started_jobs:
                        self._start_migration(action.job, result, addresses)
                        started_jobs.add(action.job)
                else:
                    self._apply(action, executor)
            except KredisError as err:
                kind = action_to_json(action)["action"]
                _log.error("action failed action=%s error=%s", kind, err)
                failure = f"{kind} failed: {err}"
                self._platform.write_status(
                    result.status.with_failed_action(
                        message=failure, at=_rfc3339(self._clock())
                    ).to_json()
                )
                return PassReport(plan=result, applied=tuple(applied), failure=failure)
            if not isinstance(action, Wait):
                _log.info(
                    "action applied action=%s target=%s reason=%s",
                    action_to_json(action)["action"],
                    _target(action),
                    action.reason,
                )
            applied.append(action)
        return PassReport(plan=result, applied=tuple(applied))

    def _apply(self, action: Action, executor: ClusterActions) -> None:
        match action:
            case ResetNode():
                executor.reset_node(action)
            case MeetNode():
                executor.meet_node(action)
            case AssignSlots():
                executor.assign_slots(action)
            case Replicate():
                executor.replicate(action)
            case Failover():
                executor.failover(action)
            case ForgetNode():
                executor.forget_node(action)
            case FinishMigration():
                executor.finish_migration(action)
            case ScaleStatefulSet():
                self._platform.scale(action.replicas)
            case DeleteJob():
                self._platform.delete_job(action.job)
            case Wait():
                _log.debug("waiting reason=%s", action.reason)
            case MigrateSlots():
                raise AssertionError("migrations start as Jobs")
            case _:
                assert_never(action)

    def _start_migration(
        self, job: str, result: Plan, addresses: Mapping[str, Address]
    ) -> None:
        moves = [a for a in result.actions if isinstance(a, MigrateSlots)]
        args = migration_args([m for m in moves if m.job == job], addresses=addresses)
        self._platform.start_job(name=job, args=args)


def migration_args(
    moves: Sequence[MigrateSlots], *, addresses: Mapping[str, Address]
) -> list[str]:
    """The ``kredis migrate`` arguments of one Job: a ``--move`` per move."""
    args = ["migrate"]
    for move in moves:
        source = _address_of(move.source, addresses)
        target = _address_of(move.target, addresses)
        args += [
            "--move",
            f"{move.source_id}@{source} {move.target_id}@{target} "
            f"{_slot_text(move.slots)}",
        ]
    return args


def _slot_text(ranges: tuple[SlotRange, ...]) -> str:
    return ",".join(
        str(r.start) if r.start == r.end else f"{r.start}-{r.end}" for r in ranges
    )


def _address_of(pod: str, addresses: Mapping[str, Address]) -> Address:
    address = addresses.get(pod)
    if address is None:
        raise KredisError(f"pod {pod!r} has no address; the migration cannot start")
    return address


def _addresses(
    resource: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]
) -> dict[str, Address]:
    # Every pod listens on the spec's port at its own address; with no valid
    # port the planner reports the spec and nothing is reached.
    port = resource.get("spec", {}).get("basePort")
    if not isinstance(port, int) or isinstance(port, bool):
        return {}
    return {
        str(pod["name"]): Address(host=str(pod["ip"]), port=port)
        for pod in pods
        if pod.get("ip") and not pod.get("terminating")
    }


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _target(action: Action) -> str:
    data = action_to_json(action)
    for key in ("pod", "nodeId", "job", "target", "replicas"):
        if key in data:
            return str(data[key])
    return ""
