"""Integration: ``kredis local`` manages live clusters under continuous writes.

Pods are real redis-server processes on loopback addresses, migrations run
as real ``kredis migrate`` subprocesses, and a writer records every write
the cluster acknowledged and reads them all back after each step.
``redis-cli --cluster check`` must be clean whenever the loop says converged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kredis.adapters.redis_client import Address, ConnectionSettings, RedisNode
from kredis.app.local import Local, LocalOptions, adopt, converge, open_local
from kredis.app.reconcile import PassReport
from kredis.domain.nodes import ClusterView
from tests.support.writer import ClusterWriter

pytestmark = [pytest.mark.integration]

CONVERGE_S = 240.0
REDIS_CLI = "redis-cli"
KREDIS = (sys.executable, "-m", "kredis")


def _manifest(name: str, masters: int, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "kredis.io/v1alpha1",
        "kind": "Kredis",
        "metadata": {"name": name, "namespace": "itest"},
        "spec": {
            "masters": masters,
            "replicas": replicas,
            "basePort": 6379,
            "image": "redis:7.0",
            "maxMemory": "128mb",
        },
    }


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "state"
    yield path
    if (path / "cluster.json").exists():
        open_local(LocalOptions(state_dir=path)).runtime.down(purge=True)


def _open(state_dir: Path) -> Local:
    return open_local(LocalOptions(state_dir=state_dir))


def _reconcile(local: Local, manifest: dict[str, Any]) -> PassReport:
    adopt(local, manifest)
    report = converge(
        local,
        timeout_s=CONVERGE_S,
        clock=time.monotonic,
        sleep=time.sleep,
        on_pass=lambda _: None,
    )
    assert report.converged, (report.failure, report.plan.to_json()["actions"])
    return report


def _addresses(local: Local) -> dict[str, Address]:
    return {
        pod["name"]: Address(pod["ip"], 6379)
        for pod in local.runtime.pods()
        if pod["ip"]
    }


def _endpoints(local: Local) -> list[tuple[str, int]]:
    return [(a.host, a.port) for a in _addresses(local).values()]


def _view(address: Address) -> ClusterView:
    with RedisNode(address, ConnectionSettings()) as node:
        return ClusterView.parse(node.text("CLUSTER", "NODES"))


def _check_clean(local: Local) -> None:
    """redis-cli --cluster check agrees on slots, all covered, nothing open."""
    first = next(iter(_addresses(local).values()))
    deadline = time.monotonic() + 30
    while True:
        done = subprocess.run(
            [REDIS_CLI, "--cluster", "check", str(first)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        out = done.stdout
        clean = (
            done.returncode == 0
            and "[OK] All nodes agree about slots configuration." in out
            and "[OK] All 16384 slots covered." in out
            and "[WARNING]" not in out
        )
        if clean:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"redis-cli --cluster check is not clean:\n{out}")
        time.sleep(0.5)


def _roles(local: Local) -> dict[str, str]:
    roles = {}
    for pod, address in _addresses(local).items():
        me = _view(address).myself
        roles[pod] = "master" if me.is_master else "replica"
    return roles


def _wait_replicas_synced(local: Local) -> None:
    deadline = time.monotonic() + 30
    for address in _addresses(local).values():
        with RedisNode(address, ConnectionSettings()) as node:
            while True:
                info = node.text("INFO", "replication")
                if "role:master" in info or "master_link_status:up" in info:
                    offsets = _offsets(info)
                    if "role:master" not in info or len(set(offsets)) <= 1:
                        break
                if time.monotonic() > deadline:
                    raise AssertionError(f"{address} never synced:\n{info}")
                time.sleep(0.05)


def _wait_until_master(address: Address) -> None:
    deadline = time.monotonic() + 60
    while not _view(address).myself.is_master:
        if time.monotonic() > deadline:
            raise AssertionError(f"{address} was never promoted")
        time.sleep(0.1)


def _offsets(info: str) -> list[str]:
    # A master's own offset and each replica's acknowledged offset.
    found = []
    for line in info.splitlines():
        if line.startswith("master_repl_offset:"):
            found.append(line.split(":", 1)[1])
        elif line.startswith("slave") and "offset=" in line:
            found.append(line.split("offset=", 1)[1].split(",", 1)[0])
    return found


def _paused_writer_on_synced(local: Local, manifest: dict[str, Any]) -> ClusterWriter:
    # The cluster of the manifest with acknowledged writes on it, the writer
    # paused and every replica caught up, so that no write may be lost.
    _reconcile(local, manifest)
    writer = ClusterWriter(_endpoints(local)).start()
    writer.wait_for_acks(300)
    writer.pause()
    _wait_replicas_synced(local)
    return writer


def test_cluster_grows_and_shrinks_under_writes_without_losing_a_write(
    state_dir: Path,
) -> None:
    """3x1 -> 5x2 -> 3x1 with a writer running: every acked write survives."""
    local = _open(state_dir)
    _reconcile(local, _manifest("grow", 3, 1))
    _check_clean(local)
    writer = ClusterWriter(_endpoints(local)).start()
    writer.wait_for_acks(500)

    _reconcile(local, _manifest("grow", 5, 2))
    writer.wait_for_acks(500)
    _check_clean(local)
    grown = _roles(local)
    _reconcile(local, _manifest("grow", 3, 1))
    writer.wait_for_acks(500)
    _check_clean(local)
    writer.pause()
    lost = writer.check()
    writer.stop()

    assert sorted(grown.values()).count("master") == 5
    assert len(grown) == 15
    assert sorted(_roles(local).values()) == ["master"] * 3 + ["replica"] * 3
    assert lost == []


def test_killed_master_is_replaced_by_its_replica_and_returns_as_replica(
    state_dir: Path,
) -> None:
    """kill -9 a master: its replica takes over, it comes back as a replica."""
    local = _open(state_dir)
    writer = _paused_writer_on_synced(local, _manifest("kill", 3, 1))
    addresses = _addresses(local)
    victim_id = _view(addresses["kill-0"]).myself.node_id
    heir = next(
        pod for pod, a in addresses.items() if _view(a).myself.master_id == victim_id
    )

    local.runtime.kill("kill-0")
    # The pod stays down (no kubelet pass) until Redis fails it over, as a
    # pod that takes longer than the node timeout to come back would.
    _wait_until_master(addresses[heir])
    writer.resume()
    _reconcile(local, _manifest("kill", 3, 1))
    writer.wait_for_acks(300)
    _check_clean(local)
    writer.pause()
    lost = writer.check()
    writer.stop()

    back = _view(_addresses(local)["kill-0"]).myself
    assert back.node_id == victim_id
    assert back.is_replica
    assert lost == []


def test_master_back_at_once_on_an_empty_disk_loses_no_acknowledged_write(
    state_dir: Path,
) -> None:
    """A master's disk wiped and its pod restarted at once: the shard survives."""
    # Redis replicas follow their master by address: had the pod come back
    # empty at its old address, its replica would have copied the empty set.
    local = _open(state_dir)
    writer = _paused_writer_on_synced(local, _manifest("wipe", 3, 1))
    before = _addresses(local)["wipe-0"]
    victim_id = _view(before).myself.node_id

    local.runtime.kill("wipe-0", lose_data=True)
    local.runtime.kubelet_pass()
    _reconcile(local, _manifest("wipe", 3, 1))
    _check_clean(local)
    writer.resume()
    writer.wait_for_acks(300)
    writer.pause()
    lost = writer.check()
    writer.stop()

    after = _addresses(local)["wipe-0"]
    back = _view(after).myself
    assert after != before
    assert back.node_id != victim_id
    assert back.is_replica
    assert lost == []


