"""The ports the operator loop drives: where pods live and how Redis is reached.

``Platform`` is Kubernetes, or ``kredis local``'s processes: it reports the
resource, pods, StatefulSet and Jobs, and carries out the actions that are
not Redis commands. ``RedisPort`` observes nodes and runs cluster actions.
Real adapters and test fakes implement them; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from kredis.adapters.redis_client import Address
from kredis.domain.actions import (
    AssignSlots,
    Failover,
    FinishMigration,
    ForgetNode,
    MeetNode,
    Replicate,
    ResetNode,
)


class Platform(Protocol):
    """Where the cluster's pods, StatefulSet, Jobs and status live."""

    def resource(self) -> dict[str, Any]:
        """The Kredis resource: apiVersion, kind, metadata, spec, status."""
        ...

    def pods(self) -> list[dict[str, Any]]:
        """The snapshot's ``pods`` entries."""
        ...

    def stateful_set(self) -> dict[str, Any] | None:
        """The snapshot's ``statefulSet`` entry, None before it exists."""
        ...

    def jobs(self) -> list[dict[str, Any]]:
        """The snapshot's ``jobs`` entries."""
        ...

    def scale(self, replicas: int) -> None:
        """Create the StatefulSet or set its replica count."""
        ...

    def start_job(self, *, name: str, args: Sequence[str]) -> None:
        """Start a Job that runs ``kredis`` with these arguments."""
        ...

    def delete_job(self, name: str) -> None:
        """Delete a Job (stopping it if it still runs)."""
        ...

    def write_status(self, status: dict[str, Any]) -> None:
        """Store the resource's status."""
        ...


class ClusterActions(Protocol):
    """The cluster actions that are Redis commands."""

    def reset_node(self, action: ResetNode) -> None: ...
    def meet_node(self, action: MeetNode) -> None: ...
    def assign_slots(self, action: AssignSlots) -> None: ...
    def replicate(self, action: Replicate) -> None: ...
    def failover(self, action: Failover) -> None: ...
    def forget_node(self, action: ForgetNode) -> None: ...
    def finish_migration(self, action: FinishMigration) -> None: ...


class RedisPort(Protocol):
    """Observes Redis nodes and gives an executor for cluster actions."""

    def observe(self, addresses: Mapping[str, Address]) -> dict[str, dict[str, Any]]:
        """The snapshot's ``redis`` entries, by pod name."""
        ...

    def actions(
        self, *, addresses: Mapping[str, Address], command_pod: str
    ) -> ClusterActions:
        """An executor that reaches pods at these addresses."""
        ...
