"""``python -m gmai_client runs [--out DIR] [--json]``: the run folders under ``--out`` in a table
(``results.runs`` reads them), or as one JSON document for scripts. Exits 0, or 2 when ``--out``
is not a folder."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gmai_client.config import run_default
from gmai_client.errors import ConfigError
from gmai_client.protocol.prices import load_prices
from gmai_client.results.report_format import pct
from gmai_client.results.runs import RunSummary, is_run_folder, survey

_STYLE = {"finished": "green", "incomplete": "yellow", "interrupted": "red", "unreadable": "red"}


def cmd_runs(args: argparse.Namespace, console: Console) -> int:
    out = args.out if args.out is not None else run_default("out")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is not a folder")
    if is_run_folder(out):
        raise ConfigError(f"--out {out} is a run folder: give the folder that holds run folders ({out.parent})")
    try:
        summaries = survey(out, load_prices())
    except OSError as exc:  # the folder itself cannot be listed
        raise ConfigError(f"--out {out}: cannot be read ({exc.strerror or exc})") from None
    if args.json:
        print(json.dumps({"out": str(out), "runs": [s.as_json() for s in summaries]}, indent=2, ensure_ascii=False))
        return 0
    if not summaries:
        console.print(f"no run folders in {escape(str(out))} (python -m gmai_client run writes them there)")
        return 0
    console.print(_table(summaries, str(out)))
    for summary in summaries:
        if summary.why:
            console.print(f"{escape(summary.folder.name)}: {escape(summary.why)}", soft_wrap=True)
    return 0


def _table(summaries: list[RunSummary], out: str) -> Table:
    table = Table(title=f"Run folders in {out}")
    for column in ("run", "models", "data · selection", "done / selected", "acc %", "rules", "started", "status"):
        table.add_column(column, overflow="fold")
    table.add_column("cost", justify="right")
    for s in summaries:
        selection = " ∪ ".join(s.select) or "all items"
        if s.limit is not None:
            selection += f" · first {s.limit}"
        headline = "\n".join(f"{label} {pct(acc)}" for label, acc in s.headline.items()) or "-"
        table.add_row(
            escape(s.folder.name),
            escape("\n".join(s.models)) or "-",
            escape(f"{', '.join(s.data) or '?'} · {selection}"),
            f"{s.done} / {'?' if s.wanted is None else s.wanted}",
            escape(headline),
            escape(s.rules),
            escape(s.started.replace("T", " ").removesuffix("+00:00")),
            f"[{_STYLE.get(s.status, 'cyan')}]{s.status}[/]",
            "-" if s.cost_usd is None else f"${s.cost_usd:,.2f}",
        )
    return table
