"""Fails on any import cycle between two modules of the project, printing one path per cycle.

The `acyclic` import-linter contract compares siblings (the children of one package), so it does
not see a cycle that runs through a package's own `__init__` (the package re-exports from a
submodule that imports the package). This check looks at single modules, with the same graph
(grimp, which import-linter is built on) and the same packages: `root_packages` and the
`ignore_imports` of the `acyclic` contract in pyproject.toml, read from the current directory.
Imports inside functions and under TYPE_CHECKING count, as they do for import-linter.

Usage: python scripts/check_import_cycles.py   (from the repository root; `make lint-imports`)
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import grimp


def load_config(path: Path) -> tuple[list[str], set[tuple[str, str]]]:
    """The root packages and the (importer, imported) pairs the `acyclic` contract ignores."""
    with path.open("rb") as f:
        table: dict[str, Any] = tomllib.load(f)["tool"]["importlinter"]
    ignored: set[tuple[str, str]] = set()
    for contract in table.get("contracts", []):
        if contract.get("id") != "acyclic":
            continue
        for expression in contract.get("ignore_imports", []):
            importer, _, imported = (part.strip() for part in expression.partition("->"))
            if "*" in expression or not imported:
                raise SystemExit(
                    f"check_import_cycles: only exact 'a.b -> c.d' ignores are supported, "
                    f"not {expression!r}"
                )
            ignored.add((importer, imported))
    return list(table["root_packages"]), ignored


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def shortest_cycle(graph: grimp.ImportGraph, component: list[str]) -> list[str]:
    """One shortest path from the component's first module back to itself."""
    first = component[0]
    best: list[str] = []
    for successor in sorted(graph.find_modules_directly_imported_by(first)):
        if successor not in component:
            continue
        chain = graph.find_shortest_chain(importer=successor, imported=first)
        if chain and (not best or len(chain) + 1 < len(best)):
            best = [first, *chain]
    return best


def main() -> int:
    root = Path.cwd()
    # Like lint-imports: the checkout (and its gen/) comes before any installed copy.
    sys.path[:0] = [str(root), str(root / "gen")]
    packages, ignored = load_config(root / "pyproject.toml")
    graph = grimp.build_graph(*packages, cache_dir=None)
    for importer, imported in sorted(ignored):
        if graph.direct_import_exists(importer=importer, imported=imported):
            graph.remove_import(importer=importer, imported=imported)
        else:
            print(
                f"check_import_cycles: warning: ignored import {importer} -> {imported} "
                "no longer exists; delete it from the acyclic contract"
            )
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    cycles = strongly_connected(edges)
    for component in cycles:
        print("import cycle: " + " -> ".join(shortest_cycle(graph, component)))
        if len(component) > 2:
            print(f"  (all modules of this cycle: {', '.join(component)})")
    if cycles:
        print(
            f"check_import_cycles: {len(cycles)} import cycle(s) between modules", file=sys.stderr
        )
        return 1
    print(
        f"check_import_cycles: no import cycle among {len(edges)} modules of {', '.join(packages)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
