"""Hash slots: ranges, slot sets and balanced allocation.

Pure arithmetic over the 16384 hash slots of Redis Cluster. It knows nothing
about nodes or pods.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

SLOT_COUNT = 16384
LAST_SLOT = SLOT_COUNT - 1


@attrs.frozen(order=True)
class SlotRange:
    """An inclusive range of hash slots, ``start`` to ``end``."""

    start: int
    end: int

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.start <= self.end <= LAST_SLOT:
            raise ValueError(f"invalid slot range {self.start}-{self.end}")

    @property
    def count(self) -> int:
        """How many slots the range holds."""
        return self.end - self.start + 1

    def slots(self) -> range:
        """The slots of the range, in order."""
        return range(self.start, self.end + 1)

    def to_json(self) -> list[int]:
        """The wire form: ``[start, end]``."""
        return [self.start, self.end]

    def __str__(self) -> str:
        if self.start == self.end:
            return str(self.start)
        return f"{self.start}-{self.end}"


def ranges_from_slots(slots: Iterable[int]) -> tuple[SlotRange, ...]:
    """Compress a collection of slots into sorted, maximal ranges."""
    ordered = sorted(set(slots))
    ranges: list[SlotRange] = []
    if not ordered:
        return ()
    start = previous = ordered[0]
    for slot in ordered[1:]:
        if slot != previous + 1:
            ranges.append(SlotRange(start, previous))
            start = slot
        previous = slot
    ranges.append(SlotRange(start, previous))
    return tuple(ranges)


def slots_of(ranges: Iterable[SlotRange]) -> frozenset[int]:
    """Every slot covered by the ranges."""
    covered: set[int] = set()
    for slot_range in ranges:
        covered.update(slot_range.slots())
    return frozenset(covered)


def count_slots(ranges: Iterable[SlotRange]) -> int:
    """The number of slots in ranges that do not overlap."""
    return sum(slot_range.count for slot_range in ranges)


def format_ranges(ranges: Sequence[SlotRange], *, limit: int = 6) -> str:
    """Human-readable form for reasons, e.g. ``0-1364,5461-6825``."""
    shown = ",".join(str(r) for r in ranges[:limit])
    if len(ranges) > limit:
        shown += f",... ({len(ranges) - limit} more ranges)"
    return shown


def balanced_sizes(count: int, *, total: int = SLOT_COUNT) -> tuple[int, ...]:
    """Split ``total`` slots into ``count`` sizes that differ by at most one."""
    if count < 1:
        raise ValueError(f"cannot split slots between {count} masters")
    base, extra = divmod(total, count)
    return tuple(base + 1 if index < extra else base for index in range(count))


def allocate_ranges(count: int) -> tuple[SlotRange, ...]:
    """Contiguous, balanced ranges that cover every slot, one per master."""
    ranges: list[SlotRange] = []
    start = 0
    for size in balanced_sizes(count):
        ranges.append(SlotRange(start, start + size - 1))
        start += size
    return tuple(ranges)
