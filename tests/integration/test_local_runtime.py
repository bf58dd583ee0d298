"""Integration: the local runtime runs pods and Jobs as real local processes.

Each test claims a fresh state directory for a cluster whose name holds this
process' id, so its loopback /24 (127.<a>.<b>, never 127.0) differs from
other runs'; the fixture stops every process and purges the directory even
when the test fails. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kredis.adapters.local_process import PortInUseError, ProcessState
from kredis.adapters.local_runtime import LocalRuntime
from kredis.adapters.local_state import LocalRuntimeError, StateDirError
from kredis.adapters.redis_client import (
    Address,
    ConnectionSettings,
    Credentials,
    RedisAuthenticationError,
    RedisNode,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("redis-server") is None, reason="needs redis-server installed"
    ),
]

NAMESPACE = "kredis-test"
BASE_PORT = 7379
TIMEOUT_S = 20.0
POLL_S = 0.05
_names = itertools.count()


def unique_name() -> str:
    """A cluster name no other test or concurrent run uses."""
    return f"lr{os.getpid()}-{next(_names)}"


def wait_for(problem: Callable[[], str], *, what: str) -> None:
    """Poll until ``problem`` returns "", or fail with its last answer."""
    deadline = time.monotonic() + TIMEOUT_S
    last = problem()
    while last:
        if time.monotonic() >= deadline:
            pytest.fail(f"waited {TIMEOUT_S} s for {what}: {last}")
        time.sleep(POLL_S)
        last = problem()


def wait_ready(runtime: LocalRuntime, count: int) -> list[dict[str, object]]:
    """Wait until the runtime reports ``count`` pods, all ready; those pods."""

    def problem() -> str:
        pods = runtime.pods()
        ready = [p["name"] for p in pods if p["ready"]]
        if len(pods) == count and len(ready) == count:
            return ""
        return f"{len(ready)} of {len(pods)} pods ready, {count} wanted"

    wait_for(problem, what=f"{count} ready pods")
    return runtime.pods()


def node(address: Address, password: str | None = None) -> RedisNode:
    """A connection to one pod, with the password when given."""
    credentials = None if password is None else Credentials(password=password)
    return RedisNode(address, ConnectionSettings(credentials=credentials))


def my_id(runtime: LocalRuntime, pod: str) -> str:
    """CLUSTER MYID of a pod."""
    with node(runtime.address_of(pod)) as connection:
        return connection.text("CLUSTER", "MYID")


def claim(runtime: LocalRuntime, name: str) -> None:
    """Claim the runtime's state dir for a test cluster."""
    runtime.claim(
        namespace=NAMESPACE, name=name, base_port=BASE_PORT, max_memory="32mb"
    )


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LocalRuntime]:
    """A claimed runtime whose processes are all stopped at the end."""
    local = LocalRuntime(tmp_path / "state")
    claim(local, unique_name())
    try:
        yield local
    finally:
        local.down(purge=True)


def pid_gone(pid: int) -> bool:
    """Whether no live process has this pid (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in {"Z", "X"}


def processes_under(directory: Path) -> dict[int, bytes]:
    """The command line of every process that names ``directory``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(directory).encode() in cmdline:
            found[int(entry.name)] = cmdline
    return found


def test_scale_up_starts_ready_pods_on_distinct_loopback_addresses(
    runtime: LocalRuntime,
) -> None:
    """Scaling to 3 starts three pods that answer PING, each on its own address."""
    cluster = runtime.cluster()
    assert cluster is not None

    runtime.scale(3)
    pods = wait_ready(runtime, 3)

    assert [p["name"] for p in pods] == [f"{cluster.name}-{n}" for n in range(3)]
    assert all(p["phase"] == "Running" and not p["terminating"] for p in pods)
    ips = [str(p["ip"]) for p in pods]
    assert len(set(ips)) == 3
    assert all(ip.startswith(f"{cluster.subnet}.") for ip in ips)
    assert not cluster.subnet.startswith("127.0.")
    for pod in pods:
        address = runtime.address_of(str(pod["name"]))
        assert address == Address(str(pod["ip"]), BASE_PORT)
        with node(address) as connection:
            assert connection.call("PING") == b"PONG"
    assert runtime.stateful_set() == {"replicas": 3, "readyReplicas": 3}


def test_scale_down_stops_highest_ordinals_and_keeps_their_data(
    runtime: LocalRuntime,
) -> None:
    """Scaling 3 to 1 stops pods 2 and 1; scaled up again, pod 2 has its node id."""
    runtime.scale(3)
    pods = [str(p["name"]) for p in wait_ready(runtime, 3)]
    last_id = my_id(runtime, pods[2])

    runtime.scale(1)

    assert [p["name"] for p in runtime.pods()] == pods[:1]
    assert runtime.process_states() == {
        pods[0]: ProcessState.RUNNING,
        pods[1]: ProcessState.STOPPED,
        pods[2]: ProcessState.STOPPED,
    }
    for pod in pods[1:]:
        assert (runtime.state_dir / "pods" / pod / "data" / "nodes.conf").is_file()

    runtime.scale(3)
    wait_ready(runtime, 3)

    assert my_id(runtime, pods[2]) == last_id


