"""Reading snapshots: required fields, clear errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from kredis.domain.errors import SnapshotError
from kredis.domain.snapshot import load_snapshot
from tests.support.world import World


def _document() -> dict[str, Any]:
    return World.formed().snapshot()


def test_rendered_world_loads_with_pods_sorted_by_ordinal_number() -> None:
    """Pods sort by ordinal as a number, so demo-10 comes after demo-9."""

    world = World(masters=11, replicas=0)
    for ordinal in (10, 2, 9, 0, 1):
        world.add_pod(ordinal)

    snapshot = load_snapshot(world.snapshot())

    assert [p.name for p in snapshot.pods] == [
        "demo-0",
        "demo-1",
        "demo-2",
        "demo-9",
        "demo-10",
    ]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("pods"), "pods"),
        (lambda d: d.update(format="kredis.snapshot/v0"), "format"),
        (lambda d: d.update(observedAt="yesterday"), "observedAt"),
        (lambda d: d["kredis"]["metadata"].pop("name"), "kredis.metadata.name"),
        (lambda d: d["pods"][1].pop("ready"), "pods[1].ready"),
        (lambda d: d["pods"][0].update(name="other-0"), "pods[0].name"),
        (lambda d: d["redis"]["demo-2"].pop("myId"), "redis.demo-2.myId"),
        (
            lambda d: d["redis"]["demo-2"].update(clusterNodes="garbage"),
            "redis.demo-2.clusterNodes",
        ),
        (lambda d: d["redis"]["demo-1"].update(dbsize="many"), "redis.demo-1.dbsize"),
        (lambda d: d["jobs"].append({"active": 1}), "jobs[0].name"),
        (lambda d: d.update(statefulSet={"replicas": 3}), "statefulSet.readyReplicas"),
    ],
)
def test_malformed_snapshot_error_names_the_field(mutate: Any, field: str) -> None:
    """Each structural defect raises SnapshotError naming the exact field."""
    document = _document()
    mutate(document)

    with pytest.raises(SnapshotError) as caught:
        load_snapshot(document)

    assert caught.value.field == field


def test_my_id_that_differs_from_the_myself_line_is_rejected() -> None:
    """The node id comes from the myself line; a contradicting myId is an error."""
    document = _document()
    document["redis"]["demo-0"]["myId"] = "f" * 40

    with pytest.raises(SnapshotError, match="myself line"):
        load_snapshot(document)


def test_unknown_fields_are_ignored_and_empty_status_is_accepted() -> None:
    """Extra fields do not matter; a new resource has no status."""
    document = _document()
    document["extra"] = {"anything": 1}
    document["pods"][0]["hostIP"] = "10.0.0.1"
    document["kredis"]["status"] = {}

    snapshot = load_snapshot(document)

    assert snapshot.resource.status.cluster_state is None
