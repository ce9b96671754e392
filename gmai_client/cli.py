"""Command line: ``python -m gmai_client run | tree | report | backends``.

Every failure the user can fix (a bad path, an unknown tree name, a missing extra) is printed as
one clear line and exit status 2; an interrupted run exits 130 after saving what finished.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from gmai_client.config import DEFAULT_DATA, RunConfig, parse_model_spec
from gmai_client.errors import GmaiError, redact
from gmai_client.types import SamplingParams

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _ModelAction(argparse.Action):
    """``--model SPEC`` starts a model; ``-B key=value`` options that follow belong to it."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        models = list(getattr(namespace, "models", None) or [])
        if option_string in ("--model", "-m"):
            models.append([values, []])
        else:
            if not models:
                parser.error("-B key=value must follow the --model it applies to")
            models[-1][1].append(values)
        namespace.models = models


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gmai_client", description="GMAI-MMBench evaluation client")
    commands = parser.add_subparsers(dest="command")

    run = commands.add_parser("run", help="evaluate models (default: random baseline on the bundled sample)")
    _add_data_options(run)
    run.add_argument(
        "--model",
        "-m",
        dest="models",
        action=_ModelAction,
        metavar="SPEC",
        help="backend[:target][@endpoint], repeatable (default: random)",
    )
    run.add_argument(
        "-B",
        dest="models",
        action=_ModelAction,
        metavar="KEY=VALUE",
        help="an option of the preceding --model (see `backends`)",
    )
    run.add_argument("--concurrency", "-c", type=int, default=8, help="in-flight items per model (default 8)")
    run.add_argument("--limit", "-n", type=int, default=None, help="first N selected items only")
    run.add_argument("--seed", type=int, default=0, help="seed of the random baseline and of sampling backends")
    run.add_argument("--out", type=Path, default=Path("runs"), help="folder of run folders (default ./runs)")
    run.add_argument("--run-name", default="", help="run folder name (default: from the model labels)")
    run.add_argument(
        "--template", default=None, help="prompt template file ({hint} {question} {options} {instruction})"
    )
    run.add_argument("--temperature", type=float, default=0.0)
    run.add_argument("--max-tokens", type=int, default=512)
    run.add_argument("--retry-errors", action="store_true", help="on resume, send errored items again")
    run.add_argument("--no-progress", action="store_true", help="no progress display")

    tree = commands.add_parser("tree", help="browse the lexical tree with item counts from the data")
    _add_data_options(tree)
    tree.add_argument("--view", default=None, help="only this view (task, department, granularity)")
    tree.add_argument("--depth", type=int, default=2, help="1 categories, 2 + modalities, 3 + leaf labels")
    tree.add_argument("--all", action="store_true", help="also show nodes with no items in the data")

    report = commands.add_parser("report", help="re-render a run folder's metrics and tables (no model calls)")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--rescore", action="store_true", help="re-apply answer extraction to the raw answers")
    report.add_argument("--reference", default=None, help="model label the deltas are taken against")

    commands.add_parser("backends", help="list backends, whether installed, and their options")
    return parser


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        "-d",
        nargs="+",
        action="extend",
        default=None,
        metavar="PATH",
        help="TSV file(s), a folder, GMAI-MMBench_VAL / _TEST, or `sample` (default)",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="where named splits live (default: XDG data dir)")
    parser.add_argument(
        "--select",
        "-s",
        action="append",
        default=None,
        metavar="EXPR",
        help="lexical-tree selection, e.g. 'department=Ophthalmology & modality=Fundus Photography'",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Off a terminal (logs, CI) rich would squeeze tables into 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        if args.command in (None, "run"):
            if args.command is None:
                args = parser.parse_args(["run", *(argv or [])])
            return _cmd_run(args, console)
        if args.command == "tree":
            return _cmd_tree(args, console)
        if args.command == "report":
            return _cmd_report(args, console)
        if args.command == "backends":
            return _cmd_backends(console)
    except GmaiError as exc:
        Console(stderr=True).print(f"[red]error:[/] {redact(str(exc))}", highlight=False)
        return EXIT_USAGE
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from gmai_client.runner import run

    specs = [parse_model_spec(spec, options) for spec, options in (args.models or [["random", []]])]
    template = Path(args.template).read_text(encoding="utf-8") if args.template else None
    config = RunConfig(
        models=tuple(specs),
        data=tuple(args.data or DEFAULT_DATA),
        select=tuple(args.select or ()),
        concurrency=args.concurrency,
        limit=args.limit,
        seed=args.seed,
        out=args.out,
        run_name=args.run_name,
        template=template,
        params=SamplingParams(temperature=args.temperature, max_tokens=args.max_tokens, seed=args.seed),
        data_dir=args.data_dir,
        retry_errors=args.retry_errors,
        progress=not args.no_progress,
    )
    result = asyncio.run(run(config))
    console.print(f"run folder: {result.run_dir}")
    for outcome in result.outcomes:
        if outcome.stopped:
            console.print(f"[red]{outcome.spec.label} stopped early:[/] {outcome.stopped}")
    if result.interrupted:
        console.print("[yellow]interrupted: finished items are saved; rerun the same command to resume")
        return EXIT_INTERRUPTED
    return 0


def _cmd_report(args: argparse.Namespace, console: Console) -> int:
    from gmai_client.report import render

    written = render(args.run_dir, rescore_answers=args.rescore, console=console, reference=args.reference)
    console.print("wrote: " + ", ".join(written))
    return 0


def _cmd_tree(args: argparse.Namespace, console: Console) -> int:
    from gmai_client.dataset import iter_items, open_dataset
    from gmai_client.select import FIELDS, VIEW_OF_FIELD, load_tree, parse_selection
    from gmai_client.splits import resolve_data
    from gmai_client.types import Item

    tree = load_tree()
    selection = parse_selection(args.select)
    files = open_dataset(resolve_data(args.data or DEFAULT_DATA, data_dir=args.data_dir))
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

    views = list(VIEW_OF_FIELD.values())
    if args.view:
        from gmai_client.select import _ALIASES

        field = _ALIASES.get(args.view.lower())
        if field not in VIEW_OF_FIELD:
            raise GmaiError(f"--view must be one of {', '.join(f for f in FIELDS if f in VIEW_OF_FIELD)}")
        views = [VIEW_OF_FIELD[field]]
    root = Tree(f"GMAI-MMBench lexical tree — {total} items in {', '.join(str(f.path) for f in files)}")
    for view in views:
        view_node = root.add(f"[bold]{view}[/]")
        for category, modalities in sorted(tree.views[view].items()):
            n = counts[(view, category)]
            if not n and not args.all:
                continue
            cat_node = view_node.add(_node_label(category, n))
            if args.depth < 2:
                continue
            for modality, labels in sorted(modalities.items()):
                m = counts[(view, category, modality)]
                if not m and not args.all:
                    continue
                mod_node = cat_node.add(_node_label(modality, m))
                if args.depth < 3:
                    continue
                for label in labels:
                    k = counts[(view, category, modality, label)]
                    if k or args.all:
                        mod_node.add(_node_label(label, k))
    console.print(root)
    return 0


def _node_label(name: str, n: int) -> str:
    from rich.markup import escape

    return f"{escape(name)} [cyan]({n})[/]" if n else f"[dim]{escape(name)} (0)[/]"


def _cmd_backends(console: Console) -> int:
    from gmai_client.registry import describe

    table = Table(title="backends (`--model NAME:...`, options with `-B key=value`)")
    for column in ("name", "installed", "options", "about"):
        table.add_column(column, overflow="fold")
    for info in describe():
        options = "\n".join(f"{k}: {v}" for k, v in info.options.items())
        table.add_row(info.name, "yes" if info.available else f"no — {info.problem}", options, info.doc)
    console.print(table)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
