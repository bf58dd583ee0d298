"""Integration: the migration engine and ``kredis migrate`` on real servers.

Each test forms its own cluster of three masters and an empty fourth master
on loopback addresses, writes keys whose values name them, moves slots with
``migrate()`` (or the command) and then reads every key back from the node
that owns its slot. The safety rules are checked from what the servers
report: no key lost or deleted, no slot given away while keys remain, open
slots left open on an error, nothing touched when a move is refused.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import typer
from typer.testing import CliRunner

from kredis.adapters.redis_client import (
    Address,
    ConnectionSettings,
    Credentials,
    RedisNode,
)
from kredis.adapters.redis_migration import (
    KeyMigrationError,
    MigrationProgress,
    MigrationTuning,
    Move,
    MoveError,
    NodeIdentityError,
    SlotOwnershipError,
    migrate,
    parse_move,
)
from kredis.app import migrate_cli
from kredis.domain.nodes import ClusterView
from kredis.domain.slots import SlotRange
from tests.support.real_cluster import (
    RedisHarness,
    RedisServer,
    balanced_ranges,
    key_slot,
    open_slot,
    redis_available,
    wait_converged,
    write_keys,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not redis_available(), reason="needs redis-server and redis-cli installed"
    ),
]

KEYS = 3000
PASSWORD = "s3cret-migration-pw"
ZERO_ID = "0" * 40
NEW_KEYS = 600
# Short enough that a joining master serves soon, long enough for 2 cores.
NODE_TIMEOUT_MS = 1000
# Small batches so that a test crosses several batches and MIGRATE rounds.
SMALL = MigrationTuning(slot_batch=40, key_batch=7)


@dataclass
class Cluster:
    """Three masters with balanced slots and an empty fourth master."""

    masters: list[RedisServer]
    spare: RedisServer

    @property
    def servers(self) -> list[RedisServer]:
        """Every server, the spare last."""
        return [*self.masters, self.spare]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A converged 3-master cluster holding KEYS keys, plus a met spare."""
    with RedisHarness(tmp_path) as harness:
        servers = [
            harness.start(f"demo-{n}", group="cluster", node_timeout_ms=NODE_TIMEOUT_MS)
            for n in range(4)
        ]
        masters, spare = servers[:3], servers[3]
        # The spare is met with the masters, so that its wait to serve
        # overlaps theirs.
        for epoch, (master, (start, end)) in enumerate(
            zip(masters, balanced_ranges(3), strict=True), start=1
        ):
            master.value("CLUSTER", "ADDSLOTSRANGE", start, end)
            master.value("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for other in servers[1:]:
            masters[0].value("CLUSTER", "MEET", other.ip, other.port)
        wait_converged(servers)
        write_keys(masters, KEYS)
        yield Cluster(masters, spare)


def address(server: RedisServer) -> Address:
    """The kredis address of a harness server."""
    return Address(server.ip, server.port)


def view(
    server: RedisServer, settings: ConnectionSettings | None = None
) -> ClusterView:
    """The server's CLUSTER NODES, read with our parser."""
    with RedisNode(address(server), settings or ConnectionSettings()) as node:
        return ClusterView.parse(node.text("CLUSTER", "NODES"))


def first_slots(server: RedisServer, count: int) -> SlotRange:
    """The first ``count`` slots the server owns (it owns one range)."""
    owned = view(server).myself.slots[0]
    return SlotRange(owned.start, owned.start + count - 1)


def move_of(source: RedisServer, target: RedisServer, slots: SlotRange) -> Move:
    """A move of one slot range between two harness servers."""
    return Move(source=address(source), target=address(target), slots=(slots,))


def read_keys(
    cluster: Cluster,
    count: int = KEYS,
    settings: ConnectionSettings | None = None,
    prefix: str = "key",
) -> dict[str, str | None]:
    """Every key ``prefix:n`` read from the master that owns its slot now."""
    connection = settings or ConnectionSettings()
    by_id = {view(s, connection).myself.node_id: s for s in cluster.servers}
    owners = view(cluster.masters[0], connection).slot_owners()
    wanted: dict[str, list[str]] = {}
    for number in range(count):
        key = f"{prefix}:{number}"
        wanted.setdefault(owners[key_slot(key)], []).append(key)
    found: dict[str, str | None] = {}
    for owner, keys in wanted.items():
        with RedisNode(address(by_id[owner]), connection) as node:
            replies = node.pipeline([("GET", key) for key in keys])
        for key, value in zip(keys, replies, strict=True):
            found[key] = value.decode() if isinstance(value, bytes) else None
    return found


def dbsize(server: RedisServer, settings: ConnectionSettings | None = None) -> int:
    """DBSIZE of one server."""
    with RedisNode(address(server), settings or ConnectionSettings()) as node:
        return int(node.call("DBSIZE"))


def keys_in(slots: SlotRange, count: int = KEYS, prefix: str = "key") -> list[str]:
    """The written keys that hash into a slot range."""
    return [
        f"{prefix}:{n}"
        for n in range(count)
        if slots.start <= key_slot(f"{prefix}:{n}") <= slots.end
    ]


def open_markers(server: RedisServer) -> str:
    """The ``[slot->-id]`` / ``[slot-<-id]`` markers of the server's own line."""
    mine = view(server).myself
    return " ".join(
        [f"{o.slot}->-{o.peer_id}" for o in mine.migrating]
        + [f"{o.slot}-<-{o.peer_id}" for o in mine.importing]
    )


def slot_picture(server: RedisServer) -> tuple[tuple[tuple[str, str], ...], str]:
    """Who owns which slots in the server's view, and its open slots."""
    return view(server).ownership, open_markers(server)


class RedirectedClient:
    """A minimal cluster client: SET at the slot's owner, following MOVED and ASK.

    (redis-py's cluster client cannot follow ASK to a master without slots.)
    """

    def __init__(self, seed: RedisServer) -> None:
        self.owner: dict[int, tuple[str, int]] = {}
        by_id = {e.node_id: (e.ip, e.port) for e in view(seed).entries}
        for slot, node_id in view(seed).slot_owners().items():
            self.owner[slot] = by_id[node_id]
        self.connections: dict[tuple[str, int], redis.Redis] = {}

    def _at(self, where: tuple[str, int]) -> redis.Redis:
        if where not in self.connections:
            host, port = where
            self.connections[where] = redis.Redis(host=host, port=port, protocol=2)
        return self.connections[where]

    def set(self, key: str, value: str) -> None:
        """SET one key where the cluster says it lives."""
        slot = key_slot(key)
        where, asking = self.owner[slot], False
        for _ in range(5):
            connection = self._at(where)
            try:
                if asking:
                    pipe = connection.pipeline(transaction=False)
                    pipe.execute_command("ASKING")
                    pipe.execute_command("SET", key, value)
                    pipe.execute()
                else:
                    connection.execute_command("SET", key, value)
            except redis.exceptions.MovedError as err:
                where, asking = (err.host, err.port), False
                self.owner[slot] = where
            except redis.exceptions.AskError as err:
                where, asking = (err.host, err.port), True
            else:
                return
        raise AssertionError(f"SET {key} bounced more than 5 times")

    def close(self) -> None:
        """Close every connection."""
        for connection in self.connections.values():
            connection.close()


def ignore(progress: MigrationProgress) -> None:
    """A progress callback that drops every snapshot."""


# -- reading moves ------------------------------------------------------------


def test_parse_move_reads_node_ids_addresses_and_slot_lists() -> None:
    """A move names ids, host:port pairs and a comma list of slots and ranges."""
    source_id, target_id = "a" * 40, "b" * 40

    move = parse_move(f"{source_id}@127.0.0.1:7000 {target_id}@10.0.0.2:6379 5,0-3,9")

    assert move == Move(
        source=Address("127.0.0.1", 7000),
        target=Address("10.0.0.2", 6379),
        slots=(SlotRange(0, 3), SlotRange(5, 5), SlotRange(9, 9)),
        source_id=source_id,
        target_id=target_id,
    )


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("127.0.0.1:1 127.0.0.1:2", "expected 'SOURCE TARGET SLOTS'"),
        ("127.0.0.1 127.0.0.1:2 0", "the source '127.0.0.1'"),
        ("127.0.0.1:1 127.0.0.1:99999 0", "the target '127.0.0.1:99999'"),
        ("abc@127.0.0.1:1 127.0.0.1:2 0", "the source node id 'abc'"),
        ("127.0.0.1:1 127.0.0.1:2 0-16384", "'0-16384' is not a range"),
        ("127.0.0.1:1 127.0.0.1:2 9-3", "'9-3' is not a range"),
        ("127.0.0.1:1 127.0.0.1:2 1,x", "'x' is not N or N-M"),
        ("127.0.0.1:1 127.0.0.1:2 0-5,5", "a slot appears twice"),
        ("127.0.0.1:1 127.0.0.1:1 0", "the same node"),
    ],
)
def test_parse_move_rejects_bad_text_naming_the_part(text: str, named: str) -> None:
    """Malformed move text raises MoveError naming the wrong part."""

    with pytest.raises(MoveError) as caught:
        parse_move(text)

    assert named in str(caught.value)


