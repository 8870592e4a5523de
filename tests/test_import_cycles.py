"""No import cycle between the project's modules.

import-linter's acyclic_siblings contract (pyproject.toml) finds cycles between sibling modules
or subpackages; this test also finds those through a package's `__init__` (a module importing its
own package while the `__init__` imports the module). grimp, import-linter's graph builder, reads
every import, those inside functions too; networkx finds the strongly connected components.
"""

from __future__ import annotations

import grimp
import networkx as nx

PACKAGES = ("base_models", "labeling_app", "evaluation", "rlhf")


def test_no_import_cycle_between_project_modules():
    graph = grimp.build_graph(*PACKAGES)
    digraph = nx.DiGraph(
        (m, n) for m in graph.modules for n in graph.find_modules_directly_imported_by(m)
    )
    cycles = {frozenset(c) for c in nx.strongly_connected_components(digraph) if len(c) > 1}
    assert cycles == set(), "modules that import each other, directly or in a cycle"
