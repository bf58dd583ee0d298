"""A process kubelet: fake Nodes kept Ready, their pods run as local processes.

``python -m tests.e2e.cluster.kubelet --kubeconfig K --root DIR --nodes 3
--zones 2 --subnet 10.251.0.0/24`` registers Nodes ``e2e-node-<i>`` (labels
``kubernetes.io/hostname`` and ``topology.kubernetes.io/zone``), renews their
Leases and Ready conditions, and runs every pod the scheduler binds to them:

- each pod gets a network namespace with its own address in the subnet
  (``network.py``); ``hostNetwork`` pods run on the host with the gateway as
  their address;
- each container is a process group started with the container's command and
  args (or the image's entry point: ``redis-server`` for Redis images,
  ``kredis`` from this project's environment for kredis images), its
  environment (values, ``$(VAR)``, field, ConfigMap and Secret references)
  and its volumes as directories (``volumes.py``);
- readiness and liveness probes (exec, tcpSocket, httpGet), restart policies
  with a capped back-off, init containers in order, graceful deletion
  (SIGTERM, then SIGKILL after the grace period) and a final delete of the
  pod object, status written back like a kubelet's (podIP, phase, conditions,
  container states, restart counts);
- every PersistentVolumeClaim gets a PersistentVolume (a directory under
  ``--root``) that lives until the claim is deleted.

Limitation: not a container runtime. It does not do images (only their
entry points are known), cgroups, resource requests and limits, mount
namespaces (mount paths are rewritten in argv, env and workingDir only),
startup probes, ephemeral containers, pod logs or exec through the API, or
Services (nothing routes a Service address); see README.md here.

Imports nothing of kredis.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException

from tests.e2e.cluster.network import NetworkError, PodNetwork, Sandbox
from tests.e2e.cluster.volumes import (
    PV_ANNOTATION,
    PV_PREFIX,
    PathMap,
    VolumeNotReadyError,
    Volumes,
    field_value,
)

log = logging.getLogger("kubelet")

KUBELET_VERSION = "v1.37.2"
NODE_PREFIX = "e2e-node-"
ZONE_NAMES = "abcdefghij"
LEASE_SECONDS = 40
HEARTBEAT_S = 10.0
SYNC_S = 0.3
BACKOFF_CAP_S = 10.0
MERGE_PATCH = "application/merge-patch+json"
_PR_SET_PDEATHSIG = 1


def now() -> str:
    """The current time as Kubernetes writes it."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """The current time with microseconds (Lease renewTime)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class NotRunnableError(RuntimeError):
    """A container's image or command cannot run as a local process."""


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: unknown names stay, ``$$`` is ``$``."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR.sub(one, value)


def image_base(image: str) -> str:
    """``docker.io/library/redis:7.4`` -> ``redis``."""
    return image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]


def entry_point(image: str) -> list[str]:
    """What an image runs when the container names no command."""
    base = image_base(image)
    if base == "kredis":
        return ["kredis"]
    if base in ("redis", "redis-stack-server", "valkey"):
        return ["redis-server"]
    raise NotRunnableError(
        f"image {image!r} has no known entry point here: give the container a "
        "command, or use a redis or kredis image"
    )


def executable(name: str, image: str) -> str:
    """The host program for ``name`` (kredis from this project's environment)."""
    project_bin = Path(sys.executable).parent
    base = os.path.basename(name)
    if image_base(image) == "kredis" and base == "kredis":
        return str(project_bin / "kredis")
    if os.path.isabs(name) and os.access(name, os.X_OK):
        return name
    found = shutil.which(base, path=f"{project_bin}:{os.environ.get('PATH', '')}")
    if found is None:
        raise NotRunnableError(f"program {name!r} is not installed on this host")
    return found


@dataclass
class Probe:
    """One probe's settings and counters."""

    spec: dict[str, Any]
    next_at: float = 0.0
    failures: int = 0
    successes: int = 0
    passed: bool = False

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds") or 10)

    @property
    def timeout(self) -> float:
        return float(self.spec.get("timeoutSeconds") or 1)