# -- moving -------------------------------------------------------------------


def test_moved_slots_arrive_with_every_key_and_value(cluster: Cluster) -> None:
    """Slots from three sources reach the target with every key and value."""
    moved = [first_slots(master, 150) for master in cluster.masters]
    moves = [
        move_of(master, cluster.spare, slots)
        for master, slots in zip(cluster.masters, moved, strict=True)
    ]
    expected_keys = sum(len(keys_in(slots)) for slots in moved)
    seen: list[MigrationProgress] = []

    report = migrate(
        moves, settings=ConnectionSettings(), tuning=SMALL, on_progress=seen.append
    )

    assert report.slots_moved == 450
    assert report.keys_moved == expected_keys
    assert read_keys(cluster) == {f"key:{n}": str(n) for n in range(KEYS)}
    assert dbsize(cluster.spare) == expected_keys
    assert sum(dbsize(s) for s in cluster.servers) == KEYS
    spare_id = view(cluster.spare).myself.node_id
    for server in cluster.servers:
        owners = view(server).slot_owners()
        assert {owners[s] for r in moved for s in r.slots()} == {spare_id}
        assert open_markers(server) == ""
    assert seen[-1].slots_done == seen[-1].slots_total == 450
    assert seen[-1].keys_moved == expected_keys


