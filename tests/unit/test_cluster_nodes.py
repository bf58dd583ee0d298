"""Our CLUSTER NODES parser reads every form Redis prints, keyed by node id."""

from __future__ import annotations

import pytest

from kredis.domain.errors import ClusterNodesError
from kredis.domain.nodes import (
    ClusterInfo,
    ClusterView,
    LinkState,
    NodeFlag,
    OpenSlot,
    parse_cluster_nodes,
    render_cluster_nodes,
)
from kredis.domain.slots import SlotRange

A = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"
B = "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1"
C = "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f"
D = "6ec23923021cf3ffec47632106199cb7f496ce01"
E = "824fe116063bc5fcf9f4ffd895bc17aee7731ac3"

REPLY = (
    f"{C} 127.0.0.1:30004@31004,cache-3.example slave {A} 0 1426238317239 4 "
    "connected\n"
    f"{B} 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922 "
    f"[5461->-{A}]\n"
    f"{A} [2001:db8::1]:30001@31001 myself,master - 0 0 1 connected 0-5460 "
    f"10923 [10924-<-{B}]\n"
    f"{D} :0@0 master,fail,noaddr - 1426238316232 1426238316232 5 disconnected\n"
    f"{E} 2001:db8::7:30007@31007 master,fail?,handshake,nofailover - 1 0 0 "
    "disconnected\n"
)


def test_view_is_keyed_by_node_id_with_myself_found() -> None:
    """Each line becomes an entry under its node id; myself is the replying node."""

    view = ClusterView.parse(REPLY)

    assert view.myself.node_id == A
    assert set(view.by_id) == {A, B, C, D, E}
    assert view.known_ids == {B, C, D}


def test_slots_ranges_and_migration_markers_are_parsed() -> None:
    """Ranges, single slots and [slot->-id]/[slot-<-id] markers are all kept."""

    view = ClusterView.parse(REPLY)

    assert view.by_id[A].slots == (SlotRange(0, 5460), SlotRange(10923, 10923))
    assert view.by_id[A].importing == (OpenSlot(10924, B),)
    assert view.by_id[B].migrating == (OpenSlot(5461, A),)
    assert view.by_id[A].slot_count == 5462


def test_flags_addresses_and_link_state_are_parsed() -> None:
    """fail, fail?, noaddr, handshake, nofailover, IPv6 and hostnames are read."""

    view = ClusterView.parse(REPLY)

    assert view.by_id[A].ip == "2001:db8::1"
    assert view.by_id[C].hostname == "cache-3.example"
    assert view.by_id[C].master_id == A
    assert view.by_id[D].is_failed
    assert view.by_id[D].has_no_address
    assert view.by_id[D].link is LinkState.DISCONNECTED
    assert view.by_id[E].ip == "2001:db8::7"
    assert view.by_id[E].flags == {
        NodeFlag.MASTER,
        NodeFlag.SUSPECTED,
        NodeFlag.HANDSHAKE,
        NodeFlag.NO_FAILOVER,
    }


def test_rendered_entries_parse_back_to_the_same_entries() -> None:
    """Rendering then parsing gives the same entries."""

    entries = parse_cluster_nodes(REPLY)

    assert parse_cluster_nodes(render_cluster_nodes(entries)) == entries


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (f"{A} 127.0.0.1:1@2 myself,master -", "at least 8 fields"),
        ("abc 127.0.0.1:1@2 myself,master - 0 0 1 connected", "not a node id"),
        (f"{A} 127.0.0.1@2 myself,master - 0 0 1 connected", "without port"),
        (f"{A} 127.0.0.1:1@2 myself,master - 0 0 1 linked", "link state"),
        (f"{A} 127.0.0.1:1@2 myself,master - 0 0 1 connected 9-x", "bad slot"),
        (f"{A} 127.0.0.1:1@2 myself,master - 0 0 1 connected 20000", "bad slot"),
    ],
)
def test_malformed_line_is_rejected_with_its_line_number(
    line: str, problem: str
) -> None:
    """A bad line raises an error that names the line and what is wrong."""

    with pytest.raises(ClusterNodesError) as caught:
        parse_cluster_nodes("\n" + line)

    assert caught.value.line_number == 2
    assert problem in str(caught.value)


def test_view_without_myself_line_is_rejected() -> None:
    """A reply must say which node is myself."""

    with pytest.raises(ClusterNodesError, match="myself"):
        ClusterView.parse(f"{B} 127.0.0.1:1@2 master - 0 0 1 connected\n")


def test_cluster_info_reads_state_and_counts() -> None:
    """CLUSTER INFO gives state, slot and node counts."""

    info = ClusterInfo.parse(
        "cluster_state:fail\r\ncluster_slots_assigned:5001\r\n"
        "cluster_known_nodes:2\r\ncluster_size:1\r\ncluster_current_epoch:3\r\n"
    )

    assert not info.state_ok
    assert (info.slots_assigned, info.known_nodes, info.size) == (5001, 2, 1)
    assert info.current_epoch == 3
