"""The CLI's commands other than ``run``: ``tree``, ``report``, ``backends`` and ``cache``.

Each takes the parsed arguments and a console, prints, and returns its exit status; a user's
mistake is raised as a ``GmaiError`` (``cli.main`` prints it as one line).
"""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from gmai_client import registry
from gmai_client.cache import ResponseCache, default_cache_path, key_fields
from gmai_client.cli_common import EXIT_OF, EXIT_STOPPED, read_template, sampling_params, say_error
from gmai_client.config import DEFAULT_DATA, parse_model_spec, run_default
from gmai_client.dataset import DatasetFile, iter_items, open_dataset
from gmai_client.errors import GmaiError
from gmai_client.prompt import build_request
from gmai_client.records import RECORDS_FILE
from gmai_client.report import render
from gmai_client.select import FIELD_OF_ALIAS, FIELDS, VIEW_OF_FIELD, LexicalTree, load_tree, parse_selection
from gmai_client.splits import resolve_data
from gmai_client.types import Item

# --- report, backends -------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    """Re-render a run folder; exit as its run would have (a run that did not answer every selected
    item is not reported with 0: the tables say which items and why)."""
    try:
        rendered = render(
            args.run_dir, rescore_answers=args.rescore, console=console, reference=args.reference, rules=args.rules
        )
    except OSError as exc:  # a full disk, a folder made read-only: the journal is never half replaced
        where = f"{exc.filename}: " if exc.filename else ""
        say_error(
            f"the reports could not be written ({where}{exc.strerror or exc}); {RECORDS_FILE} is as it was: "
            f"free some space (or make the folder writable) and run report again"
        )
        return EXIT_STOPPED
    console.print("wrote: " + escape(", ".join(rendered.files)))
    return EXIT_OF[rendered.completeness.verdict]


def cmd_backends(console: Console) -> int:
    every = ", ".join(["label", *registry.POLICY_OPTIONS])
    table = Table(
        title="backends (`--model NAME:...`, options with `-B key=value`)", caption=f"every model also takes: {every}"
    )
    for column in ("name", "installed", "options", "about"):
        table.add_column(column, overflow="fold")
    for info in registry.describe():
        options = "\n".join(f"{k}: {v}" for k, v in info.options.items())
        installed = "yes" if info.available else f"no — {info.problem}"
        # Plain text, not markup: "pip install 'gmai-client[torch]'" would lose its "[torch]".
        table.add_row(*map(escape, (info.name, installed, options, info.doc)))
    console.print(table)
    return 0


# --- cache ------------------------------------------------------------------------------------


def cmd_cache(args: argparse.Namespace, console: Console) -> int:
    path = args.cache_path if args.cache_path is not None else default_cache_path()
    if not path.exists():  # nothing to show or clear: opening it would create it (and its folders)
        console.print(f"no response cache at {escape(str(path))}: nothing has been cached there")
        return 0
    cache = ResponseCache(path)
    try:
        if args.action == "stats":
            stats = cache.stats()
            console.print(f"cache: {escape(str(stats.path))}")
            console.print(f"entries: {stats.entries:,}  size: {stats.bytes / 1e6:.1f} MB")
            table = Table("backend", "model", "entries")
            for backend, model, n in stats.by_model:
                table.add_row(backend, model, f"{n:,}")
            console.print(table)
        elif args.action == "clear":
            deleted = cache.clear(model=args.only_model)
            console.print(f"deleted {deleted:,} entries from {escape(str(cache.path))}")
        else:
            return _explain(args, cache, console)
    finally:
        cache.close()
    return 0


def _explain(args: argparse.Namespace, cache: ResponseCache, console: Console) -> int:
    """Why an item of a model hits or misses: which key fields differ from what is stored."""
    if not args.models or len(args.models) != 1 or args.index is None:
        raise GmaiError("cache explain needs one --model SPEC and --index INDEX (plus the run's --data)")
    spec = parse_model_spec(*args.models[0])
    seed = args.seed if args.seed is not None else run_default("seed")
    backend = registry.create(spec, seed=seed)
    files = open_dataset(resolve_data(args.data or DEFAULT_DATA, data_dir=args.data_dir))
    item = next((e for e in iter_items(files) if isinstance(e, Item) and e.index == args.index), None)
    if item is None:
        raise GmaiError(f"no item with index {args.index!r} in {', '.join(str(f.path) for f in files)}")
    template = read_template(args.template) if args.template else None
    request = build_request(item, template=template, params=sampling_params(args, seed))
    hit, differences = cache.explain(key_fields(backend.identity(), request), item.index)
    if hit:
        console.print(f"item {escape(item.index)} for {escape(spec.label)}: [green]hit[/]")
        return 0
    console.print(f"item {escape(item.index)} for {escape(spec.label)}: [yellow]miss[/]")
    if not differences:
        console.print("nothing is cached for this item index (never answered with this cache)")
    for difference in differences:
        when = datetime.fromtimestamp(difference.created).isoformat(timespec="seconds")
        console.print(f"  entry of {when} differs in: {', '.join(difference.fields)}")
    return 0


# --- tree -------------------------------------------------------------------------------------


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
