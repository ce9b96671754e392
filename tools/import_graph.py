"""Print the import graph between the package's parts and check it against DESIGN's "Parts and arrows".

    python tools/import_graph.py            # the part graph, then every arrow that breaks the rules
    python tools/import_graph.py --modules  # also every module-level arrow

Every ``import`` counts, including those inside functions (a lazy import is still an arrow). A part
may import only the parts listed for it in ``ALLOWED``; module cycles are reported too. Exits 1 when
an arrow breaks the rules or a module belongs to no part, so CI can run it (tests/test_architecture.py).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "gmai_client"

#: module (dotted, without the package prefix) -> part. Prefixes ending in "." cover a folder: each part
#: but the vocabulary is one folder of the package (``backends/`` is installed as ``gmai_client.backends``).
PARTS: dict[str, str] = {
    # The package root: the names a user imports, and the public entry points.
    "types": "vocabulary",
    "errors": "vocabulary",
    "config": "vocabulary",
    "options": "vocabulary",
    "backend": "vocabulary",
    "batch_api": "vocabulary",
    "labels": "vocabulary",
    "runfile": "vocabulary",
    "version": "vocabulary",
    "moved": "vocabulary",
    "samples": "vocabulary",
    "data.": "data",
    "protocol.": "protocol",
    "policy.": "policy",
    "backends.": "backends",
    "results.": "results",
    "runner.": "runner",
    "cli.": "face",
    "api": "face",
    "__main__": "face",
    "__init__": "face",
    "testing.": "testing",
}

#: part -> the parts it may import (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "vocabulary": set(),
    "data": {"vocabulary"},
    "protocol": {"vocabulary"},
    "policy": {"vocabulary"},
    "backends": {"vocabulary"},
    "results": {"vocabulary", "data", "protocol"},  # data: the gallery reads images back from the TSV
    "runner": {"vocabulary", "data", "protocol", "policy", "backends", "results"},
    "face": {"vocabulary", "data", "protocol", "policy", "backends", "results", "runner"},
    "testing": {"vocabulary", "data", "protocol", "policy", "backends", "results", "runner", "face"},
}


def module_files() -> dict[str, Path]:
    """Dotted module name (package prefix dropped) -> file, for the package and ``backends/``."""
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT / PACKAGE).with_suffix("").parts
        found[".".join(parts)] = path
    for path in sorted((ROOT / "backends").rglob("*.py")):
        parts = path.relative_to(ROOT / "backends").with_suffix("").parts
        found[".".join(("backends", *parts))] = path
    return found


def part_of(module: str) -> str | None:
    name = module.removesuffix(".__init__")
    matches = [
        (len(prefix), part)
        for prefix, part in PARTS.items()
        if name == prefix or (prefix.endswith(".") and (name + ".").startswith(prefix))
    ]
    return max(matches)[1] if matches else None


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (absolute ``gmai_client...`` and relative imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module.rsplit(".", 1)[0] if "." in module else ""
    if path.name == "__init__.py":
        package = module.removesuffix(".__init__")
    targets: set[str] = set()

    def add(name: str) -> None:
        # The longest known module that ``name`` is, or is inside of.
        while name:
            if name in known or f"{name}.__init__" in known:
                targets.add(name if name in known else f"{name}.__init__")
                return
            name = name.rsplit(".", 1)[0] if "." in name else ""

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    add(alias.name.removeprefix(PACKAGE + "."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if package else []
                stem = ".".join([*base, node.module] if node.module else base)
            elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                stem = node.module.removeprefix(PACKAGE).lstrip(".")
            else:
                continue
            for alias in node.names:
                add(f"{stem}.{alias.name}" if stem else alias.name)
    targets.discard(module)
    return targets


def module_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {module: imports_of(path, module, known) for module, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def problems(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for module in sorted(graph):
        part = part_of(module)
        if part is None:
            out.append(f"{module}: belongs to no part (add it to PARTS)")
            continue
        for target in sorted(graph[module]):
            target_part = part_of(target)
            if target_part and target_part != part and target_part not in ALLOWED[part]:
                out.append(f"{module} ({part}) -> {target} ({target_part}): not allowed")
    out += [f"cycle: {' <-> '.join(component)}" for component in cycles(graph)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", action="store_true", help="also print every module-level arrow")
    args = parser.parse_args(argv)
    graph = module_graph()
    edges: dict[tuple[str, str], int] = defaultdict(int)
    for module, targets in graph.items():
        for target in targets:
            source, sink = part_of(module), part_of(target)
            if source and sink and source != sink:
                edges[(source, sink)] += 1
    print("part -> part (module arrows)")
    for (source, sink), count in sorted(edges.items()):
        mark = "" if sink in ALLOWED.get(source, set()) else "   <-- not allowed"
        print(f"  {source:10} -> {sink:10} {count:3}{mark}")
    if args.modules:
        print("\nmodule -> modules")
        for module in sorted(graph):
            print(f"  {module} ({part_of(module)}): {', '.join(sorted(graph[module])) or '-'}")
    found = problems(graph)
    print("\n" + ("\n".join(found) if found else "no arrow breaks the rules; no cycle"))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
