"""Helpers for tests that plan: load a world or document and plan it."""

from __future__ import annotations

from typing import Any

from kredis.domain.actions import Action, ActionKind, kind_of
from kredis.domain.context import PlannerSettings
from kredis.domain.planner import Plan, plan
from kredis.domain.snapshot import load_snapshot
from tests.support.world import World


def plan_world(world: World | dict[str, Any], **settings: Any) -> Plan:
    """Plan a world (or a snapshot document) with default settings."""
    document = world.snapshot() if isinstance(world, World) else world
    return plan(load_snapshot(document), PlannerSettings(**settings))


def kinds(result: Plan) -> list[ActionKind]:
    """The kinds of a plan's actions, in order."""
    return [kind_of(action) for action in result.actions]


def of_kind(result: Plan, kind: ActionKind) -> list[Action]:
    """A plan's actions of one kind."""
    return [a for a in result.actions if kind_of(a) is kind]
