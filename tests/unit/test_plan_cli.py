"""Unit: ``kredis plan`` on committed snapshots of real clusters and on bad input.

The snapshots in ``tests/data/snapshots`` were captured from live redis-server
processes by ``tests.data.capture_snapshots``; this module checks the text and
JSON the command prints for each, and that malformed input exits with code 2
and a message naming what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from kredis.app.cli import app

SNAPSHOTS = Path(__file__).resolve().parents[1] / "data" / "snapshots"
# The cluster-node-timeout the captured servers ran with.
NODE_TIMEOUT_MS = "2000"
BAD_INPUT = 2

# File name -> (cluster state, [(action, pod or target)]) of the correct plan.
EXPECTED: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "fresh": (
        "Creating",
        [("assign-slots", f"demo-{n}") for n in range(3)]
        + [("meet-node", f"demo-{n}") for n in range(1, 6)]
        + [("replicate", f"demo-{n}") for n in range(3, 6)],
    ),
    "running": ("Running", []),
    "scale-up": ("Scaling", [("meet-node", "demo-6"), ("meet-node", "demo-7")]),
    "dirty-newcomer": (
        "Scaling",
        [("reset-node", "demo-6"), ("meet-node", "demo-7")],
    ),
    "open-slot": ("Healing", [("finish-migration", "demo-1")]),
    # Redis failed over on its own a moment after this snapshot.
    "failover-pending": ("Healing", [("wait", "")]),
    "failed-over": ("Healing", [("wait", "")]),
    "moved-stale-address": ("Healing", [("meet-node", "demo-5")]),
}


def run_plan(path: Path, output: str = "text") -> Result:
    """Invoke ``kredis plan`` on a snapshot file."""
    arguments = ["plan", "--snapshot", str(path), "--output", output]
    arguments += ["--node-timeout-ms", NODE_TIMEOUT_MS]
    return CliRunner().invoke(app, arguments)


def subject(action: dict[str, Any]) -> str:
    """The pod an action is about: its pod, else its target, else nothing."""
    return str(action.get("pod") or action.get("target") or "")


def snapshot_document(name: str) -> dict[str, Any]:
    """A committed snapshot, decoded."""
    document: dict[str, Any] = json.loads(
        (SNAPSHOTS / f"{name}.json").read_text(encoding="utf-8")
    )
    return document


def test_every_committed_snapshot_has_an_expected_plan() -> None:
    """No snapshot file goes unchecked and no expectation lacks its file."""
    files = {path.stem for path in SNAPSHOTS.glob("*.json")}

    expected = set(EXPECTED)

    assert files == expected


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_json_plan_of_a_committed_snapshot(name: str) -> None:
    """The JSON plan: format, cluster, state, actions with reasons, status."""
    state, actions = EXPECTED[name]

    result = run_plan(SNAPSHOTS / f"{name}.json", "json")

    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["format"] == "kredis.plan/v1"
    assert plan["cluster"] == "default/demo"
    assert plan["clusterState"] == state
    assert [(a["action"], subject(a)) for a in plan["actions"]] == actions
    assert all(isinstance(a["reason"], str) and a["reason"] for a in plan["actions"])
    assert plan["status"]["clusterState"] == state
    assert {n["podName"] for n in plan["status"]["clusterNodes"]} == {
        pod["name"] for pod in snapshot_document(name)["pods"]
    }


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_text_plan_of_a_committed_snapshot(name: str) -> None:
    """The text plan: header, numbered actions each with a reason, end state."""
    state, actions = EXPECTED[name]

    result = run_plan(SNAPSHOTS / f"{name}.json")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"cluster default/demo: {state}"
    numbered = [line.split() for line in lines if line[:4].strip().endswith(".")]
    assert [fields[1] for fields in numbered] == [action for action, _ in actions]
    for fields, (_, pod) in zip(numbered, actions, strict=True):
        assert not pod or f"pod={pod}" in fields or f"target={pod}" in fields
    reasons = [line for line in lines if line.startswith("     because ")]
    assert len(reasons) == len(actions)
    assert all(len(line) > len("     because ") for line in reasons)
    assert f"resulting state: {state}" in lines
    if not actions:
        assert "nothing to do: the cluster matches its spec" in lines


def test_file_that_is_not_json_exits_2_saying_so(tmp_path: Path) -> None:
    """A file that is not JSON is bad input, reported with its position."""
    path = tmp_path / "broken.json"
    path.write_text('{"format": "kredis.snapshot/v1",', encoding="utf-8")

    result = run_plan(path)

    assert result.exit_code == BAD_INPUT
    assert "not JSON" in result.stderr
    assert "line 1" in result.stderr
    assert result.stdout == ""


def test_snapshot_without_pods_exits_2_naming_the_field(tmp_path: Path) -> None:
    """A snapshot missing its required ``pods`` list names ``pods``."""
    document = snapshot_document("running")
    del document["pods"]
    path = tmp_path / "no-pods.json"
    path.write_text(json.dumps(document), encoding="utf-8")

    result = run_plan(path, "json")

    assert result.exit_code == BAD_INPUT
    assert "invalid snapshot: pods:" in result.stderr
    assert result.stdout == ""


def test_snapshot_of_another_format_exits_2_naming_the_field(tmp_path: Path) -> None:
    """A wrong ``format`` is rejected, naming the field and the expected value."""
    document = snapshot_document("running")
    document["format"] = "kredis.snapshot/v0"
    path = tmp_path / "old-format.json"
    path.write_text(json.dumps(document), encoding="utf-8")

    result = run_plan(path)

    assert result.exit_code == BAD_INPUT
    assert "invalid snapshot: format:" in result.stderr
    assert "kredis.snapshot/v1" in result.stderr
    assert "kredis.snapshot/v0" in result.stderr
    assert result.stdout == ""
