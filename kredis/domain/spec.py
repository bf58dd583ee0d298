"""The desired shape of a cluster: the Kredis spec and its validation.

Turns the resource's raw spec mapping into a frozen ``KredisSpec`` and lists
every problem with it. It never raises on a bad spec: an invalid spec is a
status to report, not a crash.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

MIN_MASTERS = 1
FAILOVER_MAJORITY_MASTERS = 3
MAX_REPLICAS = 5
MIN_PORT = 1
# The cluster bus listens on port + 10000, which must stay a valid port.
MAX_PORT = 65535 - 10000

_MEMORY = re.compile(r"^(\d+)(b|k|kb|m|mb|g|gb)?$", re.IGNORECASE)
_MEMORY_FACTORS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
}
MEMORY_UNITS_HELP = (
    "Redis accepts a number of bytes or a number with one of the units "
    "b, k, kb, m, mb, g, gb (for example 512mb or 1gb)"
)


@attrs.frozen
class KredisSpec:
    """The validated desired shape: masters, replicas per master and more."""

    masters: int
    replicas: int
    base_port: int
    image: str
    max_memory: str = ""

    @property
    def pod_count(self) -> int:
        """Pods the cluster needs: every master and its replicas."""
        return self.masters * (1 + self.replicas)

    @property
    def max_memory_bytes(self) -> int | None:
        """``max_memory`` in bytes, or None when unset."""
        return parse_memory(self.max_memory) if self.max_memory else None


@attrs.frozen
class SpecCheck:
    """The result of validating a raw spec: the spec, or why there is none."""

    spec: KredisSpec | None
    problems: tuple[str, ...]
    warnings: tuple[str, ...]


def parse_memory(text: str) -> int | None:
    """Parse a Redis memory value (``512mb``, ``1gb``, ``1048576``) to bytes."""
    match = _MEMORY.match(text.strip())
    if match is None:
        return None
    digits, unit = match.groups()
    return int(digits) * _MEMORY_FACTORS[(unit or "").lower()]


def check_spec(raw: Mapping[str, object]) -> SpecCheck:
    """Validate a raw spec mapping and say everything that is wrong with it."""
    problems: list[str] = []
    warnings: list[str] = []

    def integer(field: str, low: int, high: int | None, hint: str) -> int:
        value = raw.get(field)
        if value is None:
            problems.append(f"spec.{field} is required ({hint})")
            return low
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"spec.{field} must be an integer, got {value!r}")
            return low
        if value < low or (high is not None and value > high):
            bound = f"at least {low}" if high is None else f"{low}..{high}"
            problems.append(f"spec.{field} must be {bound}, got {value} ({hint})")
        return value

    masters = integer("masters", MIN_MASTERS, None, "the number of masters")
    replicas = integer("replicas", 0, MAX_REPLICAS, "replicas per master")
    base_port = integer(
        "basePort", MIN_PORT, MAX_PORT, "the bus port is basePort + 10000"
    )

    image = raw.get("image", "")
    if not isinstance(image, str) or not image.strip():
        problems.append(f"spec.image must be a non-empty string, got {image!r}")
        image = ""

    max_memory = raw.get("maxMemory", "")
    if max_memory is None:
        max_memory = ""
    if not isinstance(max_memory, str):
        problems.append(f"spec.maxMemory must be a string, got {max_memory!r}")
        max_memory = ""
    elif max_memory and parse_memory(max_memory) is None:
        problems.append(
            f"spec.maxMemory {max_memory!r} is not a Redis memory value: "
            f"{MEMORY_UNITS_HELP}; Kubernetes units such as Mi or Gi are not"
        )

    if not problems and masters < FAILOVER_MAJORITY_MASTERS:
        warnings.append(
            f"spec.masters is {masters}: with fewer than "
            f"{FAILOVER_MAJORITY_MASTERS} masters the cluster has no majority to "
            "fail over a master that goes down"
        )

    if problems:
        return SpecCheck(spec=None, problems=tuple(problems), warnings=())
    spec = KredisSpec(
        masters=masters,
        replicas=replicas,
        base_port=base_port,
        image=image,
        max_memory=max_memory,
    )
    return SpecCheck(spec=spec, problems=(), warnings=tuple(warnings))
