"""No import cycle between the project's modules.

import-linter's acyclic_siblings contract (pyproject.toml) finds cycles between sibling modules
or subpackages; this test also finds those through a package's `__init__` (a module importing its
own package while the `__init__` imports the module). grimp, import-linter's graph builder, reads
every import, those inside functions too.
"""

from __future__ import annotations

import grimp

PACKAGES = ("base_models", "labeling_app", "evaluation", "rlhf")
# Files split in two halves that import each other; issue 20 step 2 makes them subpackages.
KNOWN = {
    frozenset({"evaluation.safety", "evaluation.safety_adapters", "evaluation.safety_calibrate"}),
    frozenset({"labeling_app.exchange", "labeling_app.exchange_rankings"}),
    frozenset({"rlhf.reward.data", "rlhf.reward.loaders"}),
}


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the components of more than one node, each a set of nodes."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_strongly_connected_on_a_hand_made_graph():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert strongly_connected(edges) == [{"a", "b", "c"}]


def test_no_import_cycle_between_project_modules():
    graph = grimp.build_graph(*PACKAGES)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    cycles = {frozenset(c) for c in strongly_connected(edges)}
    assert cycles - KNOWN == set(), "modules that import each other, directly or in a cycle"
    assert KNOWN - cycles == set(), "a known cycle is gone: drop it from KNOWN"
