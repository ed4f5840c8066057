"""The core's modules import each other without cycles, and reach one another through public names.

Every import counts: at module level, inside functions (lazy) and under ``TYPE_CHECKING``. A cycle
hidden behind a lazy import is still a cycle (the engine and the bake loop once had one).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import deployer

ROOT = Path(deployer.__file__).parent


def _modules() -> dict[str, ast.Module]:
    out: dict[str, ast.Module] = {}
    for path in ROOT.rglob("*.py"):
        parts = ("deployer", *path.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text())
    return out


def _imports(tree: ast.Module, known: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in known and m != "deployer"}


@pytest.mark.timeout(30)
def test_no_import_cycles_in_the_core() -> None:
    trees = _modules()
    graph = {name: _imports(tree, set(trees)) - {name} for name, tree in trees.items()}

    def path_back(start: str) -> list[str] | None:
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    return [*path, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = [c for name in sorted(graph) if (c := path_back(name))]
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.timeout(30)
def test_modules_use_each_others_public_names() -> None:
    """``api._provider_for`` and the like stay inside their module."""
    offenders = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in {"api", "engine", "gatekeeper", "ledger", "plan", "rollout", "gates"}
            ):
                offenders.append(f"{name}: {node.value.id}.{node.attr}")
    assert offenders == []
