"""The one layer rule import-linter cannot state: `parley.app` sits inside the kernel's package,
so a contract cannot forbid the kernel from importing it (pyproject's contracts state the rest)."""

from __future__ import annotations

import grimp


def test_no_kernel_module_imports_a_composition_root() -> None:
    graph = grimp.build_graph("parley")
    roots = {m for m in graph.modules if m == "parley.app" or m.startswith("parley.app.")}
    importers = {
        (importer, root)
        for root in roots
        for importer in graph.find_modules_that_directly_import(root)
        if importer not in roots and importer != "parley.__main__"
    }
    assert importers == set(), f"kernel modules import composition roots: {sorted(importers)}"
