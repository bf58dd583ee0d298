"""Reading a Kredis manifest from a YAML file, as ``kubectl apply`` would.

Checks the envelope (apiVersion, kind, metadata.name) and returns the
resource as plain data; the spec itself is checked by the domain. It never
writes anything.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from kredis.domain.errors import KredisError

API_VERSION = "kredis.io/v1alpha1"
KIND = "Kredis"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")


class SpecFileError(KredisError):
    """A Kredis manifest could not be read or is not a Kredis resource."""


def read_kredis_file(path: Path) -> dict[str, Any]:
    """The Kredis resource in a YAML file: apiVersion, kind, metadata, spec."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecFileError(
            f"cannot read {str(path)!r}: {err.strerror or err}; pass the path of "
            "a Kredis YAML manifest with -f"
        ) from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecFileError(f"{path}: not valid YAML: {err}") from err
    return check_manifest(data, source=str(path))


def check_manifest(data: object, *, source: str) -> dict[str, Any]:
    """The resource if ``data`` is a Kredis manifest, else a clear error."""
    if not isinstance(data, dict):
        raise SpecFileError(f"{source}: expected a Kredis manifest (a mapping)")
    if data.get("apiVersion") != API_VERSION:
        raise SpecFileError(
            f"{source}: apiVersion must be {API_VERSION!r}, "
            f"found {data.get('apiVersion')!r}"
        )
    if data.get("kind") != KIND:
        raise SpecFileError(
            f"{source}: kind must be {KIND!r}, found {data.get('kind')!r}"
        )
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        raise SpecFileError(f"{source}: metadata is missing")
    name = metadata.get("name")
    if not isinstance(name, str) or not _DNS_LABEL.match(name):
        raise SpecFileError(
            f"{source}: metadata.name must be a DNS label of at most 52 "
            f"characters (lowercase letters, digits, '-'), found {name!r}"
        )
    namespace = metadata.get("namespace", "default")
    if not isinstance(namespace, str) or not _DNS_LABEL.match(namespace):
        raise SpecFileError(
            f"{source}: metadata.namespace must be a DNS label, found {namespace!r}"
        )
    spec = data.get("spec")
    if not isinstance(spec, dict):
        raise SpecFileError(f"{source}: spec is missing or not a mapping")
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": dict(spec),
    }