def test_slots_with_more_keys_than_one_migrate_carries_move_in_rounds(
    cluster: Cluster,
) -> None:
    """Slots holding many times key_batch keys are emptied round by round."""
    source = cluster.masters[1]
    slots = first_slots(source, 300)
    tags = [
        tag for tag in (f"t{n}" for n in range(500)) if key_slot(tag) in slots.slots()
    ]
    crowded = {f"{{{tag}}}:{n}": f"{tag}-{n}" for tag in tags[:3] for n in range(40)}
    with RedisNode(address(source), ConnectionSettings()) as node:
        node.pipeline([("SET", key, value) for key, value in crowded.items()])

    report = migrate(
        [move_of(source, cluster.spare, slots)],
        settings=ConnectionSettings(),
        tuning=SMALL,
        on_progress=ignore,
    )

    assert report.keys_moved == len(keys_in(slots)) + len(crowded)
    with RedisNode(address(cluster.spare), ConnectionSettings()) as node:
        found = node.pipeline([("GET", key) for key in crowded])
    assert [value.decode() for value in found] == list(crowded.values())
    assert all(open_markers(server) == "" for server in cluster.servers)


def test_keys_above_the_large_key_threshold_move_in_small_batches(
    cluster: Cluster,
) -> None:
    """Large keys (by MEMORY USAGE) move with the longer timeout and arrive."""
    slots = first_slots(cluster.masters[0], 200)
    big = {key: key.encode() * 400 for key in keys_in(slots)[:20]}
    with RedisNode(address(cluster.masters[0]), ConnectionSettings()) as node:
        node.pipeline([("SET", key, value) for key, value in big.items()])
    tuning = MigrationTuning(large_key_bytes=1000, large_key_batch=3)

    report = migrate(
        [move_of(cluster.masters[0], cluster.spare, slots)],
        settings=ConnectionSettings(),
        tuning=tuning,
        on_progress=ignore,
    )

    assert report.keys_moved == len(keys_in(slots))
    with RedisNode(address(cluster.spare), ConnectionSettings()) as node:
        assert node.pipeline([("GET", key) for key in big]) == list(big.values())


