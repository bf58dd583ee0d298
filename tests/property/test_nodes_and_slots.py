"""Properties of the CLUSTER NODES codec and of slot arithmetic."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from kredis.domain.nodes import (
    ClusterView,
    LinkState,
    NodeEntry,
    NodeFlag,
    OpenSlot,
    parse_cluster_nodes,
    render_cluster_nodes,
)
from kredis.domain.placement import plan_moves
from kredis.domain.slots import (
    SLOT_COUNT,
    SlotRange,
    allocate_ranges,
    balanced_sizes,
    ranges_from_slots,
    slots_of,
)

node_ids = st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)
slot_sets = st.frozensets(st.integers(0, SLOT_COUNT - 1), max_size=300)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda p: ".".join(map(str, p)))
ipv6 = st.lists(
    st.integers(0, 0xFFFF).map(lambda n: f"{n:x}"), min_size=8, max_size=8
).map(":".join)
hostnames = st.one_of(
    st.just(""),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
)


@st.composite
def entries(draw: st.DrawFn, node_id: str, *, myself: bool) -> NodeEntry:
    """One CLUSTER NODES entry with any flags, address form and slots."""
    master = draw(st.booleans())
    flags = {NodeFlag.MASTER if master else NodeFlag.REPLICA}
    if myself:
        flags.add(NodeFlag.MYSELF)
    extra = [
        NodeFlag.SUSPECTED,
        NodeFlag.FAILED,
        NodeFlag.HANDSHAKE,
        NodeFlag.NO_ADDRESS,
        NodeFlag.NO_FAILOVER,
    ]
    flags |= set(draw(st.lists(st.sampled_from(extra), max_size=3)))
    slots = ranges_from_slots(draw(slot_sets)) if master else ()
    markers = st.lists(
        st.builds(OpenSlot, st.integers(0, SLOT_COUNT - 1), node_ids), max_size=2
    )
    return NodeEntry(
        node_id=node_id,
        ip=draw(st.one_of(ipv4, ipv6, st.just(""))),
        port=draw(st.integers(0, 65535)),
        bus_port=draw(st.integers(0, 65535)),
        flags=frozenset(flags),
        master_id=None if master else draw(node_ids),
        ping_sent=draw(st.integers(0, 2**45)),
        pong_received=draw(st.integers(0, 2**45)),
        config_epoch=draw(st.integers(0, 2**20)),
        link=draw(st.sampled_from(LinkState)),
        slots=slots,
        migrating=tuple(draw(markers)) if myself and master else (),
        importing=tuple(draw(markers)) if myself and master else (),
        hostname=draw(hostnames),
    )


@st.composite
def replies(draw: st.DrawFn) -> tuple[NodeEntry, ...]:
    """A whole reply: distinct ids, exactly one myself line."""
    ids = draw(st.lists(node_ids, min_size=1, max_size=8, unique=True))
    return tuple(
        draw(entries(node_id, myself=index == 0)) for index, node_id in enumerate(ids)
    )


@given(replies())
def test_rendered_reply_parses_back_to_the_same_entries(
    reply: tuple[NodeEntry, ...],
) -> None:
    """render then parse is the identity on entries, IPv6 and hostnames included."""

    parsed = parse_cluster_nodes(render_cluster_nodes(reply))

    assert parsed == reply


@given(replies())
def test_fast_view_summary_matches_the_full_parse(
    reply: tuple[NodeEntry, ...],
) -> None:
    """The fast path reads the same myself, known ids and owners as the full one."""
    text = render_cluster_nodes(reply)

    fast = ClusterView.parse(text)
    full = ClusterView.of(parse_cluster_nodes(text))

    assert fast.myself == full.myself
    assert fast.known_ids == full.known_ids
    assert fast.ownership == full.ownership
    assert fast.entries == reply


@given(slot_sets)
def test_ranges_cover_exactly_the_slots_without_overlap(slots: frozenset[int]) -> None:
    """Compressed ranges are sorted, maximal and cover the same slots."""

    ranges = ranges_from_slots(slots)

    assert slots_of(ranges) == slots
    assert all(a.end + 1 < b.start for a, b in itertools.pairwise(ranges))


@given(st.integers(1, 2000))
def test_allocation_covers_every_slot_with_sizes_within_one(masters: int) -> None:
    """Creation ranges cover 0..16383 once, sizes differ by at most one."""

    ranges = allocate_ranges(masters)

    assert sum(r.count for r in ranges) == SLOT_COUNT
    assert ranges[0].start == 0
    assert ranges[-1].end == SLOT_COUNT - 1
    assert max(balanced_sizes(masters)) - min(balanced_sizes(masters)) <= 1


@given(
    st.integers(1, 8),
    st.integers(0, 5),
    st.integers(0, 4),
)
def test_moves_empty_the_leavers_and_balance_the_keepers(
    old: int, added: int, removed: int
) -> None:
    """After the moves, dropped masters own nothing and kept ones are balanced."""
    removed = min(removed, old + added - 1)
    names = [f"m{n}" for n in range(old + added)]
    holdings = {name: frozenset() for name in names}
    for name, slot_range in zip(names, allocate_ranges(old), strict=False):
        holdings[name] = frozenset(slot_range.slots())
    keep = names[: len(names) - removed]

    moves = plan_moves(holdings=holdings, keep=keep, tolerance=1)

    after = {name: set(slots) for name, slots in holdings.items()}
    for move in moves:
        moved = slots_of(move.slots)
        assert moved <= after[move.source]
        after[move.source] -= moved
        after[move.target] |= moved
    assert sum(len(s) for s in after.values()) == SLOT_COUNT
    assert all(not after[name] for name in names if name not in keep)
    sizes = [len(after[name]) for name in keep]
    assert max(sizes) - min(sizes) <= 1
    assert all(isinstance(r, SlotRange) for m in moves for r in m.slots)
