"""``kredis local``'s composition root: the loop over local processes.

Builds the real adapters (the process runtime, the Redis adapter) for one
state directory, keeps the applied Kredis resource with its generation, and
runs passes until the cluster converges or the time is up. The commands in
``local_cli`` call these functions; planning stays in the domain.
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from kredis.adapters.local_runtime import LocalRuntime
from kredis.adapters.local_state import read_json, write_json
from kredis.adapters.redis_client import ConnectionSettings, read_credentials
from kredis.adapters.redis_cluster import RedisCluster, engine_resume
from kredis.app.reconcile import PassReport, Reconciler
from kredis.domain.context import PlannerSettings
from kredis.domain.errors import KredisError
from kredis.domain.planner import Plan
from kredis.domain.spec import check_spec

RESOURCE_FILE = "resource.json"
_log = logging.getLogger(__name__)


class LocalClusterError(KredisError):
    """A ``kredis local`` command cannot go on; nothing was changed."""


class LocalPlatform:
    """Pods, StatefulSet, Jobs and status of a cluster run as processes."""

    def __init__(
        self,
        runtime: LocalRuntime,
        *,
        state_dir: Path,
        password_file: Path | None,
    ) -> None:
        self._runtime = runtime
        self._path = state_dir / RESOURCE_FILE
        self._password_file = password_file

    def applied(self) -> dict[str, Any] | None:
        """The last applied resource, without status, or None."""
        data = read_json(self._path)
        return data if isinstance(data, dict) else None

    def apply(self, manifest: dict[str, Any]) -> int:
        """Store a manifest; a changed spec gets the next generation."""
        before = self.applied()
        generation = 1
        if before is not None:
            generation = int(before["metadata"].get("generation", 1))
            if before.get("spec") != manifest["spec"]:
                generation += 1
        resource = copy.deepcopy(manifest)
        resource["metadata"]["generation"] = generation
        resource["metadata"].setdefault("uid", "local")
        write_json(self._path, resource)
        return generation

    def resource(self) -> dict[str, Any]:
        resource = self.applied()
        if resource is None:
            raise LocalClusterError("no Kredis resource applied in this state dir")
        resource["status"] = self._runtime.read_status()
        return resource

    def pods(self) -> list[dict[str, Any]]:
        return self._runtime.pods()

    def stateful_set(self) -> dict[str, Any] | None:
        return self._runtime.stateful_set()

    def jobs(self) -> list[dict[str, Any]]:
        return self._runtime.jobs()

    def scale(self, replicas: int) -> None:
        self._runtime.scale(replicas)

    def start_job(self, *, name: str, args: Sequence[str]) -> None:
        # The Job gets the password by file name in its environment.
        env = {}
        if self._password_file is not None:
            env["KREDIS_REDIS_PASSWORD_FILE"] = str(self._password_file.resolve())
        self._runtime.start_job(
            name=name,
            argv=[sys.executable, "-m", "kredis", "--log-format", "json", *args],
            labels={"app.kubernetes.io/managed-by": "kredis"},
            annotations={},
            env=env,
        )

    def delete_job(self, name: str) -> None:
        self._runtime.delete_job(name)

    def write_status(self, status: dict[str, Any]) -> None:
        self._runtime.write_status(status)


@attrs.frozen
class LocalOptions:
    """Where the local cluster lives and how its nodes are reached."""

    state_dir: Path
    password_file: Path | None = None
    redis_server: str = "redis-server"


@attrs.frozen
class Local:
    """The adapters of one local cluster, built once per command."""

    runtime: LocalRuntime
    platform: LocalPlatform
    reconciler: Reconciler


def open_local(options: LocalOptions) -> Local:
    """Build the adapters for a state directory; connects to nothing yet."""
    credentials = read_credentials(password_file=options.password_file)
    settings = ConnectionSettings(credentials=credentials)
    runtime = LocalRuntime(
        options.state_dir,
        redis_server=options.redis_server,
        password_file=options.password_file,
    )
    platform = LocalPlatform(
        runtime, state_dir=options.state_dir, password_file=options.password_file
    )
    reconciler = Reconciler(
        platform=platform,
        redis=RedisCluster(settings, resume=engine_resume(settings)),
        settings=PlannerSettings(node_timeout_ms=runtime.node_timeout_ms),
    )
    return Local(runtime=runtime, platform=platform, reconciler=reconciler)


def check_manifest_spec(manifest: dict[str, Any], *, source: str) -> None:
    """Refuse a manifest whose spec the planner would reject."""
    check = check_spec(manifest["spec"])
    if check.spec is None:
        raise LocalClusterError(
            f"{source}: invalid spec: {'; '.join(check.problems)}; fix the file, "
            "nothing was changed"
        )


def adopt(local: Local, manifest: dict[str, Any]) -> int:
    """Claim the state dir for the manifest's cluster and store it."""
    metadata = manifest["metadata"]
    spec = manifest["spec"]
    local.runtime.claim(
        namespace=metadata["namespace"],
        name=metadata["name"],
        base_port=spec["basePort"],
        max_memory=spec.get("maxMemory") or "",
    )
    return local.platform.apply(manifest)


def converge(
    local: Local,
    *,
    timeout_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    on_pass: Callable[[PassReport], None],
    pause_s: float = 0.3,
) -> PassReport:
    """Run passes until the cluster converges; the last report either way."""
    deadline = clock() + timeout_s
    while True:
        local.runtime.kubelet_pass()
        report = local.reconciler.run_pass()
        on_pass(report)
        if report.converged or clock() >= deadline:
            return report
        if not report.applied or not report.plan.mutating or report.failure:
            sleep(pause_s)


def dry_run(local: Local) -> Plan:
    """Observe the local cluster and plan, applying nothing."""
    plan, _ = local.reconciler.plan_once()
    return plan
