"""``python -m gmai_client tree``: the lexical tree with the item counts of the loaded data."""

from __future__ import annotations

import argparse
from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from gmai_client.config import DEFAULT_DATA
from gmai_client.data.dataset import DatasetFile, iter_items, open_dataset
from gmai_client.data.select import FIELD_OF_ALIAS, FIELDS, VIEW_OF_FIELD, LexicalTree, load_tree, parse_selection
from gmai_client.data.splits import resolve_data
from gmai_client.errors import GmaiError
from gmai_client.types import Item


def cmd_tree(args: argparse.Namespace, console: Console) -> int:
    views = list(VIEW_OF_FIELD.values())
    if args.view:
        field = FIELD_OF_ALIAS.get(args.view.lower())
        if field not in VIEW_OF_FIELD:
            raise GmaiError(f"--view must be one of {', '.join(f for f in FIELDS if f in VIEW_OF_FIELD)}")
        views = [VIEW_OF_FIELD[field]]
    selection = parse_selection(args.select)
    files = open_dataset(resolve_data(args.data or DEFAULT_DATA, data_dir=args.data_dir))
    counts, total = _tree_counts(files, selection)
    root = Tree(f"GMAI-MMBench lexical tree — {total} items in {', '.join(str(f.path) for f in files)}")
    tree = load_tree()
    for view in views:
        _add_view(root.add(f"[bold]{view}[/]"), tree, view, counts, depth=args.depth, show_all=args.all)
    console.print(root)
    return 0


def _tree_counts(files: list[DatasetFile], selection) -> tuple[Counter[tuple[str, ...]], int]:
    """Selected items per (view, category), (..., modality) and (..., leaf label); and their total."""
    counts: Counter[tuple[str, ...]] = Counter()
    total = 0
    for entry in iter_items(files):
        if not isinstance(entry, Item) or not selection.matches(entry):
            continue
        total += 1
        for field, view in VIEW_OF_FIELD.items():
            category = getattr(entry, field)
            counts[(view, category)] += 1
            counts[(view, category, entry.modality)] += 1
            counts[(view, category, entry.modality, entry.category)] += 1
    return counts, total


def _add_view(
    view_node: Tree, tree: LexicalTree, view: str, counts: Counter[tuple[str, ...]], *, depth: int, show_all: bool
) -> None:
    for category, modalities in sorted(tree.views[view].items()):
        n = counts[(view, category)]
        if not n and not show_all:
            continue
        cat_node = view_node.add(_node_label(category, n))
        if depth < 2:
            continue
        for modality, labels in sorted(modalities.items()):
            m = counts[(view, category, modality)]
            if not m and not show_all:
                continue
            mod_node = cat_node.add(_node_label(modality, m))
            if depth < 3:
                continue
            for label in labels:
                k = counts[(view, category, modality, label)]
                if k or show_all:
                    mod_node.add(_node_label(label, k))


def _node_label(name: str, n: int) -> str:
    return f"{escape(name)} [cyan]({n})[/]" if n else f"[dim]{escape(name)} (0)[/]"