def test_replica_that_lost_its_disk_rejoins_with_a_new_id(state_dir: Path) -> None:
    """A replica's data dir wiped: it comes back empty, rejoins, old id forgotten."""
    local = _open(state_dir)
    _reconcile(local, _manifest("disk", 3, 1))
    replica = next(p for p, role in _roles(local).items() if role == "replica")
    old_id = _view(_addresses(local)[replica]).myself.node_id

    local.runtime.kill(replica, lose_data=True)
    _reconcile(local, _manifest("disk", 3, 1))
    _check_clean(local)

    me = _view(_addresses(local)[replica]).myself
    assert me.node_id != old_id
    assert me.is_replica
    for address in _addresses(local).values():
        assert old_id not in _view(address).known_ids


def test_master_restarted_on_a_new_address_keeps_its_node_id(state_dir: Path) -> None:
    """A master moved to a new address keeps its id and the cluster heals."""
    local = _open(state_dir)
    _reconcile(local, _manifest("move", 3, 1))
    before = _addresses(local)["move-1"]
    node_id = _view(before).myself.node_id

    local.runtime.kill("move-1", new_ip=True)
    _reconcile(local, _manifest("move", 3, 1))
    _check_clean(local)

    after = _addresses(local)["move-1"]
    assert after != before
    assert _view(after).myself.node_id == node_id
    for pod, address in _addresses(local).items():
        if pod != "move-1":
            entry = _view(address).by_id[node_id]
            assert entry.ip == after.host


