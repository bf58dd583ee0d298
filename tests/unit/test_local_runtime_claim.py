"""Unit tests: claiming a state directory, refusals and the stored status.

The runtime here has no redis-server (a path that does not exist), so no
process can start; files live in tmp_path.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from kredis.adapters.local_pods import RedisServerMissingError
from kredis.adapters.local_runtime import LocalRuntime
from kredis.adapters.local_state import ClusterRecord, StateDirError


def claimed(state_dir: Path, name: str = "demo") -> LocalRuntime:
    """A runtime whose state dir is claimed for ``default/<name>``."""
    runtime = LocalRuntime(state_dir, redis_server="/nonexistent/redis-server")
    runtime.claim(namespace="default", name=name, base_port=6379, max_memory="64mb")
    return runtime


def test_claim_writes_the_cluster_record(tmp_path: Path) -> None:
    """Claiming an absent directory creates it, private, with cluster.json."""
    runtime = claimed(tmp_path / "state")

    assert runtime.cluster() == ClusterRecord.new(
        namespace="default",
        name="demo",
        base_port=6379,
        max_memory="64mb",
        node_timeout_ms=2000,
    )
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert runtime.stateful_set() is None
    assert runtime.pods() == []
    assert runtime.jobs() == []


def test_claim_by_another_cluster_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """A state dir of default/demo cannot be claimed for default/cache."""
    claimed(tmp_path / "state")
    before = (tmp_path / "state" / "cluster.json").read_bytes()

    with pytest.raises(StateDirError) as refused:
        claimed(tmp_path / "state", name="cache")

    assert "belongs to cluster default/demo, not default/cache" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert (tmp_path / "state" / "cluster.json").read_bytes() == before


def test_directory_with_other_files_is_not_a_state_dir(tmp_path: Path) -> None:
    """A non-empty directory without cluster.json is neither claimed nor purged."""
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    runtime = LocalRuntime(tmp_path)

    with pytest.raises(StateDirError, match="not a kredis local state dir"):
        runtime.claim(namespace="default", name="demo", base_port=6379, max_memory="")
    with pytest.raises(StateDirError):
        runtime.down(purge=True)

    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_purge_deletes_a_claimed_dir_with_the_files_kept_beside_ours(
    tmp_path: Path,
) -> None:
    """down --purge deletes a claimed state dir, other files of the cluster too."""
    runtime = claimed(tmp_path / "state")
    (tmp_path / "state" / "resource.json").write_text("{}", encoding="utf-8")

    runtime.down(purge=True)

    assert not (tmp_path / "state").exists()


def test_missing_redis_server_is_refused_with_an_install_hint(tmp_path: Path) -> None:
    """Scaling without redis-server says how to install it and changes nothing."""
    runtime = claimed(tmp_path / "state")

    with pytest.raises(RedisServerMissingError, match="apt-get install redis-server"):
        runtime.scale(3)

    assert runtime.stateful_set() is None
    assert runtime.process_states() == {}


def test_status_round_trips_and_damaged_status_reads_as_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The stored status reads back; an unreadable one reads as {} with a warning."""
    runtime = claimed(tmp_path / "state")
    status = {"clusterState": "Running", "clusterNodes": {"demo-0": "a" * 40}}

    empty = runtime.read_status()
    runtime.write_status(status)
    stored = runtime.read_status()
    (tmp_path / "state" / "status.json").write_text("{", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        damaged = runtime.read_status()

    assert (empty, stored, damaged) == ({}, status, {})
    assert "status unreadable" in caplog.text
    assert json.loads((tmp_path / "state" / "cluster.json").read_text())["name"] == (
        "demo"
    )
