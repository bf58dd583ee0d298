"""Benchmark: keys moved per second, kredis' migrate() against redis-cli.

In one run on one machine, with redis-server processes on loopback (127.x):

1. redis-cli: four fresh nodes, three made masters by ``redis-cli --cluster
   create`` (no replicas), N keys of 100 bytes loaded, then
   (a) grow 3 -> 4: ``--cluster add-node`` and ``--cluster rebalance
   --cluster-use-empty-masters --cluster-pipeline 1000``;
   (b) shrink 4 -> 3: ``--cluster rebalance --cluster-weight <id>=0
   --cluster-pipeline 1000``.
2. kredis: four more fresh nodes, the same creation and the same keys, then
   ``migrate()`` moves the same number of slots from each master as redis-cli
   did (grow), and drains the fourth master back (shrink).

3. create: six fresh nodes made a 3-master, 1-replica cluster by
   ``redis-cli --cluster create --cluster-replicas 1``, then wiped and made
   the same cluster by kredis' operator loop; each timed until every node
   agrees and every replica is linked.

Each direction prints keys moved, seconds, keys/s and the ratio kredis /
redis-cli. After every step it checks that no key was lost: the DBSIZE sum
equals N and a sample of keys read from their owners has the loaded values.
Run: ``.venv/bin/python bench/reshard_vs_redis_cli.py [--keys 500000]``.
"""

from __future__ import annotations

import argparse
import binascii
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kredis.adapters.redis_client import (
    Address,
    ConnectionSettings,
    RedisNode,
    RedisNodeError,
)
from kredis.adapters.redis_cluster import RedisCluster, engine_resume
from kredis.adapters.redis_migration import (
    MigrationProgress,
    MigrationTuning,
    Move,
    migrate,
)
from kredis.app.reconcile import Reconciler
from kredis.domain.context import PlannerSettings
from kredis.domain.nodes import ClusterView
from kredis.domain.slots import SLOT_COUNT, ranges_from_slots

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
PORT = 6379
VALUE_BYTES = 100
SAMPLE = 2000
WAIT_S = 60.0
SETTINGS = ConnectionSettings(command_timeout_s=60.0)


@dataclass(frozen=True)
class Step:
    """One timed resharding step."""

    keys: int
    slots: int
    seconds: float

    @property
    def rate(self) -> float:
        """Keys moved per second."""
        return self.keys / self.seconds


# -- servers ------------------------------------------------------------------


@dataclass
class Server:
    """One redis-server child process."""

    address: Address
    process: subprocess.Popen[bytes]

    def node(self) -> RedisNode:
        """A new connection to the server."""
        return RedisNode(self.address, SETTINGS)

    def call(self, *args: str | int) -> Any:
        """One command on a short-lived connection."""
        with self.node() as node:
            return node.call(*args)

    def view(self) -> ClusterView:
        """The server's CLUSTER NODES, parsed by kredis."""
        with self.node() as node:
            return ClusterView.parse(node.text("CLUSTER", "NODES"))


@contextmanager
def servers(root: Path, subnet: str, count: int) -> Iterator[list[Server]]:
    """Start ``count`` cluster-enabled servers on ``<subnet>.1..count``."""
    started: list[Server] = []
    try:
        for index in range(1, count + 1):
            ip = f"{subnet}.{index}"
            directory = root / ip
            directory.mkdir(parents=True)
            (directory / "redis.conf").write_text(
                "\n".join(
                    [
                        f"bind {ip}",
                        f"port {PORT}",
                        "protected-mode no",
                        "cluster-enabled yes",
                        "cluster-config-file nodes.conf",
                        "cluster-node-timeout 5000",
                        f"cluster-announce-ip {ip}",
                        f"bind-source-addr {ip}",
                        f'dir "{directory}"',
                        f'logfile "{directory / "redis.log"}"',
                        "appendonly no",
                        'save ""',
                        "",
                    ]
                ),
                encoding="utf-8",
            )
            process = subprocess.Popen(
                [REDIS_SERVER, str(directory / "redis.conf")],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            started.append(Server(Address(ip, PORT), process))
        for server in started:
            wait_until(lambda s=server: _answers(s), what=f"{server.address} to start")
        yield started
    finally:
        for server in started:
            server.process.kill()
            server.process.wait()


def _answers(server: Server) -> bool:
    try:
        return server.call("PING") in {b"PONG", "PONG", True}
    except RedisNodeError:
        return False


def wait_until(check: object, *, what: str) -> None:
    """Poll ``check()`` until it is true, or give up after WAIT_S."""
    assert callable(check)
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"gave up waiting for {what}")
        time.sleep(0.05)