@dataclass
class Container:
    """One container of a pod and the process that plays it."""

    spec: dict[str, Any]
    init: bool = False
    process: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    restart_count: int = 0
    terminated: dict[str, Any] | None = None
    last_terminated: dict[str, Any] | None = None
    restart_at: float = 0.0
    waiting: tuple[str, str] = ("ContainerCreating", "")
    readiness: Probe | None = None
    liveness: Probe | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def ready(self) -> bool:
        if not self.running:
            return False
        return self.readiness is None or self.readiness.passed


class PodWorker(threading.Thread):
    """Runs one pod from its binding to its deletion."""

    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.kubelet = kubelet
        self.pod = pod
        self.gone = False
        self.uid = meta["uid"]
        self.key = f"{meta['namespace']}/{meta['name']}"
        self.dir = (
            kubelet.root / "pods" / f"{meta['namespace']}_{meta['name']}_{self.uid}"
        )
        self.sandbox: Sandbox | None = None
        self.paths = PathMap()
        self.env_base: dict[str, str] = {}
        self.started = ""
        self.init = [
            Container(c, init=True) for c in pod["spec"].get("initContainers") or []
        ]
        self.main = [Container(c) for c in pod["spec"]["containers"]]
        for c in self.main:
            if c.spec.get("readinessProbe"):
                c.readiness = Probe(c.spec["readinessProbe"])
            if c.spec.get("livenessProbe"):
                c.liveness = Probe(c.spec["livenessProbe"])
        self.conditions: dict[str, tuple[str, str]] = {}
        self.last_status: dict[str, Any] | None = None
        self.finished = False

    # -- the loop ------------------------------------------------------------

    def update(self, pod: dict[str, Any] | None) -> None:
        """The latest pod object from the API, or None once it is gone."""
        if pod is None:
            self.gone = True
        else:
            self.pod = pod

    @property
    def policy(self) -> str:
        return str(self.pod["spec"].get("restartPolicy") or "Always")

    @property
    def address(self) -> str:
        if self.pod["spec"].get("hostNetwork"):
            return self.kubelet.network.gateway
        return self.sandbox.address if self.sandbox else ""

    def run(self) -> None:
        self.started = now()
        try:
            while not self.kubelet.stopping.is_set():
                if self.gone or self.pod["metadata"].get("deletionTimestamp"):
                    self._terminate()
                    return
                try:
                    self._step()
                except (
                    VolumeNotReadyError,
                    NotRunnableError,
                    NetworkError,
                    ApiException,
                ) as err:
                    for c in self.main:
                        if c.process is None:
                            c.waiting = (_reason(err), str(err))
                self._report()
                time.sleep(SYNC_S)
        except Exception:
            log.exception("pod worker failed pod=%s", self.key)
        finally:
            self._kill_all(grace_s=0.0 if self.kubelet.stopping.is_set() else 5.0)
            self._release()

    def _step(self) -> None:
        if self.finished:
            return
        if self.sandbox is None and not self.pod["spec"].get("hostNetwork"):
            self.sandbox = self.kubelet.network.create()
            log.info("pod sandbox ready pod=%s ip=%s", self.key, self.sandbox.address)
            self._report()
        if not self.env_base:
            self._prepare()
        for container in self.init:
            if not self._run_to_completion(container):
                return
        for container in self.main:
            self._keep(container)
            self._probe(container)
        if self.policy != "Always" and all(
            c.terminated is not None and not c.running and c.restart_at == 0.0
            for c in self.main
        ):
            self.finished = True
            self._kill_all(grace_s=0.0)
            self._release_network()

    def _prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        pod = self._with_status(self.pod)
        volumes = self.kubelet.volumes.prepare(pod, self.dir, self.kubelet.token)
        paths = PathMap()
        for container in self.init + self.main:
            for mount in container.spec.get("volumeMounts") or []:
                host = volumes.get(mount["name"])
                if host is None:
                    raise VolumeNotReadyError(f"volume {mount['name']} is not defined")
                if mount.get("subPath"):
                    host = os.path.join(host, mount["subPath"])
                    os.makedirs(host, exist_ok=True)
                paths.add(mount["mountPath"], host)
        self.env_base = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "HOSTNAME": self.pod["metadata"]["name"],
            "HOME": str(self.dir),
            "LANG": "C.UTF-8",
            **self.kubelet.service_env(),
        }
        self.paths = paths

    def _with_status(self, pod: dict[str, Any]) -> dict[str, Any]:
        status = dict(pod.get("status") or {})
        status["podIP"] = self.address
        status["hostIP"] = self.kubelet.network.gateway
        return {**pod, "status": status}

    # -- containers ----------------------------------------------------------

    def _environment(self, container: Container) -> dict[str, str]:
        pod = self._with_status(self.pod)
        namespace = pod["metadata"]["namespace"]
        env = dict(self.env_base)
        for source in container.spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
                if key in source:
                    ref = source[key]
                    data = self.kubelet.volumes.config_data(
                        kind, namespace, ref["name"], bool(ref.get("optional"))
                    )
                    env.update({prefix + k: v.decode() for k, v in data.items()})
        for item in container.spec.get("env") or []:
            name = item["name"]
            if "valueFrom" not in item:
                env[name] = expand(item.get("value", ""), env)
                continue
            source = item["valueFrom"]
            if "fieldRef" in source:
                env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
            elif "secretKeyRef" in source or "configMapKeyRef" in source:
                kind = "secret" if "secretKeyRef" in source else "configmap"
                ref = source.get("secretKeyRef") or source.get("configMapKeyRef") or {}
                data = self.kubelet.volumes.config_data(
                    kind, namespace, ref["name"], bool(ref.get("optional"))
                )
                if ref["key"] in data:
                    env[name] = data[ref["key"]].decode()
                elif not ref.get("optional"):
                    raise VolumeNotReadyError(
                        f"{kind} {ref['name']} has no key {ref['key']}"
                    )
            else:
                raise NotRunnableError(f"env {name}: {sorted(source)} unsupported")
        return {k: self.paths.rewrite(v) for k, v in env.items()}

    def _start(self, container: Container) -> None:
        spec = container.spec
        image = str(spec.get("image", ""))
        env = self._environment(container)
        command = list(spec.get("command") or entry_point(image))
        argv = [
            self.paths.rewrite(expand(a, env))
            for a in command + list(spec.get("args") or [])
        ]
        argv[0] = executable(argv[0], image)
        cwd = self.paths.rewrite(spec.get("workingDir") or str(self.dir))
        os.makedirs(cwd, exist_ok=True)
        prefix = ["ip", "netns", "exec", self.sandbox.namespace] if self.sandbox else []
        with (self.dir / f"{container.name}.log").open("ab") as out:
            container.process = subprocess.Popen(
                prefix + argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        container.started_at = now()
        container.terminated = None
        container.waiting = ("", "")
        for probe in (container.readiness, container.liveness):
            if probe is not None:
                probe.passed = False
                probe.failures = probe.successes = 0
                probe.next_at = time.monotonic() + float(
                    probe.spec.get("initialDelaySeconds") or 0
                )
        log.info(
            "container started pod=%s container=%s pid=%s restarts=%s",
            self.key,
            container.name,
            container.process.pid,
            container.restart_count,
        )

    def _reap(self, container: Container) -> None:
        process = container.process
        if process is None or process.poll() is None or container.terminated:
            return
        code = process.returncode
        container.terminated = {
            "exitCode": code if code >= 0 else 128 - code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": container.started_at,
            "finishedAt": now(),
            "containerID": f"process://{process.pid}",
        }
        if code < 0:
            container.terminated["signal"] = -code
        log.info(
            "container exited pod=%s container=%s code=%s",
            self.key,
            container.name,
            code,
        )

    def _restart_wanted(self, container: Container) -> bool:
        code = (container.terminated or {}).get("exitCode", 0)
        if container.init:
            return code != 0 and self.policy != "Never"
        return self.policy == "Always" or (self.policy == "OnFailure" and code != 0)

    def _keep(self, container: Container) -> None:
        if container.process is None:
            self._start(container)
            return
        self._reap(container)
        if container.terminated is None or not self._restart_wanted(container):
            container.restart_at = 0.0
            return
        if container.restart_at == 0.0:
            delay = min(BACKOFF_CAP_S, float(2**container.restart_count))
            container.restart_at = time.monotonic() + delay
            container.waiting = (
                "CrashLoopBackOff",
                f"back-off {delay:.0f}s restarting failed container",
            )
        if time.monotonic() >= container.restart_at:
            container.last_terminated = container.terminated
            container.restart_count += 1
            container.restart_at = 0.0
            self._start(container)

    def _run_to_completion(self, container: Container) -> bool:
        """Start or watch an init container; True once it has succeeded."""
        if container.terminated and container.terminated["exitCode"] == 0:
            return True
        self._keep(container)
        if container.terminated and container.terminated["exitCode"] == 0:
            return True
        if container.terminated and not self._restart_wanted(container):
            self.finished = True
        return False

    # -- probes --------------------------------------------------------------

    def _probe(self, container: Container) -> None:
        for probe, live in ((container.readiness, False), (container.liveness, True)):
            if probe is None or not container.running:
                continue
            if time.monotonic() < probe.next_at:
                continue
            ok = self._check(probe)
            probe.next_at = time.monotonic() + probe.period
            if ok:
                probe.failures = 0
                probe.successes += 1
                if probe.successes >= int(probe.spec.get("successThreshold") or 1):
                    probe.passed = True
                continue
            probe.successes = 0
            probe.failures += 1
            if probe.failures >= int(probe.spec.get("failureThreshold") or 3):
                probe.passed = False
                if live:
                    log.info(
                        "liveness failed pod=%s container=%s", self.key, container.name
                    )
                    self._stop_container(container, grace_s=self._grace())

    def _port(self, value: Any) -> int:
        if isinstance(value, int) or str(value).isdigit():
            return int(value)
        for container in self.main:
            for port in container.spec.get("ports") or []:
                if port.get("name") == value:
                    return int(port["containerPort"])
        return 0

    def _check(self, probe: Probe) -> bool:
        spec = probe.spec
        try:
            if "exec" in spec:
                prefix = (
                    ["ip", "netns", "exec", self.sandbox.namespace]
                    if self.sandbox
                    else []
                )
                command = list(spec["exec"]["command"])
                command[0] = executable(command[0], "")
                result = subprocess.run(
                    prefix + command,
                    env=self.env_base,
                    capture_output=True,
                    timeout=probe.timeout,
                    check=False,
                )
                return result.returncode == 0
            if "tcpSocket" in spec:
                port = self._port(spec["tcpSocket"]["port"])
                with socket.create_connection((self.address, port), probe.timeout):
                    return True
            if "httpGet" in spec:
                get = spec["httpGet"]
                url = (
                    f"http://{self.address}:{self._port(get['port'])}"
                    f"{get.get('path', '/')}"
                )
                with urllib.request.urlopen(url, timeout=probe.timeout) as response:
                    return 200 <= int(response.status) < 400
        except (OSError, subprocess.TimeoutExpired, urllib.error.URLError):
            return False
        except NotRunnableError:
            return False
        return False

    # -- stopping ------------------------------------------------------------

    def _grace(self) -> float:
        meta_grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        spec_grace = self.pod["spec"].get("terminationGracePeriodSeconds")
        for value in (meta_grace, spec_grace):
            if value is not None:
                return float(value)
        return 30.0

    def _stop_container(self, container: Container, *, grace_s: float) -> None:
        process = container.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=max(grace_s, 0.0) or 0.01)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self._reap(container)

    def _kill_all(self, *, grace_s: float) -> None:
        threads = [
            threading.Thread(
                target=self._stop_container, args=(c,), kwargs={"grace_s": grace_s}
            )
            for c in self.init + self.main
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _release_network(self) -> None:
        if self.sandbox is not None:
            self.kubelet.network.release(self.sandbox)
            self.sandbox = None

    def _release(self) -> None:
        self._release_network()
        self.kubelet.volumes.release_pod(self.dir)

    def _terminate(self) -> None:
        log.info("pod stopping pod=%s grace=%s", self.key, self._grace())
        self._kill_all(grace_s=self._grace())
        self._release()
        if self.gone:
            return
        self._report()
        meta = self.pod["metadata"]
        # The options go in the body: with a body, the API server reads no
        # grace period from the query. Retried until the object is gone.
        for _ in range(50):
            try:
                self.kubelet.core.delete_namespaced_pod(
                    meta["name"],
                    meta["namespace"],
                    body={"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
                )
                current = self.kubelet.core.read_namespaced_pod(
                    meta["name"], meta["namespace"]
                )
            except ApiException as err:
                if err.status in (404, 409):
                    break
                raise
            if current.metadata.uid != self.uid:
                break
            time.sleep(0.2)
        log.info("pod deleted pod=%s", self.key)

    # -- status --------------------------------------------------------------

    def _container_status(self, container: Container) -> dict[str, Any]:
        state: dict[str, Any]
        if container.running and container.process is not None:
            state = {"running": {"startedAt": container.started_at}}
        elif container.terminated and container.restart_at == 0.0:
            state = {"terminated": container.terminated}
        else:
            reason, message = container.waiting
            state = {"waiting": {"reason": reason or "ContainerCreating"}}
            if message:
                state["waiting"]["message"] = message
        status: dict[str, Any] = {
            "name": container.name,
            "image": container.spec.get("image", ""),
            "imageID": f"process://{container.spec.get('image', '')}",
            "ready": container.ready,
            "restartCount": container.restart_count,
            "started": container.running,
            "state": state,
            "lastState": (
                {"terminated": container.last_terminated}
                if container.last_terminated
                else {}
            ),
        }
        if container.process is not None:
            status["containerID"] = f"process://{container.process.pid}"
        return status

    def _phase(self) -> str:
        main = self.main
        if any(
            c.terminated
            and c.terminated["exitCode"] != 0
            and not self._restart_wanted(c)
            for c in self.init
        ):
            return "Failed"
        if any(c.process is None for c in main):
            return "Pending"
        if self.policy == "Always":
            return "Running"
        done = all(c.terminated is not None and c.restart_at == 0.0 for c in main)
        if not done or any(c.running for c in main):
            return "Running"
        if all(c.terminated and c.terminated["exitCode"] == 0 for c in main):
            return "Succeeded"
        return "Failed" if self.policy == "Never" else "Running"

    def _condition(self, kind: str, value: bool) -> dict[str, Any]:
        text = "True" if value else "False"
        previous = self.conditions.get(kind)
        if previous is None or previous[0] != text:
            self.conditions[kind] = (text, now())
        return {
            "type": kind,
            "status": text,
            "lastTransitionTime": self.conditions[kind][1],
        }

    def _report(self) -> None:
        phase = self._phase()
        initialized = all(
            c.terminated is not None and c.terminated["exitCode"] == 0
            for c in self.init
        )
        containers_ready = all(c.ready for c in self.main)
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": self.kubelet.network.gateway,
            "hostIPs": [{"ip": self.kubelet.network.gateway}],
            "startTime": self.started,
            "conditions": [
                self._condition("PodReadyToStartContainers", bool(self.address)),
                self._condition("Initialized", initialized),
                self._condition("ContainersReady", containers_ready),
                self._condition("Ready", containers_ready),
                self._condition("PodScheduled", True),
            ],
            "containerStatuses": [self._container_status(c) for c in self.main],
        }
        if self.init:
            status["initContainerStatuses"] = [
                self._container_status(c) for c in self.init
            ]
        if self.address:
            status["podIP"] = self.address
            status["podIPs"] = [{"ip": self.address}]
        if status == self.last_status:
            return
        meta = self.pod["metadata"]
        try:
            self.kubelet.core.patch_namespaced_pod_status(
                meta["name"],
                meta["namespace"],
                {"status": status},
                _content_type=MERGE_PATCH,
            )
        except ApiException as err:
            if err.status == 404:
                self.gone = True
                return
            log.warning("status update failed pod=%s error=%s", self.key, err.reason)
            return
        self.last_status = status


class Forwarder(threading.Thread):
    """Pods reach the API server: gateway:port is piped to 127.0.0.1:port.

    The API server listens on loopback only; a pod's namespace has a loopback
    of its own, so the kubelet listens on the gateway (the bridge's address,
    on the host) and copies bytes both ways. TLS passes through untouched.
    """

    def __init__(self, gateway: str, port: int) -> None:
        super().__init__(name="api-forwarder", daemon=True)
        self.target = ("127.0.0.1", port)
        self.server = socket.create_server((gateway, port))

    def run(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self.server.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            source.shutdown(socket.SHUT_RD)


def _reason(err: Exception) -> str:
    if isinstance(err, NotRunnableError):
        return "CreateContainerError"
    return "ContainerCreating"


@dataclass
class Kubelet:
    """The Nodes, their pods and the claims' volumes."""

    api: Any
    root: Path
    network: PodNetwork
    nodes: list[str]
    zones: list[str]
    api_port: int = 0
    workers: dict[str, PodWorker] = field(default_factory=dict)
    # Pods whose worker has ended: they are never started again.
    ended: set[str] = field(default_factory=set)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.coordination = kubernetes.client.CoordinationV1Api(self.api)
        self.volumes = Volumes(self.core, self.root)

    def service_env(self) -> dict[str, str]:
        """The ``kubernetes`` Service variables every container gets."""
        if not self.api_port:
            return {}
        host, port = self.network.gateway, str(self.api_port)
        return {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
        }

    def token(self, pod: dict[str, Any], wanted: dict[str, Any]) -> str:
        """A bound service-account token for a projected volume."""
        meta = pod["metadata"]
        spec: dict[str, Any] = {
            "expirationSeconds": int(wanted.get("expirationSeconds") or 3600),
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        }
        if wanted.get("audience"):
            spec["audiences"] = [wanted["audience"]]
        try:
            response = self.core.create_namespaced_service_account_token(
                pod["spec"].get("serviceAccountName") or "default",
                meta["namespace"],
                {"spec": spec},
            )
        except ApiException as err:
            raise VolumeNotReadyError(f"token request failed: {err.reason}") from err
        return str(response.status.token)

    # -- nodes ---------------------------------------------------------------

    def register(self) -> None:
        """Create the Nodes and their Leases, Ready."""
        for name, zone in zip(self.nodes, self.zones, strict=True):
            labels = {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": zone,
                "e2e.kredis.io/process-kubelet": "true",
            }
            try:
                self.core.create_node({"metadata": {"name": name, "labels": labels}})
            except ApiException as err:
                if err.status != 409:
                    raise
            log.info("node registered node=%s zone=%s", name, zone)
        self.heartbeat()

    def _node_status(self, name: str) -> dict[str, Any]:
        stamp = now()
        conditions = [
            (
                "Ready",
                "True",
                "KubeletReady",
                "process kubelet is posting ready status",
            ),
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", ""),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", ""),
            ("PIDPressure", "False", "KubeletHasSufficientPID", ""),
        ]
        resources = {
            "cpu": "8",
            "memory": "16Gi",
            "pods": "110",
            "ephemeral-storage": "50Gi",
        }
        return {
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "addresses": [
                    {"type": "InternalIP", "address": self.network.gateway},
                    {"type": "Hostname", "address": name},
                ],
                "conditions": [
                    {
                        "type": kind,
                        "status": value,
                        "reason": reason,
                        "message": message or reason,
                        "lastHeartbeatTime": stamp,
                        "lastTransitionTime": stamp,
                    }
                    for kind, value, reason, message in conditions
                ],
                "nodeInfo": {
                    "machineID": name,
                    "systemUUID": name,
                    "bootID": name,
                    "kernelVersion": os.uname().release,
                    "osImage": "process kubelet",
                    "containerRuntimeVersion": "process://1",
                    "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            }
        }

    def heartbeat(self) -> None:
        """Renew every Node's Lease and Ready condition."""
        for name in self.nodes:
            self.core.patch_node_status(name, self._node_status(name))
            lease = {
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": {
                    "holderIdentity": name,
                    "leaseDurationSeconds": LEASE_SECONDS,
                    "renewTime": now_micro(),
                },
            }
            try:
                self.coordination.patch_namespaced_lease(name, "kube-node-lease", lease)
            except ApiException as err:
                if err.status != 404:
                    raise
                self.coordination.create_namespaced_lease("kube-node-lease", lease)

    def _beat(self) -> None:
        while not self.stopping.wait(HEARTBEAT_S):
            try:
                self.heartbeat()
            except Exception:
                log.exception("heartbeat failed")

    # -- pods and claims -----------------------------------------------------

    def _list(self, call: Any) -> list[dict[str, Any]]:
        response = call(_preload_content=False)
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return items

    def sync_pods(self) -> None:
        """Start a worker for every new pod of ours; tell workers what changed."""
        mine = {
            p["metadata"]["uid"]: p
            for p in self._list(self.core.list_pod_for_all_namespaces)
            if p["spec"].get("nodeName") in self.nodes
        }
        for uid, pod in mine.items():
            worker = self.workers.get(uid)
            if worker is None and uid in self.ended:
                continue
            if worker is None:
                terminal = (pod.get("status") or {}).get("phase") in (
                    "Succeeded",
                    "Failed",
                )
                if terminal and not pod["metadata"].get("deletionTimestamp"):
                    continue
                worker = PodWorker(self, pod)
                self.workers[uid] = worker
                worker.start()
            else:
                worker.update(pod)
        for uid, worker in list(self.workers.items()):
            if uid not in mine:
                worker.update(None)
            if not worker.is_alive():
                del self.workers[uid]
                self.ended.add(uid)

    def sync_claims(self) -> None:
        """A PersistentVolume for every unbound claim; release deleted ones."""
        claims = self._list(self.core.list_persistent_volume_claim_for_all_namespaces)
        volumes = {
            v["metadata"]["name"]: v
            for v in self._list(self.core.list_persistent_volume)
        }
        live = set()
        for claim in claims:
            meta, spec = claim["metadata"], claim["spec"]
            live.add(meta["uid"])
            if spec.get("volumeName") or meta.get("deletionTimestamp"):
                continue
            name = f"{PV_PREFIX}{meta['uid']}"
            if name in volumes:
                continue
            directory = self.root / "volumes" / name
            directory.mkdir(parents=True, exist_ok=True)
            request = ((spec.get("resources") or {}).get("requests") or {}).get(
                "storage", "1Gi"
            )
            volume = {
                "metadata": {
                    "name": name,
                    "annotations": {PV_ANNOTATION: "process-kubelet"},
                },
                "spec": {
                    "capacity": {"storage": request},
                    "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": spec.get("storageClassName") or "",
                    "hostPath": {"path": str(directory), "type": "DirectoryOrCreate"},
                    "claimRef": {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "namespace": meta["namespace"],
                        "name": meta["name"],
                        "uid": meta["uid"],
                    },
                },
            }
            self.core.create_persistent_volume(volume)
            log.info("volume provisioned claim=%s/%s", meta["namespace"], meta["name"])
        for name, volume in volumes.items():
            annotations = volume["metadata"].get("annotations") or {}
            owner = (volume["spec"].get("claimRef") or {}).get("uid")
            if PV_ANNOTATION not in annotations or owner in live:
                continue
            shutil.rmtree(self.root / "volumes" / name, ignore_errors=True)
            try:
                self.core.delete_persistent_volume(name)
            except ApiException as err:
                if err.status != 404:
                    raise
            log.info("volume deleted volume=%s", name)

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT; then stop every pod and the network."""
        self.network.set_up()
        forwarder = None
        if self.api_port:
            forwarder = Forwarder(self.network.gateway, self.api_port)
            forwarder.start()
        self.register()
        threading.Thread(target=self._beat, name="heartbeat", daemon=True).start()
        try:
            while not self.stopping.is_set():
                try:
                    self.sync_claims()
                    self.sync_pods()
                except (ApiException, OSError, NetworkError) as err:
                    log.warning("sync failed error=%s", err)
                self.stopping.wait(SYNC_S)
        finally:
            self.stopping.set()
            for worker in list(self.workers.values()):
                worker.join(timeout=30)
            if forwarder is not None:
                forwarder.close()
            self.network.tear_down()
            log.info("kubelet stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--zones", type=int, default=2)
    parser.add_argument("--subnet", default="10.251.0.0/24")
    parser.add_argument("--api-port", type=int, default=0)
    options = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(threadName)s %(message)s",
    )
    if os.geteuid() != 0:
        log.error("the process kubelet needs root for ip netns: run the tests as root")
        return 2
    _die_with_parent_term()
    nodes = [f"{NODE_PREFIX}{i}" for i in range(options.nodes)]
    zones = [f"zone-{ZONE_NAMES[i % options.zones]}" for i in range(options.nodes)]
    kubelet = Kubelet(
        api=kubernetes.config.new_client_from_config(options.kubeconfig),
        root=options.root,
        network=PodNetwork(options.subnet),
        nodes=nodes,
        zones=zones,
        api_port=options.api_port,
    )

    def stop(signum: int, frame: Any) -> None:
        del signum, frame
        kubelet.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    kubelet.run()
    return 0


def _die_with_parent_term() -> None:
    # The kubelet cleans up on SIGTERM, also when the test process dies.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
