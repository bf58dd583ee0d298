"""Spec validation: bounds, memory units, warnings; an invalid spec is reported."""

from __future__ import annotations

from typing import Any

import pytest

from kredis.domain.spec import check_spec, parse_memory

GOOD: dict[str, Any] = {
    "masters": 3,
    "replicas": 1,
    "basePort": 6379,
    "image": "redis:7.4",
    "maxMemory": "512mb",
}


def test_valid_spec_gives_pod_count_of_masters_times_one_plus_replicas() -> None:
    """spec.replicas counts replicas per master."""

    check = check_spec(GOOD)

    assert check.problems == ()
    assert check.spec is not None
    assert check.spec.pod_count == 6


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("masters", 0, "spec.masters must be at least 1"),
        ("replicas", 6, "spec.replicas must be 0..5"),
        ("replicas", -1, "spec.replicas must be 0..5"),
        ("basePort", 0, "spec.basePort must be 1..55535"),
        ("basePort", 55536, "spec.basePort must be 1..55535"),
        ("masters", "three", "must be an integer"),
        ("image", "", "spec.image must be a non-empty string"),
    ],
)
def test_out_of_range_field_is_a_problem_naming_the_field(
    field: str, value: object, words: str
) -> None:
    """Each bound violation names the field and the allowed range."""

    check = check_spec({**GOOD, field: value})

    assert check.spec is None
    assert any(words in problem for problem in check.problems)


def test_kubernetes_memory_units_are_rejected_with_redis_units_listed() -> None:
    """700Mi is not a Redis memory value; the message lists what Redis accepts."""

    check = check_spec({**GOOD, "maxMemory": "700Mi"})

    assert check.spec is None
    (problem,) = check.problems
    assert "'700Mi'" in problem
    assert "b, k, kb, m, mb, g, gb" in problem


@pytest.mark.parametrize(
    ("text", "size"),
    [("100mb", 100 * 1024**2), ("1gb", 1024**3), ("1048576", 1048576), ("2k", 2000)],
)
def test_redis_memory_values_parse_to_bytes(text: str, size: int) -> None:
    """Redis' own units parse as redis-server reads them."""

    assert parse_memory(text) == size


def test_fewer_than_three_masters_is_valid_with_a_warning() -> None:
    """Two masters work but cannot fail over a master by majority."""

    check = check_spec({**GOOD, "masters": 2})

    assert check.spec is not None
    assert any("no majority" in warning for warning in check.warnings)