def agreed(nodes: Sequence[Server]) -> bool:
    """Every node knows every other, serves ok, and all views agree on slots."""
    try:
        views = [server.view() for server in nodes]
        infos = [server.call("CLUSTER", "INFO") for server in nodes]
    except RedisNodeError:
        return False
    ids = {view.myself.node_id for view in views}
    return (
        all(view.known_ids | {view.myself.node_id} == ids for view in views)
        and all(b"cluster_state:ok" in info for info in infos)
        and len({view.ownership for view in views}) == 1
    )


def redis_cli(*args: str, log: Path) -> float:
    """Run ``redis-cli --cluster ...``; seconds it took. Output goes to ``log``."""
    started = time.monotonic()
    with log.open("ab") as output:
        done = subprocess.run(
            [REDIS_CLI, *args],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"redis-cli {' '.join(args)} failed; see {log}")
    return seconds


def cli_create(nodes: Sequence[Server], log: Path, *, replicas: int) -> float:
    """``redis-cli --cluster create`` of the nodes; the command's seconds."""
    return redis_cli(
        "--cluster",
        "create",
        *[str(server.address) for server in nodes],
        "--cluster-replicas",
        str(replicas),
        "--cluster-yes",
        log=log,
    )


def create(nodes: Sequence[Server], log: Path) -> float:
    """``redis-cli --cluster create`` of the nodes as masters; its seconds."""
    seconds = cli_create(nodes, log, replicas=0)
    wait_until(lambda: agreed(nodes), what="the created cluster to agree")
    return seconds


@dataclass
class BenchPlatform:
    """Pods ``demo-0..5`` played by already started servers; status in memory.

    The same role as the local runtime's platform, without starting anything,
    so both tools work on the very same servers.
    """

    nodes: Sequence[Server]
    status: dict[str, Any]

    def resource(self) -> dict[str, Any]:
        return {
            "apiVersion": "kredis.io/v1alpha1",
            "kind": "Kredis",
            "metadata": {"name": "demo", "namespace": "bench", "generation": 1},
            "spec": {
                "masters": 3,
                "replicas": 1,
                "basePort": PORT,
                "image": "redis",
                "maxMemory": "",
            },
            "status": dict(self.status),
        }

    def pods(self) -> list[dict[str, Any]]:
        return [
            {"name": f"demo-{n}", "ip": server.address.host, "ready": True}
            for n, server in enumerate(self.nodes)
        ]

    def stateful_set(self) -> dict[str, Any] | None:
        return {"replicas": len(self.nodes), "readyReplicas": len(self.nodes)}

    def jobs(self) -> list[dict[str, Any]]:
        return []

    def scale(self, replicas: int) -> None:
        del replicas

    def start_job(self, *, name: str, args: Sequence[str]) -> None:
        sys.exit(f"creation started a Job {name}: {args}")

    def delete_job(self, name: str) -> None:
        del name

    def write_status(self, status: dict[str, Any]) -> None:
        self.status = status


def wipe(nodes: Sequence[Server]) -> None:
    """Make every server a fresh, empty node that knows nobody."""
    for server in nodes:
        with server.node() as node:
            if server.view().myself.is_replica:
                node.call("CLUSTER", "RESET", "HARD")
            node.call("FLUSHALL")
            node.call("CLUSTER", "RESET", "HARD")
    wait_until(
        lambda: all(not s.view().known_ids for s in nodes), what="nodes to be wiped"
    )


