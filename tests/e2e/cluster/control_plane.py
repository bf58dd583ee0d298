"""A real Kubernetes control plane as local processes, on 127.0.0.1 only.

Starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler built
by ``tools/k8s/build.sh``, each on free loopback ports in one work directory:
its own CA and serving certificate (openssl), a random admin token in a token
file (never on a command line), service-account keys, a kubeconfig for the
tests. ``ControlPlane.stop`` ends every process it started. It knows nothing
of kredis and runs no pods: that is the process kubelet's job.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

K8S_VERSION = os.environ.get("K8S_VERSION", "1.37.2")
BIN_VARIABLE = "KREDIS_K8S_BIN"
CACHE_VARIABLE = "KREDIS_K8S_CACHE"
LOOPBACK = "127.0.0.1"
# The service network exists only in the API; nothing may ever dial it.
SERVICE_CIDR = "10.96.0.0/16"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """The control plane could not be found, started or reached."""


@dataclass(frozen=True)
class Binaries:
    """Where the four control-plane binaries are."""

    directory: Path

    @property
    def etcd(self) -> Path:
        return self.directory / "etcd"

    @property
    def apiserver(self) -> Path:
        return self.directory / "kube-apiserver"

    @property
    def controller_manager(self) -> Path:
        return self.directory / "kube-controller-manager"

    @property
    def scheduler(self) -> Path:
        return self.directory / "kube-scheduler"

    @property
    def missing(self) -> list[str]:
        """Names of binaries that are not there or not executable."""
        wanted = (self.etcd, self.apiserver, self.controller_manager, self.scheduler)
        return [p.name for p in wanted if not os.access(p, os.X_OK)]


def find_binaries() -> Binaries:
    """The binaries of ``$KREDIS_K8S_BIN`` or of the build cache; all four."""
    if os.environ.get(BIN_VARIABLE):
        directory = Path(os.environ[BIN_VARIABLE])
    else:
        cache = Path(
            os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache/kredis/k8s"
        )
        directory = cache / K8S_VERSION
    binaries = Binaries(directory)
    if binaries.missing:
        raise ControlPlaneError(
            f"no Kubernetes binaries {binaries.missing} in {directory}: run "
            f"`make k8s-bins` (tools/k8s/build.sh) or set {BIN_VARIABLE}"
        )
    return binaries


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # If the test process is killed outright, the control plane dies too.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _openssl(*args: str) -> None:
    result = subprocess.run(
        ["openssl", *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ControlPlaneError(
            f"openssl {args[0]} failed ({result.returncode}): {result.stderr[-500:]}"
        )


@dataclass
class Component:
    """One running control-plane process and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        """The last lines of its log, for error messages."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class ControlPlane:
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler."""

    binaries: Binaries
    workdir: Path
    components: list[Component] = field(default_factory=list)
    # Further addresses the serving certificate names (the pods' gateway).
    extra_addresses: tuple[str, ...] = ()
    token: str = ""
    apiserver_port: int = 0

    @property
    def server(self) -> str:
        """The API server's URL."""
        return f"https://{LOOPBACK}:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        """A kubeconfig for an admin (system:masters) of this control plane."""
        return self.workdir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the API server's serving certificate."""
        return self.workdir / "pki" / "ca.crt"

    # -- starting ----------------------------------------------------------

    def start(self, *, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start every component and wait until the API server is ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_credentials()
        etcd_url = self._start_etcd()
        self._start_apiserver(etcd_url)
        self._wait_ready(timeout_s=timeout_s)
        self._write_kubeconfig()
        self._start_controller_manager()
        self._start_scheduler()

    def _write_credentials(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        ca_key, ca_crt = pki / "ca.key", pki / "ca.crt"
        key, csr, crt = (
            pki / "apiserver.key",
            pki / "apiserver.csr",
            pki / "apiserver.crt",
        )
        _openssl("genrsa", "-out", str(ca_key), "2048")
        _openssl(
            "req",
            "-x509",
            "-new",
            "-key",
            str(ca_key),
            "-subj",
            "/CN=kredis-e2e-ca",
            "-days",
            "2",
            "-out",
            str(ca_crt),
        )
        _openssl("genrsa", "-out", str(key), "2048")
        _openssl(
            "req",
            "-new",
            "-key",
            str(key),
            "-subj",
            "/CN=kube-apiserver",
            "-out",
            str(csr),
        )
        extensions = pki / "san.cnf"
        names = ",".join(
            ["IP:127.0.0.1", "DNS:localhost", "DNS:kubernetes.default.svc"]
            + [f"IP:{address}" for address in self.extra_addresses]
        )
        extensions.write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_crt),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(extensions),
            "-out",
            str(crt),
        )
        _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        _openssl(
            "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")
        )
        self.token = secrets.token_hex(24)
        tokens = pki / "tokens.csv"
        tokens.write_text(f"{self.token},kredis-e2e-admin,e2e-admin,system:masters\n")
        tokens.chmod(0o600)

    def _spawn(self, name: str, argv: Sequence[str]) -> Component:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        component = Component(name=name, process=process, log=log)
        self.components.append(component)
        return component

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()
        client_url = f"http://{LOOPBACK}:{client}"
        peer_url = f"http://{LOOPBACK}:{peer}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        return client_url

    def _start_apiserver(self, etcd_url: str) -> None:
        pki = self.workdir / "pki"
        self.apiserver_port = free_port()
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.apiserver),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                f"--secure-port={self.apiserver_port}",
                # No Endpoints object for a loopback "kubernetes" Service.
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--cert-dir={pki}",
                "--profiling=false",
            ],
        )

    def _wait_ready(self, *, timeout_s: float) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(
            f"{self.server}/readyz",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            for component in self.components:
                if component.process.poll() is not None:
                    raise ControlPlaneError(
                        f"{component.name} exited with {component.process.returncode}"
                        f":\n{component.tail()}"
                    )
            try:
                with urllib.request.urlopen(request, context=context, timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError) as err:
                last = str(err)
            time.sleep(0.25)
        raise ControlPlaneError(
            f"kube-apiserver not ready within {timeout_s:.0f} s ({last}):\n"
            + self.components[-1].tail()
        )

    def _write_kubeconfig(self) -> None:
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            "clusters:\n- name: e2e\n  cluster:\n"
            f"    server: {self.server}\n"
            f"    certificate-authority: {self.ca_file}\n"
            "users:\n- name: admin\n  user:\n"
            f"    token: {self.token}\n"
            "contexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: admin\n"
            "current-context: e2e\n"
        )
        self.kubeconfig.chmod(0o600)

    def _start_controller_manager(self) -> None:
        pki = self.workdir / "pki"
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.controller_manager),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={self.ca_file}",
                "--use-service-account-credentials=false",
                "--controllers=*",
                # Test time: garbage and terminated pods are handled at once.
                "--concurrent-gc-syncs=5",
            ],
        )

    def _start_scheduler(self) -> None:
        self._spawn(
            "kube-scheduler",
            [
                str(self.binaries.scheduler),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
            ],
        )

    # -- stopping ----------------------------------------------------------

    def dead(self) -> list[str]:
        """Components whose process has exited, with their exit codes."""
        return [
            f"{c.name} ({c.process.returncode})"
            for c in self.components
            if c.process.poll() is not None
        ]

    def stop(self) -> None:
        """SIGTERM every component, newest first; SIGKILL what lingers."""
        for component in reversed(self.components):
            if component.process.poll() is None:
                component.process.terminate()
            try:
                component.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                component.process.kill()
                component.process.wait()
        self.components.clear()
