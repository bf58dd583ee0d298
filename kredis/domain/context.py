"""What every planning step reads (``Context``) and returns (``Outcome``).

Plain values shared by the create, heal and shape steps, so that no step
reaches back into the snapshot on its own.
"""

from __future__ import annotations

import hashlib
import json

import attrs

from kredis.domain.actions import Action, is_mutating
from kredis.domain.snapshot import Snapshot
from kredis.domain.spec import KredisSpec
from kredis.domain.status import ClusterState, MigrationStatus, SlotMove
from kredis.domain.topology import PodNode, Topology

JOB_NAME_LIMIT = 63
DEFAULT_NODE_TIMEOUT_MS = 15_000
MIGRATION_ATTEMPTS = 3


@attrs.frozen
class PlannerSettings:
    """Knobs of the planner that are not part of the Kredis spec."""

    node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS
    balance_tolerance: float = 0.02
    migration_attempts: int = MIGRATION_ATTEMPTS


@attrs.frozen
class Context:
    """The inputs of one planning pass."""

    snapshot: Snapshot
    spec: KredisSpec
    topology: Topology
    settings: PlannerSettings

    @property
    def name(self) -> str:
        """The Kredis name."""
        return self.snapshot.resource.name

    @property
    def pod_count(self) -> int:
        """Pods the spec asks for."""
        return self.spec.pod_count

    def staying(self, pod_node: PodNode) -> bool:
        """Whether a pod keeps its place after a shrink (ordinal below count)."""
        return pod_node.ordinal < self.pod_count

    @property
    def staying_pods(self) -> tuple[PodNode, ...]:
        """Pods with ordinals the spec keeps, in ordinal order."""
        return tuple(p for p in self.topology.pods if self.staying(p))

    @property
    def leaving_pods(self) -> tuple[PodNode, ...]:
        """Pods with ordinals beyond the spec, in ordinal order."""
        return tuple(p for p in self.topology.pods if not self.staying(p))


@attrs.frozen
class Outcome:
    """What a planning step decided: actions, state and what to report."""

    actions: tuple[Action, ...]
    state: ClusterState
    summary: str
    problem: str = ""
    migration: MigrationStatus | None = None
    migration_failures: int = 0
    formed: bool = True
    converged: bool = False

    @property
    def mutating(self) -> bool:
        """Whether any action changes something."""
        return any(is_mutating(action) for action in self.actions)


def migration_job_prefix(cluster_name: str) -> str:
    """The name prefix of every migration Job of a cluster (63 characters max)."""
    base = cluster_name[: JOB_NAME_LIMIT - len("-migrate-") - 8]
    return f"{base}-migrate-"


def migration_job_name(cluster_name: str, moves: tuple[SlotMove, ...]) -> str:
    """A deterministic Job name: a hash of exactly what the Job moves."""
    wire = json.dumps([move.to_json() for move in moves], sort_keys=True)
    digest = hashlib.sha256(wire.encode()).hexdigest()[:8]
    return migration_job_prefix(cluster_name) + digest
