"""No import cycles between edgedistill's modules (issue 15): the grimp graph (import-linter's) of the
whole package, counting every import a module makes: module level, inside functions (lazy) and under
TYPE_CHECKING. A cycle fails the test with the chain of imports and their lines."""

from __future__ import annotations

import itertools

import grimp

PACKAGE = "edgedistill"


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph has a few hundred modules; no recursion limit worry).
    Only components with more than one module are returned: a module importing itself is no cycle
    grimp reports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph[nxt])))
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
                    found.append(sorted(component))
    return found


def one_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest import chain from the component's first module back to itself (breadth first)."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    return component  # unreachable for a strongly connected component


def describe(g: grimp.ImportGraph, chain: list[str]) -> str:
    lines = []
    for importer, imported in itertools.pairwise(chain):
        details = g.get_import_details(importer=importer, imported=imported)
        where = "; ".join(f"line {d['line_number']}: {d['line_contents']}" for d in details) or "?"
        lines.append(f"  {importer} -> {imported}  ({where})")
    return "\n".join(lines)


def import_graph() -> tuple[grimp.ImportGraph, dict[str, set[str]]]:
    g = grimp.build_graph(PACKAGE, cache_dir=None)
    modules = set(g.modules)
    return g, {m: set(g.find_modules_directly_imported_by(m)) & modules for m in modules}


def test_the_graph_covers_every_part() -> None:
    # A graph missing the symlinked parts (service, workers, agent) would pass vacuously.
    _, graph = import_graph()
    for part in ("service", "workers", "agent", "client"):
        assert any(m == f"{PACKAGE}.{part}" or m.startswith(f"{PACKAGE}.{part}.") for m in graph), part
    assert len(graph) > 100


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert strongly_connected_components(graph) == [["a", "b", "c"]]
    assert one_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert one_cycle({"x": {"y"}, "y": {"x"}}, ["x", "y"]) == ["x", "y", "x"]


def test_no_import_cycles() -> None:
    g, graph = import_graph()
    components = strongly_connected_components(graph)
    report = "\n\n".join(f"cycle among {', '.join(c)}:\n{describe(g, one_cycle(graph, c))}" for c in components)
    assert not components, f"{len(components)} import cycle(s):\n\n{report}"
