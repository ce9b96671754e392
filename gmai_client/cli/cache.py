"""``python -m gmai_client cache stats|explain|clear``: the response cache, never created or deleted
unless it is provably ours."""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gmai_client.backends import registry
from gmai_client.cli.common import read_template, sampling_params
from gmai_client.config import DEFAULT_DATA, parse_model_spec, run_default
from gmai_client.data.dataset import iter_items, open_dataset
from gmai_client.data.splits import resolve_data
from gmai_client.errors import GmaiError
from gmai_client.options import text_or_file
from gmai_client.policy.cache import ResponseCache, default_cache_path, key_fields
from gmai_client.protocol.prompt import build_request
from gmai_client.types import Item


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
    system = text_or_file(args.system_prompt, "--system-prompt") if args.system_prompt is not None else ""
    params = replace(sampling_params(args, seed), repeat=args.sample - 1)  # which of --epochs N samples
    request = build_request(
        item, template=template, params=params, system=system, multi_answer_instruction=args.multi_answer_prompt
    )
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