def test_second_run_counts_moved_slots_as_already_moved(cluster: Cluster) -> None:
    """Running the same move again moves nothing and reports the slots done."""
    move = move_of(
        cluster.masters[1], cluster.spare, first_slots(cluster.masters[1], 60)
    )
    migrate([move], settings=ConnectionSettings(), tuning=SMALL, on_progress=ignore)

    report = migrate(
        [move], settings=ConnectionSettings(), tuning=SMALL, on_progress=ignore
    )

    assert (report.slots_moved, report.slots_already_moved) == (0, 60)
    assert report.keys_moved == 0


def test_draining_a_master_of_its_last_slot_finishes_as_it_turns_replica(
    cluster: Cluster,
) -> None:
    """A master that gives away its last slot becomes a replica; no key is lost."""
    source = cluster.masters[0]
    slots = first_slots(source, 40)
    migrate(
        [move_of(source, cluster.spare, slots)],
        settings=ConnectionSettings(),
        tuning=SMALL,
        on_progress=ignore,
    )
    back = move_of(cluster.spare, source, slots)

    report = migrate(
        [back], settings=ConnectionSettings(), tuning=SMALL, on_progress=ignore
    )
    again = migrate(
        [back], settings=ConnectionSettings(), tuning=SMALL, on_progress=ignore
    )

    assert report.keys_moved == len(keys_in(slots)) > 0
    assert (again.slots_moved, again.slots_already_moved) == (0, 40)
    assert view(cluster.spare).myself.is_replica
    assert read_keys(cluster) == {f"key:{n}": str(n) for n in range(KEYS)}
    assert sum(dbsize(master) for master in cluster.masters) == KEYS


