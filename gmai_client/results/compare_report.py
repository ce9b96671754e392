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
import shutil
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
from gmai_client.results.plots import PLOTS_DIR
from gmai_client.results.predictions import PREDICTIONS_DIR
from gmai_client.results.report import write_reports
from gmai_client.results.report_format import markdown_cell
from gmai_client.results.run_compare import RunsCompared, SourceRun
from gmai_client.results.rundir import COMPARE_FILE, RunFigures, RunLock
from gmai_client.results.runs import RunSummary, is_run_folder, summarize


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


@dataclass(frozen=True)
class Written:
    """What ``write_comparison`` wrote, and the summaries of the runs compared (their statuses)."""

    files: list[str]
    runs: tuple[RunSummary, ...]


def sources(compared: RunsCompared, prices: PriceTable) -> tuple[list[ColumnSource], list[RunSummary]]:
    """Where each model comes from, and each run's summary (its status counts all its records)."""
    summaries = {id(run): summarize(run.folder, prices, run.every) for run in compared.runs}
    out = []
    for column in compared.columns:
        run = column.run
        cost = summaries[id(run)].costs.get(column.model)
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
    return out, list(summaries.values())


def write_comparison(
    out: Path,
    compared: RunsCompared,
    prices: PriceTable,
    *,
    reference: str | None = None,
    console: Console | None = None,
) -> Written:
    """Write the comparison's reports into ``out`` (made if missing); print its tables to ``console``."""
    inside = next((place for place in (out, *out.absolute().parents) if is_run_folder(place)), None)
    if inside is not None:
        where = "is a run folder" if inside == out else f"is inside the run folder {inside}"
        raise ConfigError(f"--out {out} {where}: a run's own files are never written over; give another folder")
    labels = [column.label for column in compared.columns]
    if reference is not None and reference not in labels:
        raise ConfigError(f"--reference {reference!r} is not a model of the comparison (models: {', '.join(labels)})")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {out}: {exc.strerror or exc}") from None
    with RunLock(out, advice="another compare is writing it; wait for it to end, or give another --out"):
        return _write_locked(out, compared, prices, labels, reference, console)


def _write_locked(
    out: Path,
    compared: RunsCompared,
    prices: PriceTable,
    labels: list[str],
    reference: str | None,
    console: Console | None,
) -> Written:
    if (out / COMPARE_FILE).exists():  # an earlier comparison's: its models' files must not linger
        for name in (PREDICTIONS_DIR, PLOTS_DIR):
            shutil.rmtree(out / name, ignore_errors=True)
    rows, summaries = sources(compared, prices)
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
    return Written([*written, str(compare_file)], tuple(summaries))


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
    lines = [
        "## Runs compared",
        "",
        "Each model's run; cost: its answers at list prices; a run that did not answer every item it selected is "
        "marked.",
        "",
        "| " + " | ".join(_HEADER) + " |",
        "|" + "---|" * len(_HEADER),
    ]
    lines += ["| " + " | ".join(markdown_cell(c) for c in _cells(row)) + " |" for row in rows]
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


def default_out(runs: Sequence[SourceRun]) -> Path:
    """``compare-<labels>-<hash of the folders>`` beside the first run: one folder per set of runs."""
    places = "\n".join(str(run.folder.resolve()) for run in runs)
    digest = hashlib.sha256(places.encode("utf-8")).hexdigest()[:8]
    labels = "-".join(dict.fromkeys(label for run in runs for label in run.labels))
    slug = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in labels)[:60].strip("_.")
    return runs[0].folder.parent / f"compare-{slug or 'runs'}-{digest}"
