"""Integration: the operator loop builds and reshapes clusters of real servers.

The loop (observe, plan, apply) runs with the real Redis adapter against
redis-server processes; only the platform (pods, StatefulSet) is played by
the test harness. No redis-cli, no hand-made topology.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kredis.adapters.redis_client import ConnectionSettings
from kredis.adapters.redis_cluster import RedisCluster
from kredis.app.reconcile import PassReport, Reconciler
from kredis.domain.actions import FinishMigration
from kredis.domain.context import PlannerSettings
from tests.support.harness_platform import HarnessPlatform
from tests.support.real_cluster import (
    RedisHarness,
    redis_available,
    spec_of,
    wait_converged,
    write_keys,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not redis_available(), reason="needs redis-server"),
]

NODE_TIMEOUT_MS = 1000
MAX_PASSES = 60
WAIT_S = 0.25


def _no_resume(action: FinishMigration, *_: object) -> None:
    raise AssertionError(f"no open slot expected: {action}")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[RedisHarness]:
    with RedisHarness(tmp_path) as started:
        yield started


def _reconciler(platform: HarnessPlatform) -> Reconciler:
    return Reconciler(
        platform=platform,
        redis=RedisCluster(ConnectionSettings(), resume=_no_resume),
        settings=PlannerSettings(node_timeout_ms=NODE_TIMEOUT_MS),
    )


def _converge(reconciler: Reconciler) -> list[PassReport]:
    reports = []
    for _ in range(MAX_PASSES):
        report = reconciler.run_pass()
        reports.append(report)
        if report.converged:
            return reports
        if not report.plan.mutating:
            time.sleep(WAIT_S)
    last = reports[-1]
    raise AssertionError(
        f"no convergence in {MAX_PASSES} passes: {last.plan.to_json()['actions']} "
        f"{last.failure}"
    )


def test_loop_creates_a_3x1_cluster_from_fresh_servers(
    harness: RedisHarness,
) -> None:
    """From no pods at all, the loop ends with 3 masters and 3 replicas, ok."""
    platform = HarnessPlatform(
        harness, group="create", spec=spec_of(3, 1), node_timeout_ms=NODE_TIMEOUT_MS
    )

    _converge(_reconciler(platform))

    servers = [platform.server(n) for n in range(6)]
    wait_converged(servers)
    roles = [s.call("ROLE").split()[0] for s in servers]
    assert sorted(roles) == ["master"] * 3 + ["slave"] * 3
    assert platform.status["clusterState"] == "Running"


def test_loop_adds_and_then_removes_replicas_keeping_every_key(
    harness: RedisHarness,
) -> None:
    """3x0 -> 3x1 -> 3x0: replicas join, then leave by forget and shrink."""
    platform = HarnessPlatform(
        harness, group="replicas", spec=spec_of(3, 0), node_timeout_ms=NODE_TIMEOUT_MS
    )
    reconciler = _reconciler(platform)
    _converge(reconciler)
    masters = [platform.server(n) for n in range(3)]
    write_keys(masters, 300)

    platform.set_spec(replicas=1)
    _converge(reconciler)
    wait_converged([platform.server(n) for n in range(6)])
    platform.set_spec(replicas=0)
    _converge(reconciler)

    assert sorted(platform.servers) == [0, 1, 2]
    wait_converged(masters)
    assert sum(int(s.value("DBSIZE")) for s in masters) == 300
    for server in masters:
        assert server.call("CLUSTER", "NODES").count("\n") == 3
