"""CLUSTER NODES and CLUSTER INFO: our own parser and renderer.

Parses the raw replies a node gives into frozen values keyed by node id. It
must not key nodes by address: an address changes when a pod moves, an id does
not, and failed or address-less nodes must stay visible to the planner.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import attrs

from kredis.domain.errors import ClusterNodesError, truncate
from kredis.domain.slots import SlotRange, count_slots

NODE_ID_LENGTH = 40
_HEX = frozenset("0123456789abcdef")


class NodeFlag(enum.Enum):
    """A flag of a CLUSTER NODES line, in the order Redis prints them."""

    MYSELF = "myself"
    MASTER = "master"
    REPLICA = "slave"
    SUSPECTED = "fail?"
    FAILED = "fail"
    HANDSHAKE = "handshake"
    NO_ADDRESS = "noaddr"
    NO_FAILOVER = "nofailover"


_FLAG_BY_TEXT = {flag.value: flag for flag in NodeFlag}
_FLAG_ORDER = {flag: index for index, flag in enumerate(NodeFlag)}


class LinkState(enum.Enum):
    """The state of the cluster bus link as the viewing node sees it."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


@attrs.frozen(order=True)
class OpenSlot:
    """A slot in migration: ``peer_id`` is the other end of the move."""

    slot: int
    peer_id: str


@attrs.frozen
class NodeEntry:
    """One line of a CLUSTER NODES reply: one node as the viewer sees it."""

    node_id: str
    ip: str
    port: int
    bus_port: int
    flags: frozenset[NodeFlag]
    master_id: str | None
    ping_sent: int
    pong_received: int
    config_epoch: int
    link: LinkState
    slots: tuple[SlotRange, ...] = ()
    migrating: tuple[OpenSlot, ...] = ()
    importing: tuple[OpenSlot, ...] = ()
    hostname: str = ""

    @property
    def is_myself(self) -> bool:
        """The line describes the node that gave the reply."""
        return NodeFlag.MYSELF in self.flags

    @property
    def is_master(self) -> bool:
        """The node is a master (possibly without slots)."""
        return NodeFlag.MASTER in self.flags

    @property
    def is_replica(self) -> bool:
        """The node replicates a master."""
        return NodeFlag.REPLICA in self.flags

    @property
    def is_failed(self) -> bool:
        """The cluster agreed that the node is down (``fail``)."""
        return NodeFlag.FAILED in self.flags

    @property
    def is_suspected(self) -> bool:
        """The viewer alone suspects the node is down (``fail?``)."""
        return NodeFlag.SUSPECTED in self.flags

    @property
    def in_handshake(self) -> bool:
        """The node was met but has not completed the handshake yet."""
        return NodeFlag.HANDSHAKE in self.flags

    @property
    def has_no_address(self) -> bool:
        """The viewer does not know the node's address (``noaddr``)."""
        return NodeFlag.NO_ADDRESS in self.flags

    @property
    def slot_count(self) -> int:
        """How many slots the node serves in this view."""
        return count_slots(self.slots)


# The fields of a CLUSTER NODES line that the fast path reads (id, flags and
# the slot fields), with the fixed-format fields between them checked.
_LINE = re.compile(
    r"^([0-9a-f]{40}) [^ ]+ ([^ ]+) (?:-|[0-9a-f]{40}) [0-9]+ [0-9]+ [0-9]+ "
    r"(?:connected|disconnected)(.*)$",
    re.MULTILINE,
)


