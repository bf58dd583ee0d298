"""Unit tests: the local runtime's state files, records and loopback addresses.

Nothing here starts a process or opens a socket; files live in tmp_path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kredis.adapters.local_state import (
    LAST_HOST,
    AddressBook,
    AddressesExhaustedError,
    ClusterRecord,
    LocalRuntimeError,
    StateDirError,
    cluster_subnet,
    ordinal_of,
    read_json,
    write_json,
)


def record(
    *,
    name: str = "demo",
    namespace: str = "default",
    base_port: int = 6379,
    max_memory: str = "64mb",
    node_timeout_ms: int = 2000,
) -> ClusterRecord:
    """A checked cluster record; valid unless told otherwise."""
    return ClusterRecord.new(
        namespace=namespace,
        name=name,
        base_port=base_port,
        max_memory=max_memory,
        node_timeout_ms=node_timeout_ms,
    )


def test_subnet_is_stable_per_cluster_and_never_127_0() -> None:
    """A cluster's /24 depends on namespace and name only, and avoids 127.0."""
    names = [(ns, n) for ns in ("default", "prod") for n in ("demo", "cache", "a")]

    subnets = [cluster_subnet(namespace=ns, name=n) for ns, n in names]

    assert subnets == [cluster_subnet(namespace=ns, name=n) for ns, n in names]
    assert len(set(subnets)) == len(names)
    for subnet in subnets:
        first, second, third = (int(part) for part in subnet.split("."))
        assert first == 127
        assert 1 <= second <= 254
        assert 0 <= third <= 255


def test_address_book_hands_out_hosts_in_turn() -> None:
    """Pods get .1, .2, .3 in the order they first need an address."""
    book = AddressBook(subnet="127.9.9")

    for pod in ("demo-0", "demo-1", "demo-2"):
        book = book.with_new_address(pod)

    assert dict(book.pods) == {
        "demo-0": "127.9.9.1",
        "demo-1": "127.9.9.2",
        "demo-2": "127.9.9.3",
    }


def test_new_address_differs_from_the_old_and_from_other_pods() -> None:
    """A moved pod gets an address that neither it nor another pod holds."""
    book = AddressBook(subnet="127.9.9", next_host=LAST_HOST)
    book = book.with_new_address("demo-0").with_new_address("demo-1")

    moved = book.with_new_address("demo-0")

    assert book.get("demo-0") == f"127.9.9.{LAST_HOST}"
    assert book.get("demo-1") == "127.9.9.1"
    assert moved.get("demo-0") == "127.9.9.2"
    assert moved.get("demo-1") == "127.9.9.1"


def test_address_book_refuses_when_every_host_is_held() -> None:
    """With every host of the /24 held, a new pod gets a clear error."""
    book = AddressBook(
        subnet="127.9.9",
        pods=tuple((f"demo-{n}", f"127.9.9.{n + 1}") for n in range(LAST_HOST)),
    )

    with pytest.raises(AddressesExhaustedError, match=r"127\.9\.9\.0/24"):
        book.with_new_address("demo-999")


def test_address_book_and_cluster_record_survive_a_json_round_trip(
    tmp_path: Path,
) -> None:
    """What is written to the state files reads back equal."""
    book = AddressBook(subnet="127.9.9").with_new_address("demo-0")
    cluster = record()

    write_json(tmp_path / "addresses.json", book.to_json())
    write_json(tmp_path / "cluster.json", cluster.to_json())

    assert (
        AddressBook.from_json(
            read_json(tmp_path / "addresses.json"), subnet="127.9.9", path=tmp_path
        )
        == book
    )
    assert ClusterRecord.from_json(
        read_json(tmp_path / "cluster.json"), path=tmp_path
    ) == (cluster)


def test_state_files_are_written_whole_and_private(tmp_path: Path) -> None:
    """A state file is replaced atomically, mode 0600, with no temporary left."""
    path = tmp_path / "state" / "status.json"

    write_json(path, {"clusterState": "Creating"})
    write_json(path, {"clusterState": "Running"})

    assert read_json(path) == {"clusterState": "Running"}
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]


def test_damaged_state_file_names_the_file(tmp_path: Path) -> None:
    """A state file that is not JSON is an error naming its path."""
    path = tmp_path / "cluster.json"
    path.write_text("{not json", encoding="utf-8")

    with pytest.raises(StateDirError, match=r"cluster\.json: not JSON"):
        read_json(path)


def test_missing_state_file_reads_as_none(tmp_path: Path) -> None:
    """A state file that was never written reads as None."""
    assert read_json(tmp_path / "nothing.json") is None


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"name": "Demo"}, "not a DNS label"),
        ({"namespace": "my_ns"}, "not a DNS label"),
        ({"base_port": 60000}, "basePort must be"),
        ({"max_memory": "700Mi"}, "not a Redis memory value"),
        ({"node_timeout_ms": 0}, "node timeout"),
    ],
)
def test_cluster_record_refuses_bad_settings(
    changes: dict[str, Any], problem: str
) -> None:
    """Invalid names, ports, memory sizes and timeouts are refused."""
    with pytest.raises(LocalRuntimeError, match=problem):
        record(**changes)


@pytest.mark.parametrize(
    ("pod", "ordinal"),
    [
        ("demo-0", 0),
        ("demo-12", 12),
        ("demo-x", None),
        ("other-1", None),
        ("demo-01", None),
    ],
)
def test_ordinal_is_read_only_from_this_clusters_pod_names(
    pod: str, ordinal: int | None
) -> None:
    """Only ``<cluster>-<n>`` names have an ordinal."""
    assert ordinal_of("demo", pod) == ordinal
