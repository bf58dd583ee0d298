"""Placement arithmetic: which master a replica follows, which slots move.

Pure functions over counts and ids, deterministic by ordinal and id; nothing
here is random and nothing reads a snapshot directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from kredis.domain.slots import SLOT_COUNT, balanced_sizes, ranges_from_slots
from kredis.domain.status import SlotMove

BALANCE_TOLERANCE = 0.02


@attrs.frozen
class Seat:
    """A master a replica could follow, with where it runs."""

    master_id: str
    ordinal: int
    node_name: str
    zone: str


def choose_master(
    *,
    seats: Sequence[Seat],
    replica_counts: Mapping[str, int],
    node_name: str,
    zone: str,
) -> Seat:
    """The master with the fewest replicas, preferring another node and zone.

    Ties go to the lowest ordinal, so the choice never depends on order of
    iteration or chance.
    """

    def key(seat: Seat) -> tuple[int, bool, bool, int, str]:
        same_node = bool(node_name) and seat.node_name == node_name
        same_zone = bool(zone) and seat.zone == zone
        return (
            replica_counts.get(seat.master_id, 0),
            same_node,
            same_zone,
            seat.ordinal,
            seat.master_id,
        )

    return min(seats, key=key)


def tolerance_slots(fraction: float = BALANCE_TOLERANCE) -> int:
    """The largest spread between masters that counts as balanced."""
    return max(1, int(SLOT_COUNT * fraction))


def is_balanced(counts: Sequence[int], *, tolerance: int) -> bool:
    """Whether the largest and smallest masters differ by at most tolerance."""
    return not counts or max(counts) - min(counts) <= tolerance


def plan_moves(
    *,
    holdings: Mapping[str, frozenset[int]],
    keep: Sequence[str],
    tolerance: int,
) -> tuple[SlotMove, ...]:
    """Moves that empty every master not in ``keep`` and balance those in it.

    ``holdings`` maps node ids to the slots they own; ``keep`` lists the
    masters that stay, in preference order. Returns no moves when nothing must
    be emptied and the kept masters are already within ``tolerance``.
    """
    draining = sorted(node for node in holdings if node not in keep and holdings[node])
    counts = [len(holdings.get(node, frozenset())) for node in keep]
    if not draining and is_balanced(counts, tolerance=tolerance):
        return ()
    if not keep:
        return ()

    # The larger shares go to the masters that already hold the most, so the
    # fewest slots move.
    total = sum(len(slots) for slots in holdings.values())
    by_size = sorted(keep, key=lambda n: (-len(holdings.get(n, frozenset())), n))
    sizes = balanced_sizes(len(keep), total=total)
    target = dict(zip(by_size, sizes, strict=True))

    givers: list[tuple[str, list[int]]] = []
    for node in draining:
        givers.append((node, sorted(holdings[node])))
    for node in keep:
        owned = sorted(holdings.get(node, frozenset()))
        surplus = len(owned) - target[node]
        if surplus > 0:
            givers.append((node, owned[-surplus:]))
    takers = [
        (node, target[node] - len(holdings.get(node, frozenset())))
        for node in keep
        if target[node] > len(holdings.get(node, frozenset()))
    ]

    moved: dict[tuple[str, str], list[int]] = {}
    taker_index = 0
    for source, slots in givers:
        position = 0
        while position < len(slots) and taker_index < len(takers):
            node, need = takers[taker_index]
            chunk = slots[position : position + need]
            moved.setdefault((source, node), []).extend(chunk)
            position += len(chunk)
            need -= len(chunk)
            if need == 0:
                taker_index += 1
            else:
                takers[taker_index] = (node, need)
    return tuple(
        SlotMove(source=source, target=target_id, slots=ranges_from_slots(slots))
        for (source, target_id), slots in sorted(moved.items())
    )
