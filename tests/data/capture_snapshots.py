"""Capture the committed snapshots in ``tests/data/snapshots`` from live Redis.

Run from the repository root with ``.venv/bin/python -m
tests.data.capture_snapshots``. It starts redis-server processes on loopback
addresses (see ``tests.support.real_cluster``), builds the same situations as
the integration tests, writes one ``kredis.snapshot/v1`` file per situation
and kills every server it started. The servers run with a cluster-node-timeout
of ``NODE_TIMEOUT_MS``; plan the files with ``--node-timeout-ms`` set to it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.support.real_cluster import (
    NODE_TIMEOUT_MS,
    HarnessError,
    RedisHarness,
    key_slot,
)
from tests.support.real_scenarios import (
    SPEC_4X1,
    create_by_plan,
    dirty_newcomer,
    failover_pending,
    move_out_of_reach,
    silence_ms,
    slot_left_open,
    start_pods,
    watch_master_failure,
)

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
FAILOVER_ATTEMPTS = 8


def capture_all(harness: RedisHarness) -> dict[str, dict[str, Any]]:
    """Every committed situation, by file name without ``.json``."""
    creation = create_by_plan(harness, "create")
    cluster = creation.cluster
    newcomers = start_pods(harness, "newcomers", [6, 7])
    dirty = dirty_newcomer(harness, "dirty", 6)
    documents = {
        "fresh": creation.fresh,
        "running": cluster.capture(),
        "scale-up": cluster.capture(*newcomers, spec=SPEC_4X1, generation=2),
        "dirty-newcomer": cluster.capture(
            dirty, newcomers[1], spec=SPEC_4X1, generation=2
        ),
    }
    with slot_left_open(cluster, key_slot("key:0")):
        documents["open-slot"] = cluster.capture()

    pending, after = _late_failover(harness)
    documents["failover-pending"] = pending
    documents["failed-over"] = after

    stale = create_by_plan(harness, "stale").cluster
    move_out_of_reach(harness, stale, stale.pod(5))
    documents["moved-stale-address"] = stale.capture()
    return documents


def _late_failover(harness: RedisHarness) -> tuple[dict[str, Any], dict[str, Any]]:
    """Snapshots of a killed master: late before Redis' failover, and after.

    The first is the last one in which every node flags the master fail, it
    still holds its slots and nobody has heard from it for twice the node
    timeout, although Redis is about to fail over on its own. Redis' timing
    varies, so a few kills may be needed to catch that moment.
    """
    for attempt in range(FAILOVER_ATTEMPTS):
        cluster = create_by_plan(harness, f"failover-{attempt}").cluster
        failure = watch_master_failure(cluster, cluster.pod(1))
        late = [
            document
            for document in failure.during
            if failover_pending(document, failure.dead_id)
            and silence_ms(document, failure.dead_id) >= 2 * NODE_TIMEOUT_MS
        ]
        for server in cluster.live():
            server.kill()
        if late:
            return late[-1], failure.after
    raise HarnessError(
        f"Redis failed over within twice the node timeout in all "
        f"{FAILOVER_ATTEMPTS} attempts; run again"
    )


def main() -> None:
    """Capture every situation and write the files."""
    with (
        tempfile.TemporaryDirectory(prefix="kredis-capture-") as root,
        RedisHarness(Path(root)) as harness,
    ):
        documents = capture_all(harness)
    SNAPSHOTS.mkdir(exist_ok=True)
    for name, document in documents.items():
        path = SNAPSHOTS / f"{name}.json"
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        sys.stdout.write(f"wrote {path}\n")
    sys.stdout.write(
        f"the servers ran with cluster-node-timeout {NODE_TIMEOUT_MS}; plan with "
        f"--node-timeout-ms {NODE_TIMEOUT_MS}\n"
    )


if __name__ == "__main__":
    main()