def roles_settled(nodes: Sequence[Server]) -> bool:
    """Three masters, three replicas, every view agreeing, all ok."""
    if not agreed(nodes):
        return False
    replicas = [s for s in nodes if s.view().myself.is_replica]
    return len(replicas) == 3 and all(
        b"master_link_status:up" in s.call("INFO", "replication") for s in replicas
    )


def time_create(root: Path, subnet: str) -> tuple[float, float]:
    """Seconds until a 3x1 cluster has converged: redis-cli, then kredis.

    Both run on the same six servers (wiped in between). redis-cli is timed
    from its start until every node agrees and every replica is linked;
    kredis runs the operator loop's passes as ``kredis local up`` does
    (observe, plan, apply, a 0.3 s pause after a pass that only waited)
    until the planner says converged, then the same check.
    """
    log = root / "create.log"
    with servers(root / "create", subnet, 6) as nodes:
        started = time.monotonic()
        cli_create(nodes, log, replicas=1)
        wait_until(lambda: roles_settled(nodes), what="redis-cli's cluster")
        cli_s = time.monotonic() - started

        wipe(nodes)
        platform = BenchPlatform(nodes=nodes, status={})
        reconciler = Reconciler(
            platform=platform,
            redis=RedisCluster(SETTINGS, resume=engine_resume(SETTINGS)),
            settings=PlannerSettings(node_timeout_ms=5000),
        )
        started = time.monotonic()
        while True:
            report = reconciler.run_pass()
            if report.converged:
                break
            if report.failure:
                sys.exit(f"kredis creation failed: {report.failure}")
            if not report.plan.mutating:
                time.sleep(0.3)
            if time.monotonic() - started > WAIT_S:
                sys.exit("kredis creation did not converge")
        wait_until(lambda: roles_settled(nodes), what="kredis' cluster")
        kredis_s = time.monotonic() - started
    return cli_s, kredis_s


# -- data ---------------------------------------------------------------------


def key_of(number: int) -> bytes:
    """The name of key ``number``."""
    return b"k:%07d" % number


def value_of(number: int) -> bytes:
    """The 100-byte value of key ``number``; it names the key."""
    return (b"v:%07d:" % number).ljust(VALUE_BYTES, b"x")


def slot_of(key: bytes) -> int:
    """Redis Cluster's hash slot of a key without hash tags (CRC16/XMODEM)."""
    return binascii.crc_hqx(key, 0) % SLOT_COUNT


def owners(server: Server) -> dict[int, Address]:
    """Slot -> owner address, from one node's view."""
    view = server.view()
    by_id = {e.node_id: Address(e.ip, e.port) for e in view.entries}
    return {slot: by_id[owner] for slot, owner in view.slot_owners().items()}


