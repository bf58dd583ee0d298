"""Moving hash slots and their keys between masters: the migration engine.

Carries out moves ``SOURCE TARGET SLOTS`` with the protocol Redis Cluster
documents (SETSLOT IMPORTING, SETSLOT MIGRATING, MIGRATE, SETSLOT NODE),
pipelined so that a batch of slots costs a handful of round trips. It never
gives a slot a new owner while the old one still holds keys of it, never
deletes or overwrites a key (no DEL, no REPLACE) and stops at the first error
with the slot left open, for a later run to finish. It talks to nodes only
through ``RedisNode``, reads CLUSTER NODES with our own parser, and keeps
passwords out of logs, errors and progress.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, TypeVar

import attrs

from kredis.adapters.redis_client import (
    Address,
    Arg,
    ConnectionSettings,
    RedisNode,
    RedisNodeError,
    RedisReplyError,
)
from kredis.domain.errors import KredisError, truncate
from kredis.domain.nodes import ClusterView, is_node_id
from kredis.domain.slots import (
    LAST_SLOT,
    SlotRange,
    count_slots,
    format_ranges,
    ranges_from_slots,
    slots_of,
)

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_MIB = 1024 * 1024
# The refusal of SETSLOT by a node that is (now) a replica.
_DEMOTED = "SETSLOT only with masters"
# MEMORY USAGE of every key given, -1 for a key that is gone.
_SIZES_SCRIPT = (
    "local sizes = {} for i, key in ipairs(KEYS) do "
    "sizes[i] = redis.call('MEMORY', 'USAGE', key) or -1 end return sizes"
)


class MoveError(KredisError):
    """A move, a list of moves or a tuning value is malformed; nothing was sent."""


class MigrationError(KredisError):
    """A migration could not go on; slots it had opened stay open."""


class NodeIdentityError(MigrationError):
    """A node does not have the id a move names; refused before any change."""


class SlotOwnershipError(MigrationError):
    """A slot is not where a move expects it, or its keys are where none may be."""


class KeyMigrationError(MigrationError):
    """MIGRATE failed for a slot (BUSYKEY, a timeout, a refused target)."""

    def __init__(
        self, *, slot: int, source: Address, target: Address, reply: str
    ) -> None:
        super().__init__(
            f"slot {slot}: MIGRATE from {source} to {target} failed: {reply}; "
            "the slot is left open (migrating on the source, importing on the "
            "target) and no key was deleted"
        )
        self.slot = slot
        self.source = source
        self.target = target
        self.reply = reply


@attrs.frozen(kw_only=True)
class Move:
    """Slots to move from one master to another, optionally pinned by node id."""

    source: Address
    target: Address
    slots: tuple[SlotRange, ...]
    source_id: str = ""
    target_id: str = ""

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} slots {format_ranges(self.slots)}"


@attrs.frozen(kw_only=True)
class MigrationTuning:
    """How much work goes into each round trip, and how long MIGRATE may take.

    Keys whose MEMORY USAGE exceeds ``large_key_bytes`` move a few at a time
    with the longer timeout; other keys move up to ``key_batch`` per MIGRATE,
    cut earlier when a MIGRATE would carry more than ``batch_bytes``. With
    ``parallel_sources`` each source runs in a thread of its own.
    """

    slot_batch: int = 256
    key_batch: int = 1000
    batch_bytes: int = 64 * _MIB
    large_key_bytes: int = 4 * _MIB
    large_key_batch: int = 4
    migrate_timeout_ms: int = 10_000
    large_migrate_timeout_ms: int = 120_000
    parallel_sources: bool = True

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(MigrationTuning):
            value = getattr(self, field.name)
            if field.type in {"int", int} and value < 1:
                raise MoveError(
                    f"migration tuning {field.name} must be at least 1, found {value!r}"
                )
        if self.large_migrate_timeout_ms < self.migrate_timeout_ms:
            raise MoveError(
                "migration tuning large_migrate_timeout_ms must not be shorter "
                f"than migrate_timeout_ms ({self.large_migrate_timeout_ms} < "
                f"{self.migrate_timeout_ms})"
            )


@attrs.frozen(kw_only=True)
class MigrationProgress:
    """Where a running migration stands, as one snapshot."""

    slots_done: int
    slots_total: int
    keys_moved: int
    seconds: float
    source: Address | None

    @property
    def rate(self) -> float:
        """Keys moved per second so far."""
        return self.keys_moved / self.seconds if self.seconds > 0 else 0.0


@attrs.frozen(kw_only=True)
class MigrationReport:
    """What a finished migration did."""

    slots_moved: int
    slots_already_moved: int
    keys_moved: int
    seconds: float

    @property
    def rate(self) -> float:
        """Keys moved per second."""
        return self.keys_moved / self.seconds if self.seconds > 0 else 0.0


# -- reading moves ------------------------------------------------------------


def parse_move(text: str) -> Move:
    """Read ``SOURCE TARGET SLOTS``, e.g. ``id@10.0.0.1:6379 10.0.0.2:6379 0-99``.

    Raises ``MoveError`` naming the part that is wrong.
    """
    fields = text.split()
    if len(fields) != 3:
        raise MoveError(
            f"bad move {truncate(text)!r}: expected 'SOURCE TARGET SLOTS', "
            f"found {len(fields)} fields"
        )
    source_id, source = _parse_endpoint(fields[0], role="source", text=text)
    target_id, target = _parse_endpoint(fields[1], role="target", text=text)
    try:
        slots = parse_slots(fields[2])
    except MoveError as err:
        raise MoveError(f"bad move {truncate(text)!r}: {err}") from None
    if source == target or (source_id and source_id == target_id):
        raise MoveError(
            f"bad move {truncate(text)!r}: the source and the target are the same node"
        )
    return Move(
        source=source,
        target=target,
        slots=slots,
        source_id=source_id,
        target_id=target_id,
    )


def _parse_endpoint(field: str, *, role: str, text: str) -> tuple[str, Address]:
    node_id, at, address = field.rpartition("@")
    if at and not is_node_id(node_id):
        raise MoveError(
            f"bad move {truncate(text)!r}: the {role} node id {truncate(node_id)!r} "
            "is not 40 lowercase hex digits"
        )
    try:
        parsed = Address.parse(address)
    except ValueError:
        parsed = None
    if parsed is None or not 0 < parsed.port < 65536:
        raise MoveError(
            f"bad move {truncate(text)!r}: the {role} {truncate(address)!r} is "
            "not host:port (optionally prefixed by nodeid@)"
        )
    return node_id, parsed


def parse_slots(text: str) -> tuple[SlotRange, ...]:
    """Read ``0-1364,2000,2100-2200`` into sorted ranges; no slot twice."""
    slots: set[int] = set()
    total = 0
    for part in text.split(","):
        start, dash, end = part.partition("-")
        if not start.isdigit() or (dash and not end.isdigit()):
            raise MoveError(
                f"bad slot list {truncate(text)!r}: {part!r} is not N or N-M"
            )
        first, last = int(start), int(end) if dash else int(start)
        if last > LAST_SLOT or first > last:
            raise MoveError(
                f"bad slot list {truncate(text)!r}: {part!r} is not a range "
                f"within 0-{LAST_SLOT}"
            )
        slots.update(range(first, last + 1))
        total += last - first + 1
    if len(slots) != total:
        raise MoveError(f"bad slot list {truncate(text)!r}: a slot appears twice")
    return ranges_from_slots(slots)


def check_moves(moves: Sequence[Move]) -> None:
    """Refuse an empty list, or one that moves a slot twice."""
    if not moves:
        raise MoveError("no moves given; pass at least one 'SOURCE TARGET SLOTS'")
    seen: dict[int, Move] = {}
    for move in moves:
        for slot in slots_of(move.slots):
            earlier = seen.setdefault(slot, move)
            if earlier is not move:
                raise MoveError(
                    f"slot {slot} appears in two moves ({earlier} and {move}); "
                    "each slot may be moved once per run"
                )


# -- checking before any change -----------------------------------------------


@attrs.frozen(kw_only=True)
class _Job:
    """A move checked against the cluster: what is left to do for it."""

    move: Move
    source_id: str
    target_id: str
    to_move: tuple[int, ...]
    to_assign: tuple[int, ...]
    already_moved: int
    other_masters: tuple[Address, ...]


def _check(move: Move, settings: ConnectionSettings) -> _Job:
    with (
        RedisNode(move.source, settings) as source,
        RedisNode(move.target, settings) as target,
    ):
        source_id = _identify(source, move.source_id, role="source")
        target_id = _identify(target, move.target_id, role="target")
        if source_id == target_id:
            raise NodeIdentityError(
                f"move {move}: {move.source} and {move.target} are the same node "
                f"{source_id}"
            )
        source_view = ClusterView.parse(source.text("CLUSTER", "NODES"))
        target_view = ClusterView.parse(target.text("CLUSTER", "NODES"))
        _check_peers(move, source_view, target_view, source_id, target_id)
        wanted = sorted(slots_of(move.slots))
        source_owners = source_view.slot_owners()
        target_owners = target_view.slot_owners()

        # A slot the target already owns is done once the source is empty.
        # A source that turned replica holds copies of its master's keys, none
        # of its own.
        on_target = [slot for slot in wanted if target_owners.get(slot) == target_id]
        counted = [] if source_view.myself.is_replica else on_target
        counts = source.pipeline(
            [("CLUSTER", "COUNTKEYSINSLOT", slot) for slot in counted]
        )
        for slot, count in zip(counted, counts, strict=True):
            if isinstance(count, RedisReplyError):
                raise count
            if count != 0:
                raise SlotOwnershipError(
                    f"slot {slot}: the target {move.target} owns it in its own "
                    f"view, but the source {move.source} still holds {count} "
                    "keys of it; refused before any change"
                )
        on_target_set = set(on_target)
        to_move = tuple(slot for slot in wanted if slot not in on_target_set)
        for slot in to_move:
            owner = source_owners.get(slot)
            if owner != source_id:
                raise SlotOwnershipError(
                    f"slot {slot}: expected the source {move.source} ({source_id}) "
                    f"to own it in its own view, found {owner or 'no owner'}; "
                    "refused before any change"
                )
        _check_open_slots(move, source_view, target_view, source_id, target_id)
        to_assign = tuple(s for s in on_target if source_owners.get(s) != target_id)
        others = tuple(
            Address(entry.ip, entry.port)
            for entry in source_view.entries
            if entry.is_master
            and entry.node_id not in {source_id, target_id}
            and not (entry.is_failed or entry.has_no_address or entry.in_handshake)
        )
        return _Job(
            move=move,
            source_id=source_id,
            target_id=target_id,
            to_move=to_move,
            to_assign=to_assign,
            already_moved=len(on_target) - len(to_assign),
            other_masters=others,
        )


def _identify(node: RedisNode, expected: str, *, role: str) -> str:
    found = node.text("CLUSTER", "MYID")
    if expected and found != expected:
        raise NodeIdentityError(
            f"the {role} {node.address} has node id {found!r}, expected "
            f"{expected!r}; refused before any change"
        )
    return found


def _check_peers(
    move: Move,
    source_view: ClusterView,
    target_view: ClusterView,
    source_id: str,
    target_id: str,
) -> None:
    # A source that is a replica owns no slot: the ownership check names it.
    # (A drained master becomes one after a finished run.)
    if not target_view.myself.is_master:
        raise MigrationError(
            f"the target {move.target} ({target_id}) is not a master; refused "
            "before any change"
        )
    if target_id not in source_view.known_ids:
        raise MigrationError(
            f"the source {move.source} does not know the target {target_id}; "
            "meet the nodes first (refused before any change)"
        )
    if source_id not in target_view.known_ids:
        raise MigrationError(
            f"the target {move.target} does not know the source {source_id}; "
            "meet the nodes first (refused before any change)"
        )


def _check_open_slots(
    move: Move,
    source_view: ClusterView,
    target_view: ClusterView,
    source_id: str,
    target_id: str,
) -> None:
    # A slot half-moved towards another node must be finished there first:
    # some of its keys may already live on that node.
    wanted = slots_of(move.slots)
    for opened in source_view.myself.migrating:
        if opened.slot in wanted and opened.peer_id != target_id:
            raise SlotOwnershipError(
                f"slot {opened.slot}: the source {move.source} is migrating it to "
                f"{opened.peer_id}, not to the target {target_id}; refused before "
                "any change"
            )
    for opened in target_view.myself.importing:
        if opened.slot in wanted and opened.peer_id != source_id:
            raise SlotOwnershipError(
                f"slot {opened.slot}: the target {move.target} is importing it "
                f"from {opened.peer_id}, not from the source {source_id}; refused "
                "before any change"
            )


# -- progress -----------------------------------------------------------------


class _Tracker:
    """Counts shared by the per-source threads; reports under one lock."""

    def __init__(
        self,
        *,
        total: int,
        done: int,
        on_progress: Callable[[MigrationProgress], None],
    ) -> None:
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._on_progress = on_progress
        self.total = total
        self.done = done
        self.moved = 0
        self.keys = 0
        self.stop = threading.Event()

    def advance(self, *, source: Address, slots: int = 0, keys: int = 0) -> None:
        with self._lock:
            self.done += slots
            self.moved += slots
            self.keys += keys
            self._on_progress(self.snapshot(source))

    def snapshot(self, source: Address | None) -> MigrationProgress:
        return MigrationProgress(
            slots_done=self.done,
            slots_total=self.total,
            keys_moved=self.keys,
            seconds=self.seconds(),
            source=source,
        )

    def seconds(self) -> float:
        return time.monotonic() - self._started


# -- moving -------------------------------------------------------------------


def migrate(
    moves: Sequence[Move],
    *,
    settings: ConnectionSettings,
    tuning: MigrationTuning,
    on_progress: Callable[[MigrationProgress], None],
) -> MigrationReport:
    """Carry out the moves; moves of different sources run in parallel.

    Every move is checked against the cluster before anything changes. The
    moves of one source run in order, in one thread per source; the first
    error stops every thread after its current batch and is raised.
    ``on_progress`` is called from those threads, one call at a time.
    """
    check_moves(moves)
    jobs = [_check(move, settings) for move in moves]
    total = sum(count_slots(move.slots) for move in moves)
    already = sum(job.already_moved for job in jobs)
    tracker = _Tracker(total=total, done=already, on_progress=on_progress)
    logger.info(
        "migration started moves=%d slots=%d already_moved=%d",
        len(jobs),
        total,
        already,
    )

    # Grouped by node id: two spellings of one address are one source.
    by_source: dict[str, list[_Job]] = {}
    for job in jobs:
        by_source.setdefault(job.source_id, []).append(job)
    groups = list(by_source.values())
    if tuning.parallel_sources and len(groups) > 1:
        with ThreadPoolExecutor(
            max_workers=len(groups), thread_name_prefix="kredis-migrate"
        ) as pool:
            futures = [
                pool.submit(_run_source, group, settings, tuning, tracker)
                for group in groups
            ]
            try:
                errors = [f.exception() for f in futures]
            except BaseException:
                # Interrupted: the threads stop after their current batch.
                tracker.stop.set()
                raise
        failed = [error for error in errors if error is not None]
        if failed:
            raise failed[0]
    else:
        for group in groups:
            _run_source(group, settings, tuning, tracker)

    report = MigrationReport(
        slots_moved=tracker.moved,
        slots_already_moved=already,
        keys_moved=tracker.keys,
        seconds=tracker.seconds(),
    )
    logger.info(
        "migration finished slots=%d keys=%d seconds=%.2f rate=%.0f",
        report.slots_moved,
        report.keys_moved,
        report.seconds,
        report.rate,
    )
    return report


def _run_source(
    jobs: Sequence[_Job],
    settings: ConnectionSettings,
    tuning: MigrationTuning,
    tracker: _Tracker,
) -> None:
    # One connection per node per thread: a RedisNode is not shared.
    nodes: dict[Address, RedisNode] = {}

    def node(address: Address) -> RedisNode:
        if address not in nodes:
            nodes[address] = RedisNode(address, settings)
        return nodes[address]

    try:
        for job in jobs:
            if tracker.stop.is_set():
                return
            _Mover(job, node=node, tuning=tuning, tracker=tracker).run()
    except BaseException:
        tracker.stop.set()
        raise
    finally:
        for connection in nodes.values():
            connection.close()


class _Mover:
    """Moves the slots of one checked move, batch by batch."""

    def __init__(
        self,
        job: _Job,
        *,
        node: Callable[[Address], RedisNode],
        tuning: MigrationTuning,
        tracker: _Tracker,
    ) -> None:
        self.job = job
        self.move = job.move
        self.source = node(job.move.source)
        self.target = node(job.move.target)
        self.others = [node(address) for address in job.other_masters]
        self.tuning = tuning
        self.tracker = tracker

    def run(self) -> None:
        try:
            if self.job.to_assign:
                logger.info(
                    "finishing slots already on the target source=%s target=%s "
                    "slots=%d",
                    self.move.source,
                    self.move.target,
                    len(self.job.to_assign),
                )
                self._confirm_empty(self.job.to_assign)
                self._assign(self.job.to_assign)
                self.tracker.advance(
                    source=self.move.source, slots=len(self.job.to_assign)
                )
            for batch in _chunks(self.job.to_move, self.tuning.slot_batch):
                if self.tracker.stop.is_set():
                    return
                self._open(batch)
                self._drain(batch)
                self._assign(batch)
                self.tracker.advance(source=self.move.source, slots=len(batch))
        except RedisNodeError as err:
            raise MigrationError(f"moving {self.move}: {err}") from err

    def _open(self, batch: Sequence[int]) -> None:
        # The target first: a source that redirects with ASK to a target not
        # yet importing would bounce clients between the two.
        self._expect_ok(
            self.target,
            [("CLUSTER", "SETSLOT", s, "IMPORTING", self.job.source_id) for s in batch],
            batch,
        )
        self._expect_ok(
            self.source,
            [("CLUSTER", "SETSLOT", s, "MIGRATING", self.job.target_id) for s in batch],
            batch,
        )

    def _drain(self, batch: Sequence[int]) -> None:
        # Each round moves the next keys of every pending slot. A slot that
        # gave fewer keys than asked for is likely empty and leaves the
        # rounds; the check before SETSLOT NODE sends back any that is not.
        pending = list(batch)
        while pending:
            replies = _checked(
                self.source.pipeline(
                    [
                        ("CLUSTER", "GETKEYSINSLOT", slot, self.tuning.key_batch)
                        for slot in pending
                    ]
                )
            )
            keys_by_slot = {
                slot: list(keys)
                for slot, keys in zip(pending, replies, strict=True)
                if keys
            }
            if keys_by_slot:
                self._migrate_keys(keys_by_slot)
            pending = [
                slot
                for slot, keys in keys_by_slot.items()
                if len(keys) >= self.tuning.key_batch
            ]
            if not pending:
                pending = self._not_yet_empty(batch)

    def _confirm_empty(self, slots: Sequence[int]) -> None:
        # Slots the target already owns: the source must still hold no key.
        counts = _checked(
            self.source.pipeline([("CLUSTER", "COUNTKEYSINSLOT", s) for s in slots])
        )
        for slot, count in zip(slots, counts, strict=True):
            if count != 0:
                raise SlotOwnershipError(
                    f"slot {slot}: the target {self.move.target} owns it, but the "
                    f"source {self.move.source} holds {count} keys of it again; "
                    "stopped before telling the source"
                )

    def _not_yet_empty(self, batch: Sequence[int]) -> list[int]:
        # The guard before any SETSLOT NODE: every slot of the batch is empty
        # on the source and still migrating there, so no key can arrive.
        commands: list[tuple[Arg, ...]] = [
            ("CLUSTER", "COUNTKEYSINSLOT", slot) for slot in batch
        ]
        commands.append(("CLUSTER", "NODES"))
        replies = _checked(self.source.pipeline(commands))
        view = ClusterView.parse(_text(replies[-1]))
        migrating = {
            opened.slot
            for opened in view.myself.migrating
            if opened.peer_id == self.job.target_id
        }
        closed = [slot for slot in batch if slot not in migrating]
        if closed:
            raise MigrationError(
                f"moving {self.move}: the source is no longer migrating slots "
                f"{format_ranges(ranges_from_slots(closed))} to the target "
                f"{self.job.target_id} (someone else changed them); stopped "
                "before giving them a new owner"
            )
        counts = replies[:-1]
        return [s for s, count in zip(batch, counts, strict=True) if count != 0]

    def _migrate_keys(self, keys_by_slot: dict[int, list[bytes]]) -> None:
        sizes = self._sizes(keys_by_slot)
        regular: list[tuple[int, list[bytes]]] = []
        large: list[tuple[int, list[bytes]]] = []
        for slot, keys in keys_by_slot.items():
            small = [k for k in keys if sizes.get(k, 0) <= self.tuning.large_key_bytes]
            big = [k for k in keys if sizes.get(k, 0) > self.tuning.large_key_bytes]
            regular += [(slot, c) for c in self._by_bytes(small, sizes)]
            large += [(slot, c) for c in _chunks(big, self.tuning.large_key_batch)]
        self._send(regular, timeout_ms=self.tuning.migrate_timeout_ms)
        self._send(large, timeout_ms=self.tuning.large_migrate_timeout_ms)

    def _sizes(self, keys_by_slot: dict[int, list[bytes]]) -> dict[bytes, int]:
        # One script per slot reads the MEMORY USAGE of all its keys: far
        # cheaper for the client than one command per key.
        # Limitation: MEMORY USAGE samples a few elements of a collection, so
        # the size of a large hash, list, set or sorted set is an estimate; a
        # key just under the threshold may still need the longer timeout.
        slots = [slot for slot, keys in keys_by_slot.items() if keys]
        replies = self.source.pipeline(
            [
                ("EVAL", _SIZES_SCRIPT, len(keys_by_slot[slot]), *keys_by_slot[slot])
                for slot in slots
            ]
        )
        sizes: dict[bytes, int] = {}
        one_by_one: list[bytes] = []
        for slot, reply in zip(slots, replies, strict=True):
            if isinstance(reply, RedisReplyError):
                # TRYAGAIN (a key vanished from a migrating slot) or scripts
                # not allowed for this user: ask key by key.
                one_by_one.extend(keys_by_slot[slot])
                continue
            for key, size in zip(keys_by_slot[slot], reply, strict=True):
                if size >= 0:
                    sizes[key] = int(size)
        replies = self.source.pipeline([("MEMORY", "USAGE", k) for k in one_by_one])
        # A key that vanished meanwhile (expired, deleted) answers nil.
        sizes.update(
            (key, size)
            for key, size in zip(one_by_one, replies, strict=True)
            if isinstance(size, int)
        )
        return sizes

    def _by_bytes(
        self, keys: list[bytes], sizes: dict[bytes, int]
    ) -> Iterator[list[bytes]]:
        chunk: list[bytes] = []
        weight = 0
        for key in keys:
            size = sizes.get(key, 0)
            if chunk and weight + size > self.tuning.batch_bytes:
                yield chunk
                chunk, weight = [], 0
            chunk.append(key)
            weight += size
        if chunk:
            yield chunk

    def _send(
        self, migrations: list[tuple[int, list[bytes]]], *, timeout_ms: int
    ) -> None:
        if not migrations:
            return
        commands = [self._migrate_command(keys, timeout_ms) for _, keys in migrations]
        # Replies come one MIGRATE at a time; each may take up to its timeout.
        wait_s = self.source.settings.command_timeout_s + timeout_ms / 1000
        replies = self.source.pipeline(commands, timeout_s=wait_s)
        moved = 0
        failure: KeyMigrationError | None = None
        for (slot, keys), reply in zip(migrations, replies, strict=True):
            if isinstance(reply, RedisReplyError):
                failure = failure or KeyMigrationError(
                    slot=slot,
                    source=self.move.source,
                    target=self.move.target,
                    reply=reply.problem,
                )
            else:
                moved += len(keys)
        self.tracker.advance(source=self.move.source, keys=moved)
        if failure is not None:
            logger.error(
                "migrate failed slot=%d source=%s target=%s reply=%s",
                failure.slot,
                failure.source,
                failure.target,
                failure.reply,
            )
            raise failure

    def _migrate_command(self, keys: list[bytes], timeout_ms: int) -> tuple[Arg, ...]:
        # Limitation: the source reaches the target at the address the move
        # gives, the one kredis reaches it at. Where nodes see each other at
        # other addresses (NAT, port forwarding), MIGRATE fails and the slot
        # is left open.
        target = self.move.target
        args: list[Arg] = ["MIGRATE", target.host, target.port, "", 0, timeout_ms]
        credentials = self.source.settings.credentials
        if credentials is not None and credentials.username:
            args += ["AUTH2", credentials.username, credentials.password]
        elif credentials is not None:
            args += ["AUTH", credentials.password]
        args.append("KEYS")
        args.extend(keys)
        return tuple(args)

    def _assign(self, slots: Sequence[int]) -> None:
        # The target first, so that it serves the slot before the source
        # starts sending MOVED there; then the source; then everyone else.
        commands: list[tuple[Arg, ...]] = [
            ("CLUSTER", "SETSLOT", slot, "NODE", self.job.target_id) for slot in slots
        ]
        self._expect_ok(self.target, commands, slots)
        refused = self._refusals(self.source, commands, slots)
        if refused and self._source_demoted(refused):
            logger.info(
                "source became a replica after its last slot source=%s target=%s",
                self.move.source,
                self.move.target,
            )
        elif refused:
            self._stop(self.source, commands, refused[0])
        for other in self.others:
            # Gossip carries the new owner to a master we cannot tell.
            try:
                declined = self._refusals(other, commands, slots)
            except RedisNodeError as err:
                logger.warning(
                    "slot owner update failed master=%s problem=%s",
                    other.address,
                    err.problem,
                )
                continue
            if declined:
                logger.warning(
                    "slot owner update refused master=%s slots=%d problem=%s",
                    other.address,
                    len(declined),
                    declined[0][1].problem,
                )

    def _source_demoted(self, refused: Sequence[tuple[int, RedisReplyError]]) -> bool:
        # A master that loses its last slot turns itself into a replica of
        # the new owner (cluster-allow-replica-migration) as soon as gossip
        # from the target reaches it, and then refuses SETSLOT. The target
        # owns those slots and the source held no key of them: nothing is
        # left to do there. redis-cli accepts the same refusal.
        if not all(_DEMOTED in reply.problem for _, reply in refused):
            return False
        view = ClusterView.parse(self.source.text("CLUSTER", "NODES"))
        return view.myself.is_replica and not view.myself.slots

    def _expect_ok(
        self,
        node: RedisNode,
        commands: Sequence[tuple[Arg, ...]],
        slots: Sequence[int],
    ) -> None:
        refused = self._refusals(node, commands, slots)
        if refused:
            self._stop(node, commands, refused[0])

    def _refusals(
        self,
        node: RedisNode,
        commands: Sequence[tuple[Arg, ...]],
        slots: Sequence[int],
    ) -> list[tuple[int, RedisReplyError]]:
        return [
            (slot, reply)
            for slot, reply in zip(slots, node.pipeline(commands), strict=True)
            if isinstance(reply, RedisReplyError)
        ]

    def _stop(
        self,
        node: RedisNode,
        commands: Sequence[tuple[Arg, ...]],
        refusal: tuple[int, RedisReplyError],
    ) -> NoReturn:
        slot, reply = refusal
        raise MigrationError(
            f"slot {slot}: {node.address} refused {reply.command} "
            f"{_setslot_word(commands[0])}: {reply.problem}; moving "
            f"{self.move} stopped with the slot left as it is"
        )


def _setslot_word(command: Sequence[Arg]) -> str:
    return str(command[3]) if len(command) > 3 else ""


def _checked(replies: list[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, RedisReplyError):
            raise reply
    return replies


def _text(reply: Any) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _chunks(items: Sequence[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
