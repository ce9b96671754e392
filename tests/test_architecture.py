"""The package's parts and arrows (DESIGN.md, "Parts and arrows") hold: tools/import_graph.py finds
no forbidden import, no module cycle and no module outside a part."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import import_graph


def test_no_arrow_breaks_the_rules_and_no_cycle() -> None:
    assert import_graph.problems(import_graph.module_graph()) == []


def test_the_checker_sees_a_forbidden_arrow_and_a_cycle() -> None:
    graph = {"data.dataset": {"runner.loop"}, "runner.loop": {"data.dataset"}, "types": set()}
    found = import_graph.problems(graph)
    assert "data.dataset (data) -> runner.loop (runner): not allowed" in found
    assert "cycle: data.dataset <-> runner.loop" in found


def test_each_part_but_the_vocabulary_is_a_folder_of_its_own() -> None:
    graph = import_graph.module_graph()
    folders: dict[str, set[str]] = {}
    for module in graph:
        part = import_graph.part_of(module)
        if part not in ("vocabulary", "face"):
            folders.setdefault(part, set()).add(module.split(".")[0])
    assert all(len(tops) == 1 for tops in folders.values()), folders


def test_product_code_never_imports_testing() -> None:
    graph = import_graph.module_graph()
    leaks = [
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if import_graph.part_of(target) == "testing" and import_graph.part_of(module) != "testing"
    ]
    assert leaks == []
