"""The ``kredis`` command line.

Parses arguments, reads files, calls the planner and prints. It holds no
planning logic of its own.
"""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path

import typer

from kredis.app.logs import LogFormat, setup_logging
from kredis.app.render import plan_to_text
from kredis.domain.context import DEFAULT_NODE_TIMEOUT_MS, PlannerSettings
from kredis.domain.errors import KredisError, SnapshotError
from kredis.domain.planner import plan
from kredis.domain.snapshot import load_snapshot

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="kredis: a Kubernetes operator for Redis Cluster.",
)

EXIT_BAD_INPUT = 2


class Output(enum.Enum):
    """Output formats of the commands that print data."""

    TEXT = "text"
    JSON = "json"


@app.callback()
def _root(
    log_format: LogFormat = typer.Option(
        LogFormat.TEXT, "--log-format", help="Log lines as text or JSON."
    ),
) -> None:
    setup_logging(log_format)


@app.command("plan")
def plan_command(
    snapshot: Path = typer.Option(
        ...,
        "--snapshot",
        help="A kredis.snapshot/v1 JSON file.",
        exists=False,
        dir_okay=False,
    ),
    output: Output = typer.Option(Output.TEXT, "--output", "-o"),
    node_timeout_ms: int = typer.Option(
        DEFAULT_NODE_TIMEOUT_MS,
        "--node-timeout-ms",
        help="The cluster's cluster-node-timeout, for failover waits.",
        min=1,
    ),
) -> None:
    """Print the plan for an observed snapshot without applying anything."""
    try:
        text = snapshot.read_text(encoding="utf-8")
    except OSError as err:
        _fail(f"cannot read snapshot {str(snapshot)!r}: {err.strerror}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        _fail(
            f"{snapshot}: not JSON (line {err.lineno}, column {err.colno}: "
            f"{err.msg}); expected a kredis.snapshot/v1 document"
        )
    try:
        observed = load_snapshot(data)
    except SnapshotError as err:
        _fail(f"{snapshot}: invalid snapshot: {err}")
    except KredisError as err:
        _fail(f"{snapshot}: {err}")
    result = plan(observed, PlannerSettings(node_timeout_ms=node_timeout_ms))
    if output is Output.JSON:
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(plan_to_text(result))


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def main() -> None:
    """Console-script entry point."""
    app()
