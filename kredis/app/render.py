"""Plans as text for people: a numbered list of actions with their reasons.

Presentation only; the JSON form comes from the domain's ``to_json``.
"""

from __future__ import annotations

import enum

from kredis.domain.actions import action_to_json
from kredis.domain.planner import Plan


class Output(enum.Enum):
    """Output formats of the commands that print data."""

    TEXT = "text"
    JSON = "json"


_DETAIL_KEYS = (
    "pod",
    "masterPod",
    "source",
    "target",
    "slots",
    "configEpoch",
    "fromNodeId",
    "mode",
    "nodeId",
    "replicas",
    "job",
)


def plan_to_text(plan: Plan) -> str:
    """Render a plan: header, numbered actions with reasons, resulting state."""
    lines = [f"cluster {plan.cluster}: {plan.cluster_state.value}"]
    if plan.command_pod:
        lines.append(f"command pod: {plan.command_pod}")
    if not plan.actions:
        lines.append("nothing to do: the cluster matches its spec")
    for number, action in enumerate(plan.actions, start=1):
        data = action_to_json(action)
        details = " ".join(
            f"{key}={_show(data[key])}" for key in _DETAIL_KEYS if key in data
        )
        lines.append(f"{number:>3}. {data['action']} {details}".rstrip())
        lines.append(f"     because {data['reason']}")
    status = plan.status
    lines.append(f"resulting state: {plan.cluster_state.value}")
    if status.last_cluster_operation:
        lines.append(f"operation: {status.last_cluster_operation}")
    if status.migration is not None:
        migration = status.migration
        lines.append(
            f"migration: {migration.job} {migration.slots_moved}/"
            f"{migration.slots_total} slots"
        )
    lines.extend(f"warning: {warning}" for warning in status.warnings)
    return "\n".join(lines) + "\n"


def _show(value: object) -> str:
    if isinstance(value, list):
        return ",".join(
            f"{a}-{b}" if a != b else str(a)
            for a, b in value  # slot ranges
        )
    return str(value)