def test_killed_pod_is_restarted_by_kubelet_pass_with_its_node_id(
    runtime: LocalRuntime,
) -> None:
    """A pod killed with -9 shows as failed, and the kubelet pass restarts it."""
    runtime.scale(2)
    pod = str(wait_ready(runtime, 2)[1]["name"])
    before = my_id(runtime, pod)

    runtime.kill(pod)
    after_kill = runtime.pods()[1]
    restarted = runtime.kubelet_pass()
    wait_ready(runtime, 2)

    assert after_kill["phase"] == "Failed"
    assert after_kill["ready"] is False
    assert restarted == [pod]
    assert my_id(runtime, pod) == before


def test_kill_with_lost_data_comes_back_with_a_new_node_id(
    runtime: LocalRuntime,
) -> None:
    """A pod that lost its volume starts empty, with a new node id."""
    runtime.scale(1)
    pod = str(wait_ready(runtime, 1)[0]["name"])
    before = my_id(runtime, pod)

    runtime.kill(pod, lose_data=True)
    runtime.kubelet_pass()
    wait_ready(runtime, 1)

    assert my_id(runtime, pod) != before


def test_kill_with_new_ip_comes_back_elsewhere_with_its_node_id(
    runtime: LocalRuntime,
) -> None:
    """A pod given a new address restarts there, keeping its data and node id."""
    runtime.scale(2)
    pods = wait_ready(runtime, 2)
    pod, old_ip = str(pods[0]["name"]), str(pods[0]["ip"])
    before = my_id(runtime, pod)

    runtime.kill(pod, new_ip=True)
    runtime.kubelet_pass()
    new_ip = str(wait_ready(runtime, 2)[0]["ip"])

    assert new_ip not in {old_ip, pods[1]["ip"]}
    assert runtime.address_of(pod) == Address(new_ip, BASE_PORT)
    assert my_id(runtime, pod) == before


def test_port_in_use_refuses_scale_and_starts_nothing(runtime: LocalRuntime) -> None:
    """A port taken on a pod's address stops the scale before any pod starts."""
    cluster = runtime.cluster()
    assert cluster is not None
    # Hosts are handed out in turn from .1, so pod 1 would get .2.
    taken = f"{cluster.subnet}.2"

    with socket.socket() as squatter:
        squatter.bind((taken, BASE_PORT))
        squatter.listen()
        with pytest.raises(PortInUseError) as refused:
            runtime.scale(3)

    assert f"{taken} port {BASE_PORT} is in use" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert runtime.stateful_set() is None
    assert runtime.pods() == []
    assert processes_under(runtime.state_dir) == {}


def test_state_dir_of_another_cluster_is_refused(runtime: LocalRuntime) -> None:
    """Claiming a state dir that another cluster owns fails and changes nothing."""
    runtime.scale(1)
    wait_ready(runtime, 1)
    owner = runtime.cluster()
    other = LocalRuntime(runtime.state_dir)

    with pytest.raises(StateDirError, match="belongs to cluster"):
        claim(other, unique_name())

    assert runtime.cluster() == owner
    assert other.cluster() == owner
    assert len(wait_ready(runtime, 1)) == 1


def test_base_port_change_is_refused_while_pods_run(runtime: LocalRuntime) -> None:
    """A new basePort for running pods is refused; the pods keep serving."""
    runtime.scale(1)
    wait_ready(runtime, 1)
    owner = runtime.cluster()
    assert owner is not None

    with pytest.raises(LocalRuntimeError, match="while pods run"):
        runtime.claim(
            namespace=NAMESPACE,
            name=owner.name,
            base_port=BASE_PORT + 1,
            max_memory="32mb",
        )

    assert runtime.cluster() == owner
    assert runtime.address_of(f"{owner.name}-0").port == BASE_PORT


