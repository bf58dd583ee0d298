"""``kredis local``: a Redis Cluster run as local processes, managed by kredis.

Each command reads its options, builds the adapters through ``local`` and
prints. Bad input (an invalid manifest, a missing binary, a port in use, a
state dir of another cluster) ends with one line on stderr and exit code 2,
before anything is changed.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import typer

from kredis.adapters.redis_client import Address
from kredis.adapters.spec_file import read_kredis_file
from kredis.app.local import (
    Local,
    LocalClusterError,
    LocalOptions,
    adopt,
    check_manifest_spec,
    converge,
    open_local,
)
from kredis.app.reconcile import PassReport
from kredis.app.render import Output
from kredis.domain.actions import action_to_json
from kredis.domain.errors import KredisError
from kredis.domain.nodes import ClusterView
from kredis.domain.slots import count_slots, format_ranges

local_app = typer.Typer(
    no_args_is_help=True,
    help="Run a Redis Cluster as local redis-server processes managed by kredis.",
)
_log = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
DEFAULT_STATE_DIR = Path(".kredis")
STATE_DIR = typer.Option(
    DEFAULT_STATE_DIR, "--state-dir", help="Where the pods' data and state live."
)
PASSWORD_FILE = typer.Option(
    None,
    "--password-file",
    help="A file whose first line is the password every node requires.",
    dir_okay=False,
)
MANIFEST = typer.Option(..., "-f", "--file", help="A Kredis YAML manifest.")
TIMEOUT = typer.Option(300.0, "--timeout", help="Seconds to wait for convergence.")


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _checked_manifest(file: Path) -> dict[str, Any]:
    """The Kredis file's manifest with a valid spec, or a one-line error."""
    try:
        manifest = read_kredis_file(file)
        check_manifest_spec(manifest, source=str(file))
    except KredisError as err:
        _fail(str(err))
    return manifest


def _open(state_dir: Path, password_file: Path | None) -> Local:
    try:
        return open_local(
            LocalOptions(state_dir=state_dir, password_file=password_file)
        )
    except KredisError as err:
        _fail(str(err))


def _progress(report: PassReport) -> None:
    plan = report.plan
    kinds = [action_to_json(a)["action"] for a in report.applied]
    done = ", ".join(k for k in kinds if k != "wait")
    _log.info(
        "pass state=%s applied=%s summary=%s",
        plan.cluster_state.value,
        done or "nothing",
        plan.status.last_cluster_operation,
    )


def _reconcile_to(
    file: Path, state_dir: Path, password_file: Path | None, timeout: float
) -> None:
    manifest = _checked_manifest(file)
    local = _open(state_dir, password_file)
    try:
        generation = adopt(local, manifest)
    except KredisError as err:
        _fail(str(err))
    _log.info(
        "reconciling cluster=%s generation=%d state_dir=%s",
        manifest["metadata"]["name"],
        generation,
        state_dir,
    )
    try:
        report = converge(
            local,
            timeout_s=timeout,
            clock=time.monotonic,
            sleep=time.sleep,
            on_pass=_progress,
        )
    except KredisError as err:
        _fail(str(err), EXIT_FAILED)
    if not report.converged:
        why = report.failure or "; ".join(a.reason for a in report.plan.actions)
        _fail(
            f"not converged after {timeout:.0f} s: "
            f"{report.plan.cluster_state.value}: {why}",
            EXIT_FAILED,
        )
    _print_status(local, Output.TEXT)
    first = local.runtime.address_of(f"{manifest['metadata']['name']}-0")
    typer.echo(f"\nconnect with: redis-cli -c -h {first.host} -p {first.port}")


@local_app.command("up")
def up_command(
    file: Path = MANIFEST,
    timeout: float = TIMEOUT,
    state_dir: Path = STATE_DIR,
    password_file: Path | None = PASSWORD_FILE,
) -> None:
    """Start what is missing and reconcile until the cluster matches the spec."""
    _reconcile_to(file, state_dir, password_file, timeout)


@local_app.command("apply")
def apply_command(
    file: Path = MANIFEST,
    timeout: float = TIMEOUT,
    state_dir: Path = STATE_DIR,
    password_file: Path | None = PASSWORD_FILE,
) -> None:
    """Change the spec of a running local cluster and reconcile to it."""
    if not (state_dir / "resource.json").exists():
        _fail(f"no local cluster in {state_dir}; start one with `kredis local up`")
    _reconcile_to(file, state_dir, password_file, timeout)


@local_app.command("run")
def run_command(
    file: Path = MANIFEST,
    state_dir: Path = STATE_DIR,
    password_file: Path | None = PASSWORD_FILE,
    interval: float = typer.Option(1.0, "--interval", help="Seconds between passes."),
) -> None:
    """The operator loop in the foreground until Ctrl-C; follows file edits."""
    manifest = _checked_manifest(file)
    local = _open(state_dir, password_file)
    try:
        adopt(local, manifest)
    except KredisError as err:
        _fail(str(err))
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    seen = file.stat().st_mtime_ns
    _log.info("operator loop started file=%s state_dir=%s", file, state_dir)
    while not stopping:
        seen = _follow_edits(local, file, seen)
        try:
            restarted = local.runtime.kubelet_pass()
            for pod in restarted:
                _log.info("pod restarted pod=%s", pod)
            report = local.reconciler.run_pass()
            if report.applied or report.failure:
                _progress(report)
        except KredisError as err:
            _log.error("pass failed error=%s", err)
            report = None
        if report is None or not report.plan.mutating or report.failure:
            _sleep_unless(lambda: stopping, interval)
    _log.info("operator loop stopped; the cluster keeps running")


