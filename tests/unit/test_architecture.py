"""The layering rules hold: the domain is pure, libraries stay in their adapter."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "kredis"
FORBIDDEN_IN_DOMAIN = {
    "kubernetes",
    "redis",
    "typer",
    "socket",
    "subprocess",
    "time",
    "random",
    "os",
    "threading",
    "asyncio",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "path", sorted((ROOT / "domain").glob("*.py")), ids=lambda p: p.name
)
def test_domain_module_imports_only_stdlib_and_attrs(path: Path) -> None:
    """A domain module imports no I/O, clock or randomness, and no library but attrs."""

    imported = _imports(path)

    assert not imported & FORBIDDEN_IN_DOMAIN
    third_party = {
        name
        for name in imported
        if name not in sys.stdlib_module_names and name not in {"kredis", "attrs"}
    }
    assert not third_party


@pytest.mark.parametrize("library", ["redis", "kubernetes"])
def test_client_library_is_imported_only_by_its_adapter(library: str) -> None:
    """redis and kubernetes appear only in their own adapter modules."""

    users = [
        path.relative_to(ROOT).as_posix()
        for path in ROOT.rglob("*.py")
        if library in _imports(path)
    ]

    assert all(user.startswith(f"adapters/{library}") for user in users)