def test_password_is_required_and_stays_out_of_argv_files_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With a password file, PING needs the password, which no argv or log shows."""
    # Quotes, a backslash and a space: the config file must escape them.
    password = f'pw {os.getpid()} "se\\cret"'
    password_file = tmp_path / "password"
    password_file.write_text(password + "\n", encoding="utf-8")
    runtime = LocalRuntime(tmp_path / "state", password_file=password_file)
    caplog.set_level(logging.DEBUG)
    try:
        claim(runtime, unique_name())
        runtime.scale(2)
        pods = wait_ready(runtime, 2)
        runtime.start_job(
            name="waits",
            argv=["sleep", "60"],
            labels={},
            annotations={},
            env={"KREDIS_REDIS_PASSWORD": password},
        )
        address = runtime.address_of(str(pods[0]["name"]))

        with node(address) as anonymous, pytest.raises(RedisAuthenticationError):
            anonymous.call("PING")
        with node(address, password) as authenticated:
            assert authenticated.call("PING") == b"PONG"
        commands = processes_under(runtime.state_dir)
        assert len(commands) == 3
        assert all(password.encode() not in argv for argv in commands.values())
        auth_files = set(runtime.state_dir.glob("pods/*/auth.conf"))
        assert len(auth_files) == 2
        assert all(path.stat().st_mode & 0o777 == 0o600 for path in auth_files)
        for path in runtime.state_dir.rglob("*"):
            if path.is_file() and path not in auth_files:
                assert password.encode() not in path.read_bytes(), path
        assert password not in caplog.text
    finally:
        runtime.down(purge=True)


def test_job_exit_codes_become_conditions_seen_by_a_new_runtime(
    runtime: LocalRuntime,
) -> None:
    """Jobs exiting 0 and 1 end Complete and Failed, as a later observer sees."""
    for name, code in (("ends-well", 0), ("ends-badly", 1)):
        runtime.start_job(
            name=name,
            argv=["/bin/sh", "-c", f"echo $GREETING; exit {code}"],
            labels={"kredis.io/cluster": "demo"},
            annotations={"kredis.io/moves": "[]"},
            env={"GREETING": "hello"},
        )
    observer = LocalRuntime(runtime.state_dir)

    def problem() -> str:
        active = [job["name"] for job in observer.jobs() if job["active"]]
        return f"still active: {active}" if active else ""

    wait_for(problem, what="both Jobs to end")
    jobs = {job.pop("name"): job for job in observer.jobs()}

    common = {
        "labels": {"kredis.io/cluster": "demo"},
        "annotations": {"kredis.io/moves": "[]"},
        "active": 0,
    }
    assert jobs == {
        "ends-well": common
        | {
            "succeeded": 1,
            "failed": 0,
            "conditions": [{"type": "Complete", "status": "True"}],
        },
        "ends-badly": common
        | {
            "succeeded": 0,
            "failed": 1,
            "conditions": [{"type": "Failed", "status": "True"}],
        },
    }
    assert runtime.job_log("ends-well").read_text(encoding="utf-8") == "hello\n"


def test_running_job_is_active_and_delete_job_stops_it(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    """delete_job stops a running Job's command and removes the Job."""
    pid_file = tmp_path / "job.pid"
    runtime.start_job(
        name="sleeps",
        argv=["/bin/sh", "-c", f"echo $$ > {pid_file}; exec sleep 600"],
        labels={},
        annotations={},
        env={},
    )
    wait_for(
        lambda: "" if pid_file.is_file() and pid_file.read_text() else "no pid yet",
        what="the Job's command to start",
    )
    pid = int(pid_file.read_text(encoding="utf-8"))
    [job] = runtime.jobs()

    runtime.delete_job("sleeps")

    assert (job["active"], job["conditions"]) == (1, [])
    wait_for(lambda: "" if pid_gone(pid) else f"pid {pid} alive", what="the stop")
    assert runtime.jobs() == []
    assert not (runtime.state_dir / "jobs" / "sleeps").exists()


def test_processes_outlive_their_runtime_and_down_stops_them(
    runtime: LocalRuntime,
) -> None:
    """A new runtime finds running pods; down stops them and keeps the data."""
    runtime.scale(2)
    wait_ready(runtime, 2)
    pids = list(processes_under(runtime.state_dir))
    later = LocalRuntime(runtime.state_dir)

    assert len(wait_ready(later, 2)) == 2
    later.down()

    assert set(later.process_states().values()) == {ProcessState.STOPPED}
    assert all(pid_gone(pid) for pid in pids)
    assert [p["phase"] for p in later.pods()] == ["Pending", "Pending"]
    assert later.stateful_set() == {"replicas": 2, "readyReplicas": 0}
    record = json.loads((runtime.state_dir / "statefulset.json").read_text())
    assert record == {"replicas": 2}


def test_down_with_purge_removes_the_state_dir(runtime: LocalRuntime) -> None:
    """down --purge stops the pods and deletes the whole state directory."""
    runtime.scale(1)
    wait_ready(runtime, 1)
    pids = list(processes_under(runtime.state_dir))

    runtime.down(purge=True)

    assert not runtime.state_dir.exists()
    assert pids
    assert all(pid_gone(pid) for pid in pids)
