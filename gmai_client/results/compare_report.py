"""The report of runs compared (``run_compare``): the reports of one run with all their models, and what they came from.

The folder gets what a run folder's reports are (``report.write_reports``: console tables, metrics.json,
metrics.csv, report.md, report.html, plots, prediction files), computed from the compared records as
one run with those models would compute them, deltas and paired McNemar tests included; and, beside
them, where each model comes from: its run folder, the run's start, the rule set it was scored under,
what its answers cost and whether the run was complete (``runs.summarize``). ``compare.json`` keeps
that, the items compared and what differs. The folder is never a run folder: writing the reports of a
comparison over a run's own would replace them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gmai_client.errors import ConfigError
from gmai_client.protocol.prices import PriceTable
from gmai_client.results.atomic import written_whole
from gmai_client.results.html.run import COMPARE_FILE
from gmai_client.results.report import write_reports
from gmai_client.results.run_compare import RunsCompared, SourceRun
from gmai_client.results.rundir import RunFigures
from gmai_client.results.runs import is_run_folder, summarize
from gmai_client.results.spend import model_costs


@dataclass(frozen=True)
class ColumnSource:
    """Where one model of the comparison comes from."""

    label: str
    model: str  # its label in its run
    folder: str
    started: str
    rules: str  # the rule set its run was scored under
    cost: str  # what its answers cost in its run (list prices), or "-"
    status: str  # its run's status (``runs.STATUSES``)


def sources(compared: RunsCompared, prices: PriceTable) -> list[ColumnSource]:
    summaries = {id(run): summarize(run.folder, prices, run.records) for run in _runs(compared)}
    costs = {id(run): model_costs(run.folder, run.records, run.saved, prices) for run in _runs(compared)}
    out = []
    for column in compared.columns:
        run = column.run
        cost = costs[id(run)].get(column.model)
        out.append(
            ColumnSource(
                column.label,
                column.model,
                str(run.folder),
                run.started,
                run.rules,
                cost.shown if cost is not None else "-",
                summaries[id(run)].status,
            )
        )
    return out


def write_comparison(
    out: Path,
    compared: RunsCompared,
    prices: PriceTable,
    *,
    reference: str | None = None,
    console: Console | None = None,
) -> list[str]:
    """Write the comparison's reports into ``out`` (made if missing); print its tables to ``console``."""
    if is_run_folder(out):
        raise ConfigError(f"--out {out} is a run folder: its reports would be replaced; give another folder")
    labels = [column.label for column in compared.columns]
    if reference is not None and reference not in labels:
        raise ConfigError(f"--reference {reference!r} is not a model of the comparison (models: {', '.join(labels)})")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {out}: {exc.strerror or exc}") from None
    rows = sources(compared, prices)
    notes = compared.notes()
    if console is not None:
        console.print(_runs_table(rows))
    compare_file = _write_json(out / COMPARE_FILE, compared, rows)  # report.html shows it
    written = write_reports(
        out,
        compared.records,
        RunFigures(selected=compared.items),
        order=labels,
        console=console,
        reference=reference,
        rules=compared.rules,
        preface=_runs_markdown(rows),
        extra_notes=notes,
    )
    return [*written, str(compare_file)]


# --- the runs, as tables ---------------------------------------------------------------------------

_HEADER = ("model", "its run", "started", "scored under", "cost", "run status")


def _cells(row: ColumnSource) -> list[str]:
    label = row.label if row.label == row.model else f"{row.label} (as {row.model})"
    status = row.status if row.status == "finished" else f"{row.status.upper()}"
    return [label, row.folder, row.started.replace("T", " "), row.rules, row.cost, status]


def _runs_table(rows: Sequence[ColumnSource]) -> Table:
    table = Table(title="Runs compared (each model's run; cost: its answers at list prices)")
    for column in _HEADER:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in _cells(row)))
    return table


def _runs_markdown(rows: Sequence[ColumnSource]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "## Runs compared",
        "",
        "Each model's run; cost: its answers at list prices; a run that did not answer every item it selected is "
        "marked.",
        "",
        "| " + " | ".join(_HEADER) + " |",
        "|" + "---|" * len(_HEADER),
    ]
    lines += ["| " + " | ".join(cell(c) for c in _cells(row)) + " |" for row in rows]
    return lines


def _write_json(path: Path, compared: RunsCompared, rows: Sequence[ColumnSource]) -> Path:
    payload: dict[str, Any] = {
        "rules": compared.rules.name,
        "items": compared.items,
        "models": [asdict(row) for row in rows],
        "left_out": dict(compared.left_out),
        "changed_items": list(compared.changed),
        "differences": list(compared.differences),
        "rescored": list(compared.rescored),
    }
    with written_whole(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _runs(compared: RunsCompared) -> list[SourceRun]:
    return list({id(c.run): c.run for c in compared.columns}.values())


def default_out(runs: Sequence[SourceRun]) -> Path:
    """``compare-<labels>-<hash of the folders>`` beside the first run: one folder per set of runs."""
    places = "\n".join(str(run.folder.resolve()) for run in runs)
    digest = hashlib.sha256(places.encode("utf-8")).hexdigest()[:8]
    labels = "-".join(dict.fromkeys(label for run in runs for label in run.labels))
    slug = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in labels)[:60].strip("_.")
    return runs[0].folder.parent / f"compare-{slug or 'runs'}-{digest}"