@attrs.frozen
class ClusterView:
    """One node's whole CLUSTER NODES reply, keyed by node id.

    The summary the planner needs from every view (myself, the ids it knows,
    who owns which slots) is read when the view is built; full entries are
    parsed on first use, since most views are only compared, never read.
    """

    myself: NodeEntry
    known_ids: frozenset[str]
    ownership: tuple[tuple[str, str], ...]
    text: str = attrs.field(eq=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> ClusterView:
        """Parse a raw reply; raise ``ClusterNodesError`` on a bad line."""
        # Limitation: beyond the myself line, only the fields the planner reads
        # from every view (ids, flags, slots, master, numbers, link state) are
        # checked here; addresses are checked when entries are first used.
        stripped = text.strip()
        matches = _LINE.findall(stripped)
        expected = stripped.count("\n") + 1 if stripped else 0
        if len(matches) != expected:
            # Blank lines or a malformed line: the careful parser decides.
            return cls.of(parse_cluster_nodes(text))

        mine = [node_id for node_id, flags, _ in matches if "myself" in flags]
        known = [
            node_id
            for node_id, flags, _ in matches
            if "myself" not in flags and "handshake" not in flags
        ]
        owners = [
            (node_id, " ".join(f for f in rest.split() if f[0] != "["))
            for node_id, flags, rest in matches
            if rest and "master" in flags
        ]
        owners = [(node_id, slots) for node_id, slots in owners if slots]
        for _, slots in owners:
            checked_slots(slots)
        if len(mine) != 1:
            raise ClusterNodesError(
                0, f"expected exactly one 'myself' line, found {len(mine)}"
            )
        if len(set(known)) != len(known) or mine[0] in known:
            raise ClusterNodesError(0, "a node id appears on more than one line")
        return cls(
            myself=_myself(stripped, mine[0]),
            known_ids=frozenset(known),
            ownership=tuple(sorted(owners)),
            text=text,
        )

    @classmethod
    def of(cls, entries: Iterable[NodeEntry]) -> ClusterView:
        """Build a view from entries; exactly one must carry ``myself``."""
        ordered = tuple(entries)
        mine = [entry for entry in ordered if entry.is_myself]
        if len(mine) != 1:
            raise ClusterNodesError(
                0, f"expected exactly one 'myself' line, found {len(mine)}"
            )
        if len({entry.node_id for entry in ordered}) != len(ordered):
            raise ClusterNodesError(0, "a node id appears on more than one line")
        known = frozenset(
            e.node_id for e in ordered if not e.is_myself and not e.in_handshake
        )
        owners = sorted(
            (e.node_id, " ".join(str(r) for r in e.slots))
            for e in ordered
            if e.slots and e.is_master
        )
        return cls(
            myself=mine[0],
            known_ids=known,
            ownership=tuple(owners),
            text=render_cluster_nodes(ordered),
        )

    @functools.cached_property
    def entries(self) -> tuple[NodeEntry, ...]:
        """Every line of the reply, parsed, in reply order."""
        return parse_cluster_nodes(self.text)

    @functools.cached_property
    def by_id(self) -> Mapping[str, NodeEntry]:
        """Entries keyed by node id."""
        return MappingProxyType({entry.node_id: entry for entry in self.entries})

    def slot_owners(self) -> dict[int, str]:
        """Map every slot this view assigns to the id of its master."""
        owners: dict[int, str] = {}
        for entry in self.entries:
            if not entry.is_master:
                continue
            for slot_range in entry.slots:
                for slot in slot_range.slots():
                    owners[slot] = entry.node_id
        return owners


@attrs.frozen
class ClusterInfo:
    """The fields of CLUSTER INFO that the planner reads."""

    state_ok: bool
    slots_assigned: int
    known_nodes: int
    size: int
    current_epoch: int
    fields: Mapping[str, str] = attrs.field(eq=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> ClusterInfo:
        """Parse a raw CLUSTER INFO reply (``key:value`` lines)."""
        fields: dict[str, str] = {}
        for raw in text.splitlines():
            line = raw.strip()
            if not line or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value

        def number(key: str) -> int:
            try:
                return int(fields.get(key, "0"))
            except ValueError:
                raise ClusterNodesError(
                    0,
                    f"cluster info field {key} is not a number: "
                    f"{truncate(fields[key])!r}",
                ) from None

        return cls(
            state_ok=fields.get("cluster_state") == "ok",
            slots_assigned=number("cluster_slots_assigned"),
            known_nodes=number("cluster_known_nodes"),
            size=number("cluster_size"),
            current_epoch=number("cluster_current_epoch"),
            fields=MappingProxyType(fields),
        )


def _myself(text: str, node_id: str) -> NodeEntry:
    start = 0 if text.startswith(node_id) else text.index("\n" + node_id) + 1
    end = text.find("\n", start)
    line = text[start:] if end < 0 else text[start:end]
    number = text.count("\n", 0, start) + 1
    return _parse_line(line.strip(), number)


@functools.lru_cache(maxsize=4096)
def checked_slots(text: str) -> tuple[SlotRange, ...]:
    """Parse the slot fields of a line (``0-5460 5462``), checked once per text.

    Views of one cluster repeat the same slot fields, so the result is cached.
    """
    slots, _, _ = _parse_slots(text.split(), 0)
    return slots


def is_node_id(text: str) -> bool:
    """Whether text looks like a Redis node id (40 lowercase hex digits)."""
    return len(text) == NODE_ID_LENGTH and _HEX.issuperset(text)


def parse_cluster_nodes(text: str) -> tuple[NodeEntry, ...]:
    """Parse a raw CLUSTER NODES reply into entries, in reply order."""
    entries: list[NodeEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line:
            entries.append(_parse_line(line, number))
    return tuple(entries)


def _parse_line(line: str, number: int) -> NodeEntry:
    parts = line.split()
    if len(parts) < 8:
        raise ClusterNodesError(
            number,
            f"expected at least 8 fields, found {len(parts)}: {truncate(line)!r}",
        )
    node_id, address, flag_text, master, ping, pong, epoch, link = parts[:8]
    if not is_node_id(node_id):
        raise ClusterNodesError(number, f"not a node id: {truncate(node_id)!r}")
    ip, port, bus_port, hostname = _parse_address(address, number)
    flags = _parse_flags(flag_text)
    master_id = None if master == "-" else master
    if master_id is not None and not is_node_id(master_id):
        raise ClusterNodesError(number, f"not a master id: {truncate(master)!r}")
    try:
        ping_sent, pong_received, config_epoch = int(ping), int(pong), int(epoch)
    except ValueError:
        raise ClusterNodesError(
            number, f"ping, pong and epoch must be numbers: {truncate(line)!r}"
        ) from None
    try:
        link_state = LinkState(link)
    except ValueError:
        raise ClusterNodesError(number, f"unknown link state {link!r}") from None
    slots, migrating, importing = _parse_slots(parts[8:], number)
    return NodeEntry(
        node_id=node_id,
        ip=ip,
        port=port,
        bus_port=bus_port,
        flags=flags,
        master_id=master_id,
        ping_sent=ping_sent,
        pong_received=pong_received,
        config_epoch=config_epoch,
        link=link_state,
        slots=slots,
        migrating=migrating,
        importing=importing,
        hostname=hostname,
    )


def _parse_address(address: str, number: int) -> tuple[str, int, int, str]:
    # ip:port@cport[,hostname[,aux=value...]]; the ip may be IPv6 (colons).
    endpoint, _, extra = address.partition(",")
    hostname = extra.split(",", 1)[0] if extra else ""
    if "=" in hostname:
        hostname = ""
    host_port, _, bus = endpoint.partition("@")
    ip, sep, port_text = host_port.rpartition(":")
    if not sep:
        raise ClusterNodesError(number, f"address without port: {address!r}")
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    try:
        port = int(port_text)
        bus_port = int(bus) if bus else 0
    except ValueError:
        raise ClusterNodesError(number, f"bad port in address {address!r}") from None
    return ip, port, bus_port, hostname


def _parse_flags(text: str) -> frozenset[NodeFlag]:
    # Unknown flags from newer Redis versions are ignored, not fatal.
    if text == "noflags":
        return frozenset()
    return frozenset(
        _FLAG_BY_TEXT[part] for part in text.split(",") if part in _FLAG_BY_TEXT
    )


def _parse_slots(
    fields: list[str], number: int
) -> tuple[tuple[SlotRange, ...], tuple[OpenSlot, ...], tuple[OpenSlot, ...]]:
    slots: list[SlotRange] = []
    migrating: list[OpenSlot] = []
    importing: list[OpenSlot] = []
    try:
        for field in fields:
            if field.startswith("["):
                body = field.strip("[]")
                if "->-" in body:
                    slot, peer = body.split("->-", 1)
                    migrating.append(OpenSlot(int(slot), peer))
                elif "-<-" in body:
                    slot, peer = body.split("-<-", 1)
                    importing.append(OpenSlot(int(slot), peer))
                else:
                    raise ClusterNodesError(number, f"bad slot marker {field!r}")
            elif "-" in field:
                start, end = field.split("-", 1)
                slots.append(SlotRange(int(start), int(end)))
            else:
                slot_number = int(field)
                slots.append(SlotRange(slot_number, slot_number))
    except ValueError:
        raise ClusterNodesError(
            number, f"bad slot field in {truncate(' '.join(fields))!r}"
        ) from None
    return tuple(slots), tuple(migrating), tuple(importing)


def render_entry(entry: NodeEntry) -> str:
    """Render one entry as Redis prints it in CLUSTER NODES."""
    ip = entry.ip
    address = f"{ip}:{entry.port}@{entry.bus_port}"
    if entry.hostname:
        address += f",{entry.hostname}"
    ordered = sorted(entry.flags, key=_FLAG_ORDER.__getitem__)
    flags = ",".join(flag.value for flag in ordered) or "noflags"
    fields = [
        entry.node_id,
        address,
        flags,
        entry.master_id or "-",
        str(entry.ping_sent),
        str(entry.pong_received),
        str(entry.config_epoch),
        entry.link.value,
    ]
    fields.extend(str(slot_range) for slot_range in entry.slots)
    fields.extend(f"[{o.slot}->-{o.peer_id}]" for o in entry.migrating)
    fields.extend(f"[{o.slot}-<-{o.peer_id}]" for o in entry.importing)
    return " ".join(fields)


def render_cluster_nodes(entries: Iterable[NodeEntry]) -> str:
    """Render entries as a whole CLUSTER NODES reply."""
    return "".join(render_entry(entry) + "\n" for entry in entries)
