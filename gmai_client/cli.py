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
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from gmai_client.config import DEFAULT_DATA, RunConfig, parse_model_spec
from gmai_client.errors import GmaiError, redact
from gmai_client.report import terminal_console
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
    run.add_argument(
        "--resume", type=Path, default=None, metavar="RUN_DIR", help="continue that run with its saved configuration"
    )
    run.add_argument(
        "--judge", default=None, metavar="SPEC", help="LLM judge for answers no rule can read (e.g. openai:gpt-4o-mini)"
    )
    run.add_argument("-J", dest="judge_options", action="append", default=[], metavar="KEY=VALUE", help="judge option")
    limits = run.add_argument_group("rate limits, retries, cache and budgets")
    limits.add_argument("--rpm", type=float, default=None, help="requests per minute per endpoint (-B rpm= per model)")
    limits.add_argument("--tpm", type=float, default=None, help="tokens per minute per endpoint (-B tpm= per model)")
    limits.add_argument("--max-attempts", type=int, default=8, help="attempts per item on retryable errors (8)")
    limits.add_argument("--attempt-timeout", type=float, default=None, help="seconds per attempt (backend default)")
    limits.add_argument("--item-deadline", type=float, default=900.0, help="seconds per item, all attempts (900)")
    limits.add_argument(
        "--max-errors", type=float, default=None, help="stop a model after N failed items (or a fraction, e.g. 0.2)"
    )
    limits.add_argument("--token-budget", type=int, default=None, help="stop the run after this many tokens")
    limits.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    limits.add_argument("--cache-path", type=Path, default=None, help="response cache file (default: user cache dir)")
    run.add_argument(
        "--executor", choices=("local", "ray"), default="local", help="ray: torch models run on Ray actors"
    )
    run.add_argument("--ray-address", default=None, metavar="ADDR", help="Ray cluster to join (default: start one)")

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

    cache = commands.add_parser("cache", help="inspect or clear the response cache")
    cache.add_argument("action", choices=("stats", "explain", "clear"))
    cache.add_argument("--cache-path", type=Path, default=None, help="cache file (default: user cache dir)")
    cache.add_argument("--model", "-m", dest="models", action=_ModelAction, metavar="SPEC", help="explain: the model")
    cache.add_argument("-B", dest="models", action=_ModelAction, metavar="KEY=VALUE", help="explain: its options")
    cache.add_argument("--index", default=None, help="explain: the item index")
    cache.add_argument("--template", default=None, help="explain: the run's prompt template file")
    cache.add_argument("--temperature", type=float, default=0.0)
    cache.add_argument("--max-tokens", type=int, default=512)
    cache.add_argument("--seed", type=int, default=0)
    cache.add_argument("--data", "-d", nargs="+", action="extend", default=None, metavar="PATH")
    cache.add_argument("--data-dir", type=Path, default=None)
    cache.add_argument("--only-model", default=None, help="clear: only entries of this model name")
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
    console = terminal_console()
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
        if args.command == "cache":
            return _cmd_cache(args, console)
    except GmaiError as exc:
        message = escape(redact(str(exc)))  # "[Errno 2]" in a message is text, not markup
        terminal_console(stderr=True).print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from gmai_client.runner import run

    if args.resume is not None:
        config = _resumed_config(args)
    else:
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
            judge=parse_model_spec(args.judge, args.judge_options) if args.judge else None,
            **_reliability_options(args),
        )
    result = asyncio.run(run(config))
    console.print(f"run folder: {escape(str(result.run_dir))}")
    for outcome in result.outcomes:
        if outcome.stopped:
            console.print(f"[red]{escape(outcome.spec.label)} stopped early:[/] {escape(outcome.stopped)}")
    if result.interrupted:
        console.print("[yellow]interrupted: finished items are saved; rerun the same command to resume")
        return EXIT_INTERRUPTED
    return 0


def _reliability_options(args: argparse.Namespace) -> dict[str, object]:
    return {
        "cache": not args.no_cache,
        "cache_path": args.cache_path,
        "rpm": args.rpm,
        "tpm": args.tpm,
        "max_attempts": args.max_attempts,
        "attempt_timeout": args.attempt_timeout,
        "item_deadline": args.item_deadline,
        "max_errors": args.max_errors,
        "token_budget": args.token_budget,
        "executor": args.executor,
        "ray_address": args.ray_address,
    }


def _resumed_config(args: argparse.Namespace) -> RunConfig:
    """The saved configuration of RUN_DIR; this command's limits, cache and error options apply."""
    import json
    from dataclasses import replace

    from gmai_client.report import CONFIG_FILE

    path = args.resume / CONFIG_FILE
    if not path.is_file():
        raise GmaiError(f"--resume {args.resume}: no {CONFIG_FILE} there (is it a run folder?)")
    try:
        saved = RunConfig.from_dict(json.loads(path.read_text(encoding="utf-8"))["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise GmaiError(f"--resume: {path} is unreadable: {exc}") from None
    if args.models:
        raise GmaiError("--resume takes the models from the run folder; do not give --model")
    return replace(
        saved,
        out=args.resume.parent,
        run_name=args.resume.name,
        retry_errors=args.retry_errors,
        progress=not args.no_progress,
        concurrency=args.concurrency,
        **_reliability_options(args),
    )


def _cmd_cache(args: argparse.Namespace, console: Console) -> int:
    from gmai_client.cache import ResponseCache

    cache = ResponseCache(args.cache_path)
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


def _explain(args: argparse.Namespace, cache, console: Console) -> int:
    """Why an item of a model hits or misses: which key fields differ from what is stored."""
    from datetime import datetime

    from gmai_client import registry
    from gmai_client.cache import key_fields
    from gmai_client.dataset import iter_items, open_dataset
    from gmai_client.prompt import build_request
    from gmai_client.splits import resolve_data
    from gmai_client.types import Item

    if not args.models or len(args.models) != 1 or args.index is None:
        raise GmaiError("cache explain needs one --model SPEC and --index INDEX (plus the run's --data)")
    spec = parse_model_spec(*args.models[0])
    backend = registry.create(spec, seed=args.seed)
    files = open_dataset(resolve_data(args.data or DEFAULT_DATA, data_dir=args.data_dir))
    item = next((e for e in iter_items(files) if isinstance(e, Item) and e.index == args.index), None)
    if item is None:
        raise GmaiError(f"no item with index {args.index!r} in {', '.join(str(f.path) for f in files)}")
    template = Path(args.template).read_text(encoding="utf-8") if args.template else None
    params = SamplingParams(temperature=args.temperature, max_tokens=args.max_tokens, seed=args.seed)
    fields = key_fields(backend.identity(), build_request(item, template=template, params=params))
    hit, differences = cache.explain(fields, item.index)
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


def _cmd_report(args: argparse.Namespace, console: Console) -> int:
    from gmai_client.report import render

    written = render(args.run_dir, rescore_answers=args.rescore, console=console, reference=args.reference)
    console.print("wrote: " + escape(", ".join(written)))
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
