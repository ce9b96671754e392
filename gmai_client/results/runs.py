"""The run folders under an output folder, each summed up in a line: ``python -m gmai_client runs``.

A run folder is a folder holding ``config.json`` or ``records.jsonl`` (``compare``'s report folders hold
neither). What each line says is read from the folder's own files, never from a model:

- models, data and selection, the rule set and when it started: config.json;
- items done / selected: the answered records (not errors) of every model, against the selection
  counted by the run (metrics.json) times the models (and the samples, with ``--epochs``); a run
  killed before it counted shows ``?``;
- the headline per model: VLMEvalKit's figure over the records, under the folder's rule set;
- status, the first that holds: ``in progress`` (a process holds the folder's lock), ``batches pending``
  (its batch journal names batches not yet collected), ``interrupted`` (stopped by Ctrl-C or SIGTERM,
  or killed: records without a metrics.json, or more records than its metrics.json counts, which an
  earlier invocation wrote), ``incomplete`` (selected items without an answer: the line says how to
  finish it), ``empty`` (nothing selected), ``finished``; ``unreadable`` when its files cannot be read
  (the line says why);
- cost: the answers' tokens at list prices (``spend``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gmai_client.config import flatten
from gmai_client.errors import GmaiError
from gmai_client.protocol.metrics import ModelMetrics, compute_metrics
from gmai_client.protocol.prices import PriceTable
from gmai_client.protocol.rulesets import UNNAMED_RULES
from gmai_client.results.batch_journal import JOURNAL_FILE, BatchJournal
from gmai_client.results.completeness import Completeness, Verdict, assess
from gmai_client.results.records import read_records
from gmai_client.results.rundir import CONFIG_FILE, RECORDS_FILE, RunFigures, holder, read_config, read_metrics
from gmai_client.results.spend import ModelCost, model_costs
from gmai_client.samples import saved_epochs
from gmai_client.types import Record

#: Every status a run folder can have, in the order they are decided.
STATUSES = ("in progress", "batches pending", "interrupted", "incomplete", "empty", "finished", "unreadable")


@dataclass(frozen=True)
class RunSummary:
    """One run folder in a line."""

    folder: Path
    status: str
    models: tuple[str, ...] = ()
    data: tuple[str, ...] = ()
    select: tuple[str, ...] = ()
    limit: int | None = None
    done: int = 0  # answered records, every model together
    wanted: int | None = None  # the selection times the models (None: not counted)
    headline: Mapping[str, float | None] = field(default_factory=dict)  # model -> accuracy (0-1)
    rules: str = ""
    started: str = ""
    cost_usd: float | None = None  # None: no model of the run has a known price
    costs: Mapping[str, ModelCost] = field(default_factory=dict)  # per model label (``spend``)
    why: str = ""  # unreadable: what could not be read; in progress: the holder's pid
    verdict: Verdict = "stopped"  # what an exit status is made from (``completeness.Verdict``)

    def as_json(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "status": self.status,
            "models": list(self.models),
            "data": list(self.data),
            "select": list(self.select),
            "limit": self.limit,
            "done": self.done,
            "selected": self.wanted,
            "headline": dict(self.headline),
            "rules": self.rules,
            "started": self.started,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
            **({"why": self.why} if self.why else {}),
        }


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and ((path / CONFIG_FILE).is_file() or (path / RECORDS_FILE).is_file())


def survey(out: Path, prices: PriceTable) -> list[RunSummary]:
    """Every run folder directly inside ``out``, oldest first (by start, then name)."""
    folders = sorted(p for p in out.iterdir() if is_run_folder(p)) if out.is_dir() else []
    summaries = [_summarized(folder, prices) for folder in folders]
    return sorted(summaries, key=lambda s: (s.started or "~", s.folder.name))


def _summarized(run_dir: Path, prices: PriceTable) -> RunSummary:
    # One folder's hand-edited or half-written files must not hide the others': it says what broke.
    try:
        return summarize(run_dir, prices)
    except Exception as exc:
        return RunSummary(run_dir, "unreadable", why=f"{type(exc).__name__}: {exc}")


def summarize(run_dir: Path, prices: PriceTable, records: Sequence[Record] | None = None) -> RunSummary:
    """One folder's line (see the module docstring); ``records``: the folder's, when already read."""
    saved = read_config(run_dir)
    flat = flatten(saved.config) if saved is not None else {}
    described = {
        "models": tuple(saved.model_labels) if saved is not None else (),
        "data": tuple(Path(str(name)).name for name in flat.get("data") or ()),
        "select": tuple(str(s) for s in flat.get("select") or ()),
        "limit": flat.get("limit"),
        "rules": str(flat.get("rules") or UNNAMED_RULES.name),
        "started": saved.first_started if saved is not None else "",
    }
    if saved is None and (run_dir / CONFIG_FILE).exists():
        described["rules"] = ""  # nothing says which
        return RunSummary(run_dir, "unreadable", why=f"{CONFIG_FILE} is not a run's configuration", **described)
    try:
        records = list(records) if records is not None else read_records(run_dir / RECORDS_FILE)
        journal = BatchJournal(run_dir)
        pending = journal.open_batches() if (run_dir / JOURNAL_FILE).exists() else []
    except (GmaiError, OSError, ValueError) as exc:
        return RunSummary(run_dir, "unreadable", why=str(exc), **described)
    metrics_doc = read_metrics(run_dir)
    stale = metrics_doc is not None and _stale(metrics_doc.models, records)
    # A run resumed and then killed leaves the metrics of the invocation before: its figures are not this one's.
    figures = metrics_doc.run if metrics_doc is not None and not stale else RunFigures()
    models = described["models"] or tuple(dict.fromkeys(r.model for r in records))
    metrics = compute_metrics(records, selected=figures.selected)
    costs = model_costs(run_dir, records, saved, prices)
    priced = [c.usd for c in costs.values() if c.usd is not None]
    completeness = assess(records, figures, models)
    status, verdict, why = _status(run_dir, completeness, pending, metrics_doc is None, stale)
    return RunSummary(
        run_dir,
        status,
        **{**described, "models": models},
        done=sum(m.answered for m in metrics.values()),
        wanted=None if figures.selected is None else figures.selected * len(models) * saved_epochs(flat),
        headline={label: metrics[label].overall.accuracy if label in metrics else None for label in models},
        cost_usd=sum(priced) if priced else None,
        costs=costs,
        why=why,
        verdict=verdict,
    )


def _status(
    run_dir: Path, completeness: Completeness, pending: Sequence[object], no_metrics: bool, stale: bool
) -> tuple[str, Verdict, str]:
    """(the status shown, the verdict an exit status is made from, why), the first that holds."""
    pid = holder(run_dir)
    if pid is not None:
        return "in progress", "stopped", f"pid {pid or 'unknown'}"
    if pending:
        return "batches pending", "stopped", f"{len(pending)} batch(es) not yet collected: batches collect {run_dir}"
    if no_metrics or stale:
        why = "no readable metrics.json" if no_metrics else "records were written after its last metrics.json"
        return "interrupted", "stopped", f"killed: {why}: python -m gmai_client run --resume {run_dir}"
    verdict = completeness.verdict
    if verdict == "interrupted":
        return "interrupted", verdict, f"stopped by Ctrl-C or SIGTERM: python -m gmai_client run --resume {run_dir}"
    if verdict in ("stopped", "errors"):
        missing = [f"{m.label} {m.unanswered} unanswered" for m in completeness.models if m.unanswered]
        missing += [f"{completeness.judge_failed} answer(s) never judged"] if completeness.judge_failed else []
        missing += [f"the judge stopped: {completeness.judge_stopped}"] if completeness.judge_stopped else []
        retry = " --retry-errors" if any(m.errored > m.bad_data for m in completeness.models) else ""
        return "incomplete", verdict, "; ".join(missing) + f": python -m gmai_client run --resume {run_dir}{retry}"
    if verdict == "empty":
        return "empty", verdict, "no item was selected"
    return "finished", verdict, ""


def _stale(saved: Mapping[str, ModelMetrics], records: Sequence[Record]) -> bool:
    """Whether metrics.json counts other records than records.jsonl holds (a later invocation wrote more)."""
    counts = Counter(r.model for r in records)
    return any(counts.get(label, 0) != m.overall.n for label, m in saved.items())