def _follow_edits(local: Local, file: Path, seen: int) -> int:
    try:
        mtime = file.stat().st_mtime_ns
    except OSError as err:
        _log.warning("spec file unreadable file=%s error=%s", file, err)
        return seen
    if mtime == seen:
        return seen
    try:
        manifest = read_kredis_file(file)
        check_manifest_spec(manifest, source=str(file))
        generation = adopt(local, manifest)
    except KredisError as err:
        _log.error("spec edit refused error=%s", err)
        return mtime
    _log.info("spec edit applied file=%s generation=%d", file, generation)
    return mtime


def _sleep_unless(stopping: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stopping() and time.monotonic() < deadline:
        time.sleep(0.05)


@local_app.command("status")
def status_command(
    output: Output = typer.Option(Output.TEXT, "--output", "-o"),
    state_dir: Path = STATE_DIR,
    password_file: Path | None = PASSWORD_FILE,
) -> None:
    """Per pod: address, role, node id, master, slots, keys, process state."""
    local = _open(state_dir, password_file)
    if local.platform.applied() is None:
        _fail(f"no local cluster in {state_dir}; start one with `kredis local up`")
    _print_status(local, output)


def _print_status(local: Local, output: Output) -> None:
    snapshot = local.reconciler.observe()
    processes = {p: s.value for p, s in local.runtime.process_states().items()}
    port = snapshot["kredis"]["spec"]["basePort"]
    rows = []
    for pod in snapshot["pods"]:
        rows.append(_row(pod, port, snapshot["redis"].get(pod["name"]), processes))
    by_address = {r["address"]: r["pod"] for r in rows}
    for row in rows:
        row["masterPod"] = by_address.get(row["masterPod"], row["masterPod"])
    status = snapshot["kredis"]["status"]
    data = {
        "cluster": snapshot["kredis"]["metadata"]["name"],
        "clusterState": status.get("clusterState", ""),
        "lastClusterOperation": status.get("lastClusterOperation", ""),
        "pods": rows,
        "endpoints": [r["address"] for r in rows if r["address"]],
    }
    if output is Output.JSON:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"cluster {data['cluster']}: {data['clusterState'] or 'unknown'}")
    if data["lastClusterOperation"]:
        typer.echo(f"  {data['lastClusterOperation']}")
    header = ("POD", "ADDRESS", "PROCESS", "ROLE", "NODE ID", "MASTER", "SLOTS", "KEYS")
    table = [header] + [
        (
            r["pod"],
            r["address"],
            r["process"],
            r["role"],
            r["nodeId"][:12],
            r["masterPod"] or r["masterId"][:12],
            r["slotsText"],
            "" if r["keys"] is None else str(r["keys"]),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        typer.echo(
            "  ".join(
                cell.ljust(w) for cell, w in zip(line, widths, strict=True)
            ).rstrip()
        )


def _row(
    pod: dict[str, Any],
    port: int,
    observed: dict[str, Any] | None,
    processes: dict[str, str],
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "pod": pod["name"],
        "address": str(Address(pod["ip"], port)) if pod.get("ip") else "",
        "process": processes.get(pod["name"], "unknown"),
        "role": "unreachable",
        "nodeId": "",
        "masterId": "",
        "masterPod": "",
        "slots": 0,
        "slotsText": "",
        "keys": None,
    }
    if not observed or not observed.get("reachable"):
        return row
    view = ClusterView.parse(observed["clusterNodes"])
    me = view.myself
    row.update(
        role="master" if me.is_master else "replica",
        nodeId=me.node_id,
        masterId=me.master_id or "",
        slots=count_slots(me.slots),
        slotsText=format_ranges(me.slots) if me.slots else "",
        keys=observed.get("dbsize"),
    )
    if me.master_id:
        master = view.by_id.get(me.master_id)
        if master is not None:
            row["masterPod"] = f"{master.ip}:{master.port}"
    return row


@local_app.command("kill")
def kill_command(
    pod: str = typer.Argument(..., help="The pod to kill, such as demo-1."),
    lose_data: bool = typer.Option(
        False, "--lose-data", help="Wipe its data dir (back on a new address)."
    ),
    new_ip: bool = typer.Option(False, "--new-ip", help="A new address next start."),
    state_dir: Path = STATE_DIR,
) -> None:
    """Chaos: kill -9 a pod's process, optionally losing its data or address."""
    local = _open(state_dir, None)
    try:
        local.runtime.kill(pod, lose_data=lose_data, new_ip=new_ip)
    except KredisError as err:
        _fail(str(err))
    typer.echo(f"killed {pod}" + (" and wiped its data" if lose_data else ""))


@local_app.command("down")
def down_command(
    purge: bool = typer.Option(False, "--purge", help="Delete the state dir too."),
    state_dir: Path = STATE_DIR,
) -> None:
    """Stop every process of the local cluster."""
    local = _open(state_dir, None)
    try:
        local.runtime.down(purge=purge)
    except LocalClusterError as err:
        _fail(str(err))
    except KredisError as err:
        _fail(str(err), EXIT_FAILED)
    typer.echo("stopped" + (f"; removed {state_dir}" if purge else ""))
