"""Fixtures for tests against a real Kubernetes control plane.

One control plane and one process kubelet per test session (both started
here and stopped at the end), a kubernetes API client, and a fresh namespace
per test. Without the binaries (``make k8s-bins``) every e2e test fails with
the message that says how to build them: a missing control plane is never a
silent skip.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from tests.e2e.cluster.control_plane import ControlPlane, find_binaries

# The kubelet's pods live in this subnet, inside network namespaces the
# kubelet creates; override it when the range is taken on this machine.
POD_SUBNET = os.environ.get("KREDIS_E2E_POD_SUBNET", "10.251.0.0/24")
# The subnet's first address is the host's end of the pods' bridge; pods reach
# the API server there.
GATEWAY = str(next(ipaddress.ip_network(POD_SUBNET).hosts()))
NODES = 3
ZONES = 2
WAIT_S = 90.0
POLL_S = 0.25


def wait_for(check: Callable[[], Any], *, what: str, timeout_s: float = WAIT_S) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(POLL_S)
    pytest.fail(
        f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})"
    )


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    """One directory for the control plane's and the kubelet's files.

    Set ``KREDIS_E2E_WORKDIR`` to keep them (logs included) after the run.
    """
    kept = os.environ.get("KREDIS_E2E_WORKDIR")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        yield Path(tempfile.mkdtemp(prefix="kredis-e2e-", dir=kept))
        return
    with tempfile.TemporaryDirectory(prefix="kredis-e2e-") as directory:
        yield Path(directory)


@pytest.fixture(scope="session")
def control_plane(workdir: Path) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler."""
    plane = ControlPlane(
        binaries=find_binaries(),
        workdir=workdir / "control-plane",
        extra_addresses=(GATEWAY,),
    )
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def api(control_plane: ControlPlane) -> kubernetes.client.ApiClient:
    """An admin API client of the session's control plane."""
    return kubernetes.config.new_client_from_config(str(control_plane.kubeconfig))


@pytest.fixture(scope="session")
def kubelet(
    control_plane: ControlPlane, api: kubernetes.client.ApiClient, workdir: Path
) -> Iterator[list[str]]:
    """The process kubelet with its Nodes Ready; yields the node names."""
    log = workdir / "kubelet.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.e2e.cluster.kubelet",
                f"--kubeconfig={control_plane.kubeconfig}",
                f"--root={workdir / 'kubelet'}",
                f"--nodes={NODES}",
                f"--zones={ZONES}",
                f"--subnet={POD_SUBNET}",
                f"--api-port={control_plane.apiserver_port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
    core = kubernetes.client.CoreV1Api(api)

    def ready_nodes() -> list[str]:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            pytest.fail(f"the kubelet exited with {process.returncode}:\n{tail}")
        return sorted(
            node.metadata.name
            for node in core.list_node().items
            if any(
                c.type == "Ready" and c.status == "True"
                for c in node.status.conditions or []
            )
        )

    try:
        yield wait_for(
            lambda: len(ready_nodes()) == NODES and ready_nodes(),
            what=f"{NODES} Ready nodes",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def namespace(api: kubernetes.client.ApiClient) -> Iterator[str]:
    """A fresh namespace with its default ServiceAccount; deleted afterwards."""
    core = kubernetes.client.CoreV1Api(api)
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})

    def has_default_account() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    wait_for(has_default_account, what=f"the default ServiceAccount of {name}")
    yield name
    core.delete_namespace(name)
