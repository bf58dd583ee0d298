"""The local runtime: a StatefulSet, its pods and Jobs played by local processes.

``kredis local`` drives it in place of Kubernetes. It reports pods, the
StatefulSet and Jobs in the shapes of the observed snapshot and acts like
the StatefulSet controller (``scale``) and a kubelet (``kubelet_pass``); it
also breaks pods on purpose (``kill``). Everything it knows lives in one
state directory, so any later command, or another process, sees the same
cluster. It plans nothing and sends no cluster command to Redis.

Limitation: Linux only. Liveness is read from /proc, and every pod has its
own address in 127.0.0.0/8, which only Linux routes to the loopback device
as a whole.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, assert_never

from kredis.adapters.local_jobs import OUTPUT_FILE, LocalJobs
from kredis.adapters.local_pods import LocalPods, answers_ping
from kredis.adapters.local_process import PortInUseError, ProcessState, ProcessTable
from kredis.adapters.local_state import (
    CLUSTER_FILE,
    DEFAULT_NODE_TIMEOUT_MS,
    JOBS_DIR,
    PODS_DIR,
    AddressBook,
    ClusterRecord,
    LocalRuntimeError,
    StateDir,
    StateDirError,
    UnknownPodError,
    check_dns_label,
    ordinal_of,
    pod_name,
)
from kredis.adapters.redis_client import Address, read_credentials

_log = logging.getLogger(__name__)


class LocalRuntime:
    """Pods, StatefulSet and Jobs of one cluster as processes on this machine."""

    def __init__(
        self,
        state_dir: Path,
        *,
        redis_server: str = "redis-server",
        password_file: Path | None = None,
        node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS,
    ) -> None:
        # The cluster-node-timeout pods get once ``claim`` stored it; the
        # planner's failover waits should use the same value.
        self.node_timeout_ms = node_timeout_ms
        # Absolute and normalised: the path is part of every process' command
        # line, by which its process is recognised.
        self.state_dir = Path(os.path.abspath(state_dir))
        self._redis_server = redis_server
        self._credentials = (
            None
            if password_file is None
            else read_credentials(password_file=password_file, environ={})
        )
        self._state = StateDir(self.state_dir)
        self._processes = ProcessTable()
        self._node_name = socket.gethostname()

    # -- the cluster that owns the state directory ---------------------------

    def claim(
        self,
        *,
        namespace: str,
        name: str,
        base_port: int,
        max_memory: str,
    ) -> None:
        """Make the state directory this cluster's, or check that it is.

        Stores the settings pods start with (with the runtime's node timeout);
        changed settings apply to each pod at its next start. Raises
        ``StateDirError`` when the directory holds another cluster or other
        files, and ``LocalRuntimeError`` when ``basePort`` changes while pods
        run; nothing is changed then.
        """
        wanted = ClusterRecord.new(
            namespace=namespace,
            name=name,
            base_port=base_port,
            max_memory=max_memory,
            node_timeout_ms=self.node_timeout_ms,
        )
        current = self.cluster()
        if current is not None and current.cluster != wanted.cluster:
            raise StateDirError(
                f"state dir {self.state_dir} belongs to cluster {current.cluster}, "
                f"not {wanted.cluster}; choose another state dir, or remove that "
                "cluster's state with down --purge"
            )
        if current == wanted:
            return
        if current is not None and current.base_port != wanted.base_port:
            running = [p for p, s in self.process_states().items() if s.is_running]
            if running:
                raise LocalRuntimeError(
                    f"cannot change basePort from {current.base_port} to "
                    f"{wanted.base_port} while pods run ({', '.join(running)}); "
                    "stop them first with down"
                )

        self._state.write_cluster(wanted)
        log = self._log(wanted)
        if current is None:
            log.info("state dir claimed path=%s", self.state_dir)
        else:
            log.info("cluster settings changed path=%s", self.state_dir)

    def cluster(self) -> ClusterRecord | None:
        """The cluster that owns the state directory, None when none does.

        Raises ``StateDirError`` when the directory holds files of something
        else.
        """
        return self._state.cluster()

    # -- pods and the StatefulSet ---------------------------------------------

    def pods(self) -> list[dict[str, Any]]:
        """The snapshot ``pods`` entries, in ordinal order.

        Desired pods (ordinals below the StatefulSet's replicas) are listed
        whatever their state; a pod beyond them only while its process still
        runs, as terminating.
        """
        cluster = self.cluster()
        if cluster is None:
            return []
        replicas = self._state.replicas() or 0
        pods = self._pods(cluster)
        entries = []
        for pod in self._pod_names(cluster, replicas):
            desired = (ordinal_of(cluster.name, pod) or 0) < replicas
            state = pods.state(pod)
            if not desired and not state.is_running:
                continue
            record = pods.record(pod)
            # A stopped pod has no address, like a pod not yet scheduled.
            ip = (
                ""
                if record is None or state is ProcessState.STOPPED
                else record.address
            )
            ready = (
                record is not None
                and state.is_running
                and answers_ping(Address(ip, record.port), self._credentials)
            )
            entries.append(
                {
                    "name": pod,
                    "ip": ip,
                    "phase": _phase(state),
                    "ready": ready,
                    "terminating": not desired,
                    "nodeName": self._node_name,
                    # Limitation: one machine, so one node and no zones;
                    # replicas cannot be placed apart from their masters.
                    "zone": "",
                }
            )
        return entries

    def stateful_set(self) -> dict[str, Any] | None:
        """``{"replicas": n, "readyReplicas": r}``, None before the first scale."""
        replicas = self._state.replicas()
        if replicas is None:
            return None
        ready = sum(1 for p in self.pods() if p["ready"] and not p["terminating"])
        return {"replicas": replicas, "readyReplicas": ready}

    def scale(self, replicas: int) -> None:
        """Set the StatefulSet's replica count, as its controller would act.

        Pods ``0..replicas-1`` that do not run are started (all at once, as
        with ``podManagementPolicy: Parallel``); running pods of higher
        ordinals are stopped, highest first, and keep their data directories
        as their volumes would survive. Every pod to start is checked first:
        a missing redis-server or a port in use changes nothing.
        """
        cluster = self._claimed()
        if replicas < 0:
            raise LocalRuntimeError(f"replicas must be 0 or more, got {replicas}")
        pods = self._pods(cluster)
        book = self._state.address_book(cluster)
        desired = [pod_name(cluster.name, n) for n in range(replicas)]
        to_start = [pod for pod in desired if not pods.state(pod).is_running]
        if to_start:
            pods.redis_server()
        log = self._log(cluster)
        for pod in to_start:
            book = _placed(book, pods, pod, log)
            pods.check_ports(pod, _address(book, pod), cluster.base_port)

        self._state.write_address_book(book)
        if replicas != self._state.replicas():
            self._state.write_replicas(replicas)
            log.info("statefulset scaled replicas=%s", replicas)
        extra = [
            pod
            for pod in self._pod_names(cluster, replicas)
            if (ordinal_of(cluster.name, pod) or 0) >= replicas
        ]
        for pod in reversed(extra):
            pods.stop(pod)
        for pod in to_start:
            record = pods.start(pod, cluster=cluster, address=_address(book, pod))
            log.info(
                "pod started pod=%s address=%s:%s pid=%s",
                pod,
                record.address,
                record.port,
                record.pid,
            )

    def kubelet_pass(self) -> list[str]:
        """Start again every desired pod whose process is not running.

        Returns the pods started. A pod whose port is taken is left down
        with a warning, to be tried again at the next pass.
        """
        # Limitation: no back-off; a pod that crashes at once is started
        # again at every pass, where a kubelet would wait longer each time.
        cluster = self.cluster()
        replicas = self._state.replicas()
        if cluster is None or not replicas:
            return []
        pods = self._pods(cluster)
        book = self._state.address_book(cluster)
        log = self._log(cluster)
        started = []
        for ordinal in range(replicas):
            pod = pod_name(cluster.name, ordinal)
            state = pods.state(pod)
            if state.is_running:
                continue
            placed = _placed(book, pods, pod, log)
            if placed != book:
                book = placed
                self._state.write_address_book(book)
            address = _address(book, pod)
            try:
                pods.check_ports(pod, address, cluster.base_port)
            except PortInUseError as err:
                log.warning("pod not restarted pod=%s problem=%s", pod, err)
                continue
            record = pods.start(pod, cluster=cluster, address=address)
            log.info(
                "pod restarted pod=%s was=%s address=%s:%s pid=%s",
                pod,
                state.value,
                record.address,
                record.port,
                record.pid,
            )
            started.append(pod)
        return started

    def address_of(self, pod: str) -> Address:
        """Where the pod serves: its running address, else its next one."""
        cluster = self._claimed()
        pods = self._pods(cluster)
        record = pods.record(self._check_pod(cluster, pod))
        if record is not None and pods.state(pod).is_running:
            return Address(record.address, record.port)
        address = self._state.address_book(cluster).get(pod)
        if address is None:
            raise UnknownPodError(f"pod {pod} has no address: it never started")
        return Address(address, cluster.base_port)

    def kill(self, pod: str, *, lose_data: bool = False, new_ip: bool = False) -> None:
        """kill -9 a pod's process; it stays down until the next kubelet pass.

        ``lose_data`` also empties its data directory (a lost volume: the pod
        comes back with a new node id, and on a new address as every pod on
        an empty disk does); ``new_ip`` gives it another address at its next
        start (same name, data and node id).
        """
        cluster = self._claimed()
        pods = self._pods(cluster)
        self._check_pod(cluster, pod)
        book = self._state.address_book(cluster)
        if book.get(pod) is None and pods.record(pod) is None:
            raise UnknownPodError(f"pod {pod} never started; nothing to kill")
        pods.kill(pod)
        if lose_data:
            pods.wipe_data(pod)
        if new_ip:
            book = book.with_new_address(pod)
            self._state.write_address_book(book)
            self._log(cluster).info(
                "pod address changed pod=%s address=%s", pod, book.get(pod)
            )

    def process_states(self) -> dict[str, ProcessState]:
        """Each pod's process, desired or not, by pod name in ordinal order."""
        cluster = self.cluster()
        if cluster is None:
            return {}
        pods = self._pods(cluster)
        names = self._pod_names(cluster, self._state.replicas() or 0)
        return {pod: pods.state(pod) for pod in names}

    def pod_log(self, pod: str) -> Path:
        """The Redis log file of a pod."""
        cluster = self._claimed()
        return self._pods(cluster).paths(self._check_pod(cluster, pod)).log

    def down(self, *, purge: bool = False) -> None:
        """Stop every Job and pod; ``purge`` also deletes the state directory.

        The StatefulSet keeps its replica count, so the next ``scale`` or
        ``kubelet_pass`` starts the pods again with their data.
        """
        cluster = self.cluster()
        if cluster is not None:
            log = self._log(cluster)
            self._jobs(cluster).stop_all()
            pods = self._pods(cluster)
            for pod in reversed(self._pod_names(cluster, 0)):
                pods.stop(pod)
            log.info("cluster stopped path=%s", self.state_dir)
        if purge and self.state_dir.exists():
            self._state.purge()
            _log.info("state dir purged path=%s", self.state_dir)

    # -- Jobs ------------------------------------------------------------------

    def jobs(self) -> list[dict[str, Any]]:
        """The snapshot ``jobs`` entries, by name."""
        cluster = self.cluster()
        return [] if cluster is None else self._jobs(cluster).entries()

    def start_job(
        self,
        *,
        name: str,
        argv: Sequence[str],
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        env: Mapping[str, str],
    ) -> None:
        """Start a Job running ``argv`` with ``env`` added to the environment.

        Raises ``JobExistsError`` when a Job of that name exists.
        """
        cluster = self._claimed()
        self._jobs(cluster).start(
            name=name, argv=argv, labels=labels, annotations=annotations, env=env
        )

    def delete_job(self, name: str) -> None:
        """Stop a Job if it runs and remove it; a missing Job is no error."""
        cluster = self.cluster()
        if cluster is not None:
            self._jobs(cluster).delete(name)

    def job_log(self, name: str) -> Path:
        """The file with a Job's standard output and error."""
        check_dns_label("Job name", name)
        return self.state_dir / JOBS_DIR / name / OUTPUT_FILE

    # -- status ----------------------------------------------------------------

    def read_status(self) -> dict[str, Any]:
        """The stored Kredis status; {} when there is none or it is damaged."""
        try:
            data = self._state.read_status()
        except StateDirError as err:
            _log.warning("status unreadable problem=%s", err)
            return {}
        return data if isinstance(data, dict) else {}

    def write_status(self, status: Mapping[str, Any]) -> None:
        """Store the Kredis status (atomically)."""
        self._claimed()
        self._state.write_status(status)

    # -- helpers ---------------------------------------------------------------

    def _claimed(self) -> ClusterRecord:
        cluster = self.cluster()
        if cluster is None:
            raise StateDirError(
                f"no kredis local cluster in {self.state_dir} (no {CLUSTER_FILE})"
            )
        return cluster

    def _log(self, cluster: ClusterRecord) -> logging.LoggerAdapter[logging.Logger]:
        return logging.LoggerAdapter(_log, _log_extra(cluster))

    def _pods(self, cluster: ClusterRecord) -> LocalPods:
        return LocalPods(
            self.state_dir / PODS_DIR,
            processes=self._processes,
            redis_server=self._redis_server,
            credentials=self._credentials,
            log_extra=_log_extra(cluster),
        )

    def _jobs(self, cluster: ClusterRecord) -> LocalJobs:
        return LocalJobs(
            self.state_dir / JOBS_DIR,
            processes=self._processes,
            log_extra=_log_extra(cluster),
        )

    def _pod_names(self, cluster: ClusterRecord, replicas: int) -> list[str]:
        # Every pod with a directory, and every desired one, by ordinal.
        ordinals = set(range(replicas))
        for pod in self._pods(cluster).known():
            ordinal = ordinal_of(cluster.name, pod)
            if ordinal is not None:
                ordinals.add(ordinal)
        return [pod_name(cluster.name, n) for n in sorted(ordinals)]

    def _check_pod(self, cluster: ClusterRecord, pod: str) -> str:
        if ordinal_of(cluster.name, pod) is None:
            raise UnknownPodError(
                f"{pod!r} is not a pod of cluster {cluster.cluster}: expected "
                f"{cluster.name}-<ordinal>"
            )
        return pod


def _log_extra(cluster: ClusterRecord) -> dict[str, object]:
    # "name" is taken by the logger's name in every log record.
    return {"namespace": cluster.namespace, "cluster": cluster.cluster}


def _placed(
    book: AddressBook,
    pods: LocalPods,
    pod: str,
    log: logging.LoggerAdapter[logging.Logger],
) -> AddressBook:
    # The book with the address ``pod`` starts at. A pod back on an empty
    # disk is a new pod, as in Kubernetes, and gets a new address: Redis
    # replicas follow their master by address, and the replicas of the node
    # the pod was would otherwise copy its empty dataset at once.
    # Limitation: only here; on Kubernetes a pod that keeps its address on a
    # new disk (hostNetwork) empties its replicas before kredis can act.
    if book.get(pod) is None:
        return book.with_new_address(pod)
    if pods.has_identity(pod):
        return book
    moved = book.with_new_address(pod)
    log.info(
        "pod address changed pod=%s address=%s reason=%s",
        pod,
        moved.get(pod),
        "empty disk",
    )
    return moved


def _address(book: AddressBook, pod: str) -> str:
    address = book.get(pod)
    if address is None:
        raise UnknownPodError(f"pod {pod} has no address")
    return address


def _phase(state: ProcessState) -> str:
    match state:
        case ProcessState.RUNNING:
            return "Running"
        case ProcessState.CRASHED:
            return "Failed"
        case ProcessState.STOPPED:
            return "Pending"
        case _:
            assert_never(state)
