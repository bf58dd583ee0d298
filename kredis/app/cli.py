"""The ``kredis`` command line.

Parses arguments, reads files, calls the planner and prints. It holds no
planning logic of its own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import typer

from kredis.app import migrate_cli
from kredis.app.local import LocalOptions, dry_run, open_local
from kredis.app.local_cli import DEFAULT_STATE_DIR, local_app
from kredis.app.logs import LogFormat, setup_logging
from kredis.app.render import Output, plan_to_text
from kredis.domain.context import DEFAULT_NODE_TIMEOUT_MS, PlannerSettings
from kredis.domain.errors import KredisError, SnapshotError
from kredis.domain.planner import plan
from kredis.domain.snapshot import Snapshot, load_snapshot

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="kredis: a Kubernetes operator for Redis Cluster.",
)

EXIT_BAD_INPUT = 2


@app.callback()
def _root(
    log_format: LogFormat = typer.Option(
        LogFormat.TEXT, "--log-format", help="Log lines as text or JSON."
    ),
) -> None:
    setup_logging(log_format)


@app.command("plan")
def plan_command(
    snapshot: Path | None = typer.Option(
        None,
        "--snapshot",
        help="A kredis.snapshot/v1 JSON file.",
        exists=False,
        dir_okay=False,
    ),
    local: bool = typer.Option(
        False, "--local", help="Observe the local cluster of --state-dir instead."
    ),
    state_dir: Path = typer.Option(
        DEFAULT_STATE_DIR, "--state-dir", help="The local cluster's state dir."
    ),
    password_file: Path | None = typer.Option(
        None, "--password-file", help="The local nodes' password file.", dir_okay=False
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
    if local == (snapshot is not None):
        _fail("give exactly one of --snapshot FILE and --local")
    if snapshot is None:
        try:
            result = dry_run(
                open_local(
                    LocalOptions(state_dir=state_dir, password_file=password_file)
                )
            )
        except KredisError as err:
            _fail(f"{state_dir}: {err}")
    else:
        observed = _read_snapshot(snapshot)
        result = plan(observed, PlannerSettings(node_timeout_ms=node_timeout_ms))
    if output is Output.JSON:
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(plan_to_text(result))


def _read_snapshot(snapshot: Path) -> Snapshot:
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
        return load_snapshot(data)
    except SnapshotError as err:
        _fail(f"{snapshot}: invalid snapshot: {err}")
    except KredisError as err:
        _fail(f"{snapshot}: {err}")


app.add_typer(local_app, name="local")
migrate_cli.register(app)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def main() -> None:
    """Console-script entry point."""
    app()
