"""Unit tests: the files the local runtime generates and the Job status shape.

Nothing here starts a process: redis.conf and auth.conf are rendered as
text, Job status from a record and an exit code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kredis.adapters.local_jobs import JobRecord, job_status
from kredis.adapters.local_pods import PodPaths, render_auth, render_config
from kredis.adapters.local_state import ClusterRecord
from kredis.adapters.redis_client import Credentials

PATHS = PodPaths(Path("/state dir/pods/demo-1"))


def cluster(*, max_memory: str = "64mb") -> ClusterRecord:
    """The record of default/demo on port 7000."""
    return ClusterRecord.new(
        namespace="default",
        name="demo",
        base_port=7000,
        max_memory=max_memory,
        node_timeout_ms=2000,
    )


def settings(text: str) -> dict[str, str]:
    """A redis.conf as directive -> rest of the line."""
    pairs = (line.split(" ", 1) for line in text.splitlines() if line)
    return {key: value for key, value in pairs if not key.startswith("#")}


def test_config_serves_the_pods_own_address_and_bus_port() -> None:
    """redis.conf binds, announces and connects from the pod's address."""
    config = settings(
        render_config(cluster=cluster(), address="127.9.9.2", port=7000, paths=PATHS)
    )

    assert config["bind"] == "127.9.9.2"
    assert config["cluster-announce-ip"] == "127.9.9.2"
    assert config["bind-source-addr"] == "127.9.9.2"
    assert (config["port"], config["cluster-port"]) == ("7000", "17000")
    assert config["cluster-enabled"] == "yes"
    assert config["cluster-config-file"] == "nodes.conf"
    assert config["cluster-node-timeout"] == "2000"
    assert config["appendonly"] == "yes"
    assert config["protected-mode"] == "no"
    assert config["daemonize"] == "no"
    assert config["maxmemory"] == "64mb"
    assert config["dir"] == '"/state dir/pods/demo-1/data"'
    assert config["logfile"] == '"/state dir/pods/demo-1/redis.log"'
    assert config["include"] == '"/state dir/pods/demo-1/auth.conf"'
    assert "{config-file}" in config["proc-title-template"]


def test_config_without_max_memory_sets_no_limit() -> None:
    """An empty maxMemory leaves Redis' own default."""
    text = render_config(
        cluster=cluster(max_memory=""), address="127.9.9.2", port=7000, paths=PATHS
    )

    assert "maxmemory" not in settings(text)


def test_auth_file_quotes_the_password_for_clients_and_replication() -> None:
    """requirepass and masterauth hold the password, quotes and backslashes escaped."""
    text = render_auth(Credentials(password='p"w\\1 x'))

    assert settings(text) == {
        "requirepass": '"p\\"w\\\\1 x"',
        "masterauth": '"p\\"w\\\\1 x"',
    }


def test_auth_file_without_password_sets_nothing() -> None:
    """Without a password the included file holds only a comment."""
    assert settings(render_auth(None)) == {}


RECORD = JobRecord(
    name="demo-migrate-1a2b3c4d",
    labels=(("kredis.io/cluster", "demo"),),
    annotations=(),
    argv=("kredis", "migrate"),
    pid=42,
)


@pytest.mark.parametrize(
    ("running", "exit_code", "counts", "conditions"),
    [
        (True, None, (1, 0, 0), []),
        (False, 0, (0, 1, 0), [{"type": "Complete", "status": "True"}]),
        (False, 1, (0, 0, 1), [{"type": "Failed", "status": "True"}]),
        (False, None, (0, 0, 1), [{"type": "Failed", "status": "True"}]),
    ],
    ids=["running", "exited-0", "exited-1", "vanished"],
)
def test_job_status_reads_like_a_kubernetes_job(
    running: bool,
    exit_code: int | None,
    counts: tuple[int, int, int],
    conditions: list[dict[str, str]],
) -> None:
    """Running, succeeded, failed and vanished Jobs get Kubernetes' counts."""
    status = job_status(RECORD, running=running, exit_code=exit_code)

    assert status == {
        "name": "demo-migrate-1a2b3c4d",
        "labels": {"kredis.io/cluster": "demo"},
        "annotations": {},
        "active": counts[0],
        "succeeded": counts[1],
        "failed": counts[2],
        "conditions": conditions,
    }
