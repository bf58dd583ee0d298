"""The Redis side of the operator loop: observation and cluster actions.

Binds the observer and the action executor to one set of connection
settings; the operator loop sees only this and the platform.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kredis.adapters.redis_actions import (
    ActionTimeouts,
    RedisActions,
    ResumeMigration,
)
from kredis.adapters.redis_client import Address, ConnectionSettings
from kredis.adapters.redis_migration import (
    MigrationProgress,
    MigrationTuning,
    Move,
    migrate,
)
from kredis.adapters.redis_observer import observe_nodes
from kredis.domain.actions import FinishMigration


class RedisCluster:
    """Reaches a cluster's nodes with one set of connection settings."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        resume: ResumeMigration,
        timeouts: ActionTimeouts | None = None,
    ) -> None:
        self._settings = settings
        self._resume = resume
        self._timeouts = timeouts

    def observe(self, addresses: Mapping[str, Address]) -> dict[str, dict[str, Any]]:
        """The snapshot's ``redis`` entries, by pod name."""
        return observe_nodes(addresses, settings=self._settings)

    def actions(
        self, *, addresses: Mapping[str, Address], command_pod: str
    ) -> RedisActions:
        """An executor for the pods at these addresses."""
        return RedisActions(
            addresses=addresses,
            settings=self._settings,
            command_pod=command_pod,
            resume=self._resume,
            timeouts=self._timeouts,
        )


def engine_resume(
    settings: ConnectionSettings, tuning: MigrationTuning | None = None
) -> ResumeMigration:
    """Open-slot repair by the migration engine, which resumes half-moved slots."""
    chosen = tuning or MigrationTuning()

    def resume(action: FinishMigration, source: Address, target: Address) -> None:
        move = Move(
            source=source,
            target=target,
            slots=action.slots,
            source_id=action.source_id,
            target_id=action.target_id,
        )
        migrate([move], settings=settings, tuning=chosen, on_progress=_quiet)

    return resume


def _quiet(progress: MigrationProgress) -> None:
    # Open-slot repair moves a few slots; the Job's progress is not needed.
    del progress
