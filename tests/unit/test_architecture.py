"""The shape of the code, checked on its import graph (grimp, with imports inside functions and
under TYPE_CHECKING counted too): no import cycles anywhere, and dependencies point inward."""

from __future__ import annotations

from collections.abc import Iterator

import grimp
import pytest

PACKAGES = ("domain", "commands", "projections", "infra", "api", "mcp_adapter", "cli")
# What each package may import of ours (besides itself).
ALLOWED = {
    "domain": set(),
    "commands": {"domain"},
    "projections": {"domain"},
    "infra": {"domain", "commands", "projections"},
    "mcp_adapter": {"domain", "commands", "projections", "infra"},
    "api": {"domain", "commands", "projections", "infra", "mcp_adapter"},
    "cli": {"domain", "commands", "projections", "infra", "mcp_adapter", "api"},
}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def _cycles(graph: grimp.ImportGraph) -> Iterator[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        yield sorted(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    assert list(_cycles(graph)) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_point_inward(graph: grimp.ImportGraph, package: str) -> None:
    wrong = []
    for module in graph.find_children(package) | graph.find_descendants(package) | {package}:
        for imported in graph.find_modules_directly_imported_by(module):
            top = imported.split(".")[0]
            if top != package and top in ALLOWED and top not in ALLOWED[package]:
                wrong.append(f"{module} -> {imported}")
    assert sorted(wrong) == []


def test_every_package_ships() -> None:
    """Each folder with an __init__.py is listed in pyproject's packages: a package left out is
    missing from the wheel and the image, though every test run from a checkout passes."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    listed = set(
        tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(root).parts)
        for top in PACKAGES
        for init in (root / top).rglob("__init__.py")
    }
    assert sorted(found - listed) == []