def _write_keys(local: Local, count: int) -> None:
    writer = ClusterWriter(_endpoints(local), prefix="bulk")
    client = writer.client()
    try:
        for start in range(0, count, 1000):
            pipe = client.pipeline()
            for n in range(start, min(count, start + 1000)):
                pipe.set(f"bulk:{n}", f"value-{n}")
            pipe.execute()
    finally:
        client.close()


def _count_keys(local: Local) -> int:
    total = 0
    for pod, address in _addresses(local).items():
        if _roles(local)[pod] == "master":
            with RedisNode(address, ConnectionSettings()) as node:
                total += int(node.call("DBSIZE"))
    return total


def test_operator_killed_mid_migration_finishes_the_open_slots_on_restart(
    state_dir: Path, tmp_path: Path
) -> None:
    """kill -9 the operator and its Job mid-migration: the next run finishes it."""
    local = _open(state_dir)
    _reconcile(local, _manifest("crash", 3, 0))
    _write_keys(local, 60_000)
    spec = tmp_path / "crash.yaml"
    spec.write_text(yaml.safe_dump(_manifest("crash", 4, 0)), encoding="utf-8")

    operator = subprocess.Popen(
        [*KREDIS, "local", "apply", "-f", str(spec), "--state-dir", str(state_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        job = _wait_for_moving_job(local)
    finally:
        operator.send_signal(signal.SIGKILL)
        operator.wait()
    _kill_job(state_dir, job)
    open_after_crash = _open_slot_count(local)
    _reconcile(local, _manifest("crash", 4, 0))
    _check_clean(local)

    assert open_after_crash > 0
    assert _count_keys(local) == 60_000
    assert sorted(_roles(local).values()) == ["master"] * 4


def _wait_for_moving_job(local: Local) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        running = [j["name"] for j in local.runtime.jobs() if j["active"]]
        if running and _open_slot_count(local) > 0:
            return running[0]
        time.sleep(0.01)
    raise AssertionError("no migration Job started moving slots")


def _kill_job(state_dir: Path, job: str) -> None:
    # kill -9 the Job's whole process group, as a node dying would.
    record = json.loads((state_dir / "jobs" / job / "job.json").read_text())
    os.killpg(int(record["pid"]), signal.SIGKILL)


def _open_slot_count(local: Local) -> int:
    count = 0
    for address in _addresses(local).values():
        me = _view(address).myself
        count += len(me.migrating) + len(me.importing)
    return count


def test_failing_migration_job_is_retried_then_reported_and_loses_nothing(
    state_dir: Path,
) -> None:
    """A target that refuses keys fails the Job: retried, reported, no key lost."""
    local = _open(state_dir)
    _reconcile(local, _manifest("fail", 3, 0))
    _write_keys(local, 3_000)
    adopt(local, _manifest("fail", 4, 0))

    poisoned = False
    retried: PassReport | None = None
    deadline = time.monotonic() + CONVERGE_S
    while retried is None and time.monotonic() < deadline:
        local.runtime.kubelet_pass()
        target = _addresses(local).get("fail-3")
        if target is not None and not poisoned:
            # A full target answers every RESTORE with OOM: MIGRATE fails.
            with RedisNode(target, ConnectionSettings()) as node:
                node.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
                node.call("CONFIG", "SET", "maxmemory", "1")
            poisoned = True
        report = local.reconciler.run_pass()
        failures = local.platform.resource()["status"].get("migrationFailures", 0)
        if failures and report.failure:
            retried = report
        time.sleep(0.2)
    status = local.platform.resource()["status"]
    keys_while_failing = _count_keys(local)
    with RedisNode(_addresses(local)["fail-3"], ConnectionSettings()) as node:
        node.call("CONFIG", "SET", "maxmemory", "128mb")
    _reconcile(local, _manifest("fail", 4, 0))

    assert retried is not None
    assert "finish-migration failed" in retried.failure
    assert "OOM" in retried.failure
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ActionFailed")
    assert status["lastClusterOperation"] == retried.failure
    assert keys_while_failing == 3_000
    assert _count_keys(local) == 3_000
    _check_clean(local)


def test_invalid_spec_is_refused_with_a_clear_message_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """kredis local up on a bad spec exits 2 naming the field; nothing starts."""
    bad = _manifest("bad", 0, 1)
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(bad), encoding="utf-8")
    state = tmp_path / "state"

    done = subprocess.run(
        [*KREDIS, "local", "up", "-f", str(spec), "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert "spec.masters" in done.stderr
    assert not state.exists()