def test_half_moved_slot_is_finished_when_started_again(cluster: Cluster) -> None:
    """A slot left open with some keys already moved is finished by a new run."""
    source, target = cluster.masters[2], cluster.spare
    slots = first_slots(source, 30)
    half = slots.start + 3
    keys = keys_in(SlotRange(half, half))
    open_slot(half, source, target)
    source.value(
        "MIGRATE", target.ip, target.port, "", 0, 5000, "KEYS", *keys[: len(keys) // 2]
    )

    report = migrate(
        [move_of(source, target, slots)],
        settings=ConnectionSettings(),
        tuning=SMALL,
        on_progress=ignore,
    )

    assert report.slots_moved == 30
    assert read_keys(cluster) == {f"key:{n}": str(n) for n in range(KEYS)}
    assert dbsize(target) == len(keys_in(slots))
    assert view(source).slot_owners()[half] == view(target).myself.node_id
    assert open_markers(source) == open_markers(target) == ""


def test_busykey_stops_with_the_slot_left_open_and_no_key_deleted(
    cluster: Cluster,
) -> None:
    """A key already on the target stops the move; both copies and the slot stay."""
    source, target = cluster.masters[0], cluster.spare
    slots = first_slots(source, 20)
    busy_slot = key_slot(keys_in(slots)[0])
    clash = keys_in(SlotRange(busy_slot, busy_slot))[-1]
    open_slot(busy_slot, source, target)
    target.pipe(["ASKING", f"SET {clash} on-the-target"])
    before = dbsize(source)

    with pytest.raises(KeyMigrationError) as caught:
        migrate(
            [move_of(source, target, slots)],
            settings=ConnectionSettings(),
            tuning=MigrationTuning(slot_batch=20, key_batch=1),
            on_progress=ignore,
        )

    message = str(caught.value)
    assert f"slot {busy_slot}" in message
    assert str(address(source)) in message
    assert str(address(target)) in message
    assert "BUSYKEY" in message
    target_id, source_id = view(target).myself.node_id, view(source).myself.node_id
    assert f"{busy_slot}->-{target_id}" in open_markers(source)
    assert f"{busy_slot}-<-{source_id}" in open_markers(target)
    assert view(source).slot_owners()[busy_slot] == source_id
    assert source.value("GET", clash) == clash.split(":")[1]
    assert target.pipe(["ASKING", f"GET {clash}"]).split()[-1] == "on-the-target"
    assert dbsize(source) + dbsize(target) == before + 1


def test_wrong_node_id_is_refused_before_any_change(cluster: Cluster) -> None:
    """A move whose target id is not the target's MYID changes nothing."""
    slots = first_slots(cluster.masters[0], 100)
    good = move_of(
        cluster.masters[1], cluster.spare, first_slots(cluster.masters[1], 5)
    )
    wrong = Move(
        source=address(cluster.masters[0]),
        target=address(cluster.spare),
        slots=(slots,),
        target_id=ZERO_ID,
    )
    before = [slot_picture(server) for server in cluster.servers]

    with pytest.raises(NodeIdentityError) as caught:
        migrate(
            [good, wrong],
            settings=ConnectionSettings(),
            tuning=SMALL,
            on_progress=ignore,
        )

    assert ZERO_ID in str(caught.value)
    assert [slot_picture(server) for server in cluster.servers] == before
    assert dbsize(cluster.spare) == 0


def test_slot_the_source_does_not_own_is_refused_before_any_change(
    cluster: Cluster,
) -> None:
    """A move of slots another master owns raises and opens no slot."""
    foreign = first_slots(cluster.masters[1], 3)

    with pytest.raises(SlotOwnershipError) as caught:
        migrate(
            [move_of(cluster.masters[0], cluster.spare, foreign)],
            settings=ConnectionSettings(),
            tuning=SMALL,
            on_progress=ignore,
        )

    assert f"slot {foreign.start}" in str(caught.value)
    assert all(open_markers(server) == "" for server in cluster.servers)


def test_writes_during_the_migration_are_never_lost(cluster: Cluster) -> None:
    """A client writing to moving slots throughout keeps every acknowledged write."""
    slots = [first_slots(master, 120) for master in cluster.masters]
    moving = {slot for r in slots for slot in r.slots()}
    hot = [key for r in slots for key in keys_in(r)]
    hot += [f"new:{n}" for n in range(NEW_KEYS) if key_slot(f"new:{n}") in moving]
    client = RedirectedClient(cluster.masters[0])
    acknowledged: dict[str, str] = {}
    failures: list[Exception] = []
    writes = 0
    wrote = threading.Condition()
    done = threading.Event()

    def writer() -> None:
        nonlocal writes
        round_number = 0
        try:
            while not done.is_set():
                round_number += 1
                for key in hot:
                    client.set(key, f"{key}#{round_number}")
                    acknowledged[key] = f"{key}#{round_number}"
                    with wrote:
                        writes += 1
                        wrote.notify_all()
        except Exception as err:
            failures.append(err)
        finally:
            with wrote:
                wrote.notify_all()

    waits: list[bool] = []

    def wait_for_writes(progress: MigrationProgress) -> None:
        # Snapshots come while slots are open, too: let the writer hit them.
        with wrote:
            goal = writes + 25
            waits.append(
                wrote.wait_for(lambda: writes >= goal or bool(failures), timeout=10)
            )

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        report = migrate(
            [
                move_of(master, cluster.spare, r)
                for master, r in zip(cluster.masters, slots, strict=True)
            ],
            settings=ConnectionSettings(),
            tuning=SMALL,
            on_progress=wait_for_writes,
        )
    finally:
        done.set()
        thread.join(timeout=30)
        client.close()

    assert failures == []
    assert waits
    assert all(waits)
    assert report.slots_moved == 360
    final = read_keys(cluster) | read_keys(cluster, NEW_KEYS, prefix="new")
    lost = {key: value for key, value in acknowledged.items() if final[key] != value}
    assert lost == {}
    assert all(final[f"key:{n}"] is not None for n in range(KEYS))
    assert all(open_markers(server) == "" for server in cluster.servers)


@pytest.mark.parametrize("username", ["", "migrator"], ids=["password", "acl-user"])
def test_password_protected_nodes_migrate_with_auth(
    cluster: Cluster, username: str
) -> None:
    """With requirepass (or an ACL user) MIGRATE carries AUTH and keys arrive."""
    slots = first_slots(cluster.masters[0], 100)
    for server in cluster.servers:
        with RedisNode(address(server), ConnectionSettings()) as node:
            if username:
                node.call(
                    "ACL",
                    "SETUSER",
                    username,
                    "on",
                    f">{PASSWORD}",
                    "~*",
                    "&*",
                    "+@all",
                )
            # The default user's password differs: only AUTH2 can work.
            default_password = PASSWORD + "-default" if username else PASSWORD
            node.call("CONFIG", "SET", "requirepass", default_password)
    settings = ConnectionSettings(
        credentials=Credentials(password=PASSWORD, username=username)
    )

    report = migrate(
        [move_of(cluster.masters[0], cluster.spare, slots)],
        settings=settings,
        tuning=SMALL,
        on_progress=ignore,
    )

    assert report.keys_moved == len(keys_in(slots)) > 0
    assert dbsize(cluster.spare, settings) == len(keys_in(slots))
    assert read_keys(cluster, settings=settings) == {
        f"key:{n}": str(n) for n in range(KEYS)
    }


def test_failed_migrate_with_a_password_never_shows_it(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A MIGRATE error on password-protected nodes names no password anywhere."""
    source, target = cluster.masters[1], cluster.spare
    slots = first_slots(source, 10)
    busy_slot = key_slot(keys_in(slots)[0])
    open_slot(busy_slot, source, target)
    settings = ConnectionSettings(credentials=Credentials(password=PASSWORD))
    for server in cluster.servers:
        with RedisNode(address(server), ConnectionSettings()) as node:
            node.call("CONFIG", "SET", "requirepass", PASSWORD)
    with RedisNode(address(target), settings) as node:
        node.pipeline([("ASKING",), ("SET", keys_in(slots)[0], "clash")])
    # The kredis logger may not propagate once a command set up logging.
    engine = logging.getLogger("kredis.adapters.redis_migration")
    engine.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG, logger=engine.name)

    try:
        with pytest.raises(KeyMigrationError) as caught:
            migrate(
                [move_of(source, target, slots)],
                settings=settings,
                tuning=SMALL,
                on_progress=ignore,
            )
    finally:
        engine.removeHandler(caplog.handler)

    assert "BUSYKEY" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value.__cause__)
    assert "migrate failed slot=" in caplog.text
    assert PASSWORD not in caplog.text


# -- the command --------------------------------------------------------------


def command_app() -> typer.Typer:
    """A typer application with only ``migrate`` registered."""
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Test root."""

    migrate_cli.register(app)
    return app


def test_migrate_command_moves_slots_logs_progress_and_exits_zero(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The command moves the slots, logs progress lines and never the password."""
    source, target = cluster.masters[1], cluster.spare
    slots = first_slots(source, 50)
    source_id = view(source).myself.node_id
    for server in cluster.servers:
        with RedisNode(address(server), ConnectionSettings()) as node:
            node.call("CONFIG", "SET", "requirepass", PASSWORD)
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")

    result = CliRunner().invoke(
        command_app(),
        [
            "migrate",
            "--move",
            f"{source_id}@{address(source)} {address(target)} {slots}",
            "--password-file",
            str(password_file),
            "--slot-batch",
            "16",
            "--log-format",
            "json",
        ],
    )

    assert result.exit_code == 0, result.output
    assert '"message": "migration progress slots=50/50' in result.output
    assert f"moved 50 slots and {len(keys_in(slots))} keys" in result.output
    assert PASSWORD not in result.output


def test_migrate_command_exits_two_on_a_bad_move_and_touches_nothing(
    cluster: Cluster,
) -> None:
    """A malformed move exits 2 with a message naming the bad part."""
    before = slot_picture(cluster.masters[0])

    result = CliRunner().invoke(
        command_app(),
        [
            "migrate",
            "--move",
            f"{address(cluster.masters[0])} {address(cluster.spare)} 5-2",
        ],
    )

    assert result.exit_code == 2
    assert "'5-2' is not a range" in result.output
    assert slot_picture(cluster.masters[0]) == before


def test_migrate_command_exits_one_with_one_line_on_a_refused_move(
    cluster: Cluster,
) -> None:
    """A move the cluster refuses exits 1 with a one-line error."""
    text = f"{ZERO_ID}@{address(cluster.masters[0])} {address(cluster.spare)} 0-9"

    result = CliRunner().invoke(command_app(), ["migrate", "--move", text])

    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert ZERO_ID in errors[0]


def test_migrate_command_exits_two_when_the_password_file_is_missing(
    tmp_path: Path,
) -> None:
    """An unreadable password file is bad input: exit 2, the file named."""
    missing = tmp_path / "no-such-password"

    result = CliRunner().invoke(
        command_app(),
        [
            "migrate",
            "--move",
            "127.0.0.1:1 127.0.0.1:2 0",
            "--password-file",
            str(missing),
        ],
    )

    assert result.exit_code == 2
    assert str(missing) in result.output