def load(nodes: Sequence[Server], count: int) -> float:
    """SET keys 0..count-1 at their owners with ``redis-cli --pipe``; seconds."""
    started = time.monotonic()
    owner = owners(nodes[0])
    chunks: dict[Address, list[bytes]] = {}
    for number in range(count):
        key, value = key_of(number), value_of(number)
        chunks.setdefault(owner[slot_of(key)], []).append(
            b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
            % (len(key), key, len(value), value)
        )
    loaders = [
        subprocess.Popen(
            [REDIS_CLI, "-h", address.host, "-p", str(address.port), "--pipe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        for address in chunks
    ]
    for loader, data in zip(loaders, chunks.values(), strict=True):
        assert loader.stdin is not None
        loader.stdin.write(b"".join(data))
        loader.stdin.close()
    for loader in loaders:
        if loader.wait() != 0:
            sys.exit("redis-cli --pipe failed while loading keys")
    return time.monotonic() - started


def check_no_key_lost(nodes: Sequence[Server], count: int, *, when: str) -> None:
    """The masters' DBSIZE sum is ``count``; sampled keys have their values.

    A master drained of its last slot turns into a replica and copies its new
    master's keys, so only nodes that are masters in their own view count.
    """
    masters = [server for server in nodes if server.view().myself.is_master]
    total = sum(int(server.call("DBSIZE")) for server in masters)
    if total != count:
        sys.exit(f"{when}: DBSIZE sum is {total}, expected {count}: keys were lost")
    owner = owners(nodes[0])
    sample = random.Random(when).sample(range(count), min(SAMPLE, count))
    by_owner: dict[Address, list[int]] = {}
    for number in sample:
        by_owner.setdefault(owner[slot_of(key_of(number))], []).append(number)
    for address, numbers in by_owner.items():
        with RedisNode(address, SETTINGS) as node:
            values = node.pipeline([("GET", key_of(n)) for n in numbers])
        wrong = [n for n, v in zip(numbers, values, strict=True) if v != value_of(n)]
        if wrong:
            sys.exit(
                f"{when}: key {key_of(wrong[0])!r} at {address} has lost its value"
            )


def check_drained(server: Server, *, tool: str) -> None:
    """The drained master serves no slot and holds no key of its own."""
    mine = server.view().myself
    if mine.slots or (mine.is_master and int(server.call("DBSIZE")) != 0):
        sys.exit(f"{tool}: the drained master still holds slots or keys")


def slot_counts(server: Server) -> dict[str, int]:
    """Node id -> number of slots, from one node's view."""
    counts: dict[str, int] = {}
    for owner in server.view().slot_owners().values():
        counts[owner] = counts.get(owner, 0) + 1
    return counts


# -- the two contestants ------------------------------------------------------


def run_redis_cli(
    root: Path, subnet: str, count: int
) -> tuple[Step, Step, list[int], float]:
    """Grow and shrink with redis-cli; also the slots each master gave away."""
    log = root / "redis-cli.log"
    with servers(root / "redis-cli", subnet, 4) as nodes:
        masters, spare = nodes[:3], nodes[3]
        create_s = create(masters, log)
        load(masters, count)
        check_no_key_lost(masters, count, when="redis-cli: after loading")
        before = slot_counts(masters[0])

        redis_cli(
            "--cluster",
            "add-node",
            str(spare.address),
            str(masters[0].address),
            log=log,
        )
        wait_until(lambda: agreed(nodes), what="the added node to be known")
        seconds = redis_cli(
            "--cluster",
            "rebalance",
            str(masters[0].address),
            "--cluster-use-empty-masters",
            "--cluster-pipeline",
            "1000",
            log=log,
        )
        after = slot_counts(masters[0])
        spare_id = spare.view().myself.node_id
        grow = Step(int(spare.call("DBSIZE")), after[spare_id], seconds)
        given = {node_id: before[node_id] - after.get(node_id, 0) for node_id in before}
        wait_until(lambda: agreed(nodes), what="the cluster to settle after growing")
        check_no_key_lost(nodes, count, when="redis-cli: after growing")

        keys = int(spare.call("DBSIZE"))
        seconds = redis_cli(
            "--cluster",
            "rebalance",
            str(masters[0].address),
            "--cluster-weight",
            f"{spare_id}=0",
            "--cluster-pipeline",
            "1000",
            log=log,
        )
        shrink = Step(keys, after[spare_id], seconds)
        check_drained(spare, tool="redis-cli")
        wait_until(lambda: agreed(nodes), what="the cluster to settle after shrinking")
        check_no_key_lost(nodes, count, when="redis-cli: after shrinking")
        by_index = [given[server.view().myself.node_id] for server in masters]
        return grow, shrink, by_index, create_s


def run_kredis(
    root: Path, subnet: str, count: int, given: Sequence[int]
) -> tuple[Step, Step]:
    """Grow and shrink with kredis' migrate(), moving as many slots as redis-cli."""
    log = root / "kredis-create.log"
    tuning = MigrationTuning()
    with servers(root / "kredis", subnet, 4) as nodes:
        masters, spare = nodes[:3], nodes[3]
        create(masters, log)
        load(masters, count)
        check_no_key_lost(masters, count, when="kredis: after loading")
        spare.call("CLUSTER", "MEET", masters[0].address.host, masters[0].address.port)
        wait_until(lambda: agreed(nodes), what="the met node to be known")

        # Grow: the last slots of each master, as many as redis-cli took.
        spare_id = spare.view().myself.node_id
        grow_moves = []
        for index, master in enumerate(masters):
            view = master.view()
            owned = sorted(
                slot
                for slot, owner in view.slot_owners().items()
                if owner == view.myself.node_id
            )
            taken = owned[len(owned) - given[index] :]
            grow_moves.append(
                Move(
                    source=master.address,
                    target=spare.address,
                    slots=ranges_from_slots(taken),
                    source_id=view.myself.node_id,
                    target_id=spare_id,
                )
            )
        report = migrate(
            grow_moves, settings=SETTINGS, tuning=tuning, on_progress=_quiet
        )
        grow = Step(report.keys_moved, report.slots_moved, report.seconds)
        if int(spare.call("DBSIZE")) != report.keys_moved:
            sys.exit("kredis: the new master's DBSIZE differs from the keys moved")
        wait_until(lambda: agreed(nodes), what="the cluster to settle after growing")
        check_no_key_lost(nodes, count, when="kredis: after growing")

        # Shrink: every slot back to the master it came from.
        shrink_moves = [
            Move(
                source=spare.address,
                target=move.source,
                slots=move.slots,
                source_id=spare_id,
                target_id=move.source_id,
            )
            for move in grow_moves
        ]
        report = migrate(
            shrink_moves, settings=SETTINGS, tuning=tuning, on_progress=_quiet
        )
        shrink = Step(report.keys_moved, report.slots_moved, report.seconds)
        check_drained(spare, tool="kredis")
        wait_until(lambda: agreed(nodes), what="the cluster to settle after shrinking")
        check_no_key_lost(nodes, count, when="kredis: after shrinking")
        return grow, shrink


def _quiet(progress: MigrationProgress) -> None:
    """Progress is not printed: printing would be timed too."""


def main() -> None:
    """Run both contestants and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=500_000)
    parser.add_argument(
        "--subnet",
        default=f"127.2.{os.getpid() % 250}",
        help="a 127.x.y prefix; nodes use .1 to .4 (default from the pid)",
    )
    args = parser.parse_args()
    if not args.subnet.startswith("127."):
        sys.exit("--subnet must be a loopback prefix such as 127.2.7")
    root = Path(tempfile.mkdtemp(prefix="kredis-bench-"))
    print(f"keys={args.keys} value_bytes={VALUE_BYTES} cores={os.cpu_count()}")

    cli_grow, cli_shrink, given, _ = run_redis_cli(root, f"{args.subnet}", args.keys)
    kredis_grow, kredis_shrink = run_kredis(root, _other(args.subnet), args.keys, given)

    header = ("step", "tool", "slots", "keys", "seconds", "keys/s")
    print("{:<8} {:<10} {:>6} {:>8} {:>8} {:>9}".format(*header))
    for name, cli, ours in (
        ("grow", cli_grow, kredis_grow),
        ("shrink", cli_shrink, kredis_shrink),
    ):
        for tool, step in (("redis-cli", cli), ("kredis", ours)):
            print(
                f"{name:<8} {tool:<10} {step.slots:>6} {step.keys:>8} "
                f"{step.seconds:>8.2f} {step.rate:>9.0f}"
            )
        print(f"{name:<8} ratio kredis/redis-cli = {ours.rate / cli.rate:.2f}x")
    cli_3x1, kredis_3x1 = time_create(root, _other(_other(args.subnet)))
    print(
        f"create 3x1 on the same six servers: redis-cli {cli_3x1:.2f} s, kredis "
        f"{kredis_3x1:.2f} s (ratio redis-cli/kredis = {cli_3x1 / kredis_3x1:.2f}x)"
    )
    print("no key lost: DBSIZE sums and sampled values checked after every step")
    shutil.rmtree(root, ignore_errors=True)


def _other(subnet: str) -> str:
    # The kredis run uses fresh addresses: the next /24.
    first, second, third = subnet.split(".")
    return f"{first}.{second}.{(int(third) + 1) % 256}"


if __name__ == "__main__":
    main()
