"""Writes the run folder and prints the tables.

    <out>/<run-name>/
        config.json        the resolved configuration (no secrets), data files, versions
        records.jsonl      one record per item and model (written by the runner as items finish)
        metrics.json       per model: overall, per view and category, macro, multi-answer, deltas
        metrics.csv        one row per (model, view, category)
        report.md          the same tables in Markdown
        report.html        one self-contained page: charts, heatmap, lexical tree, gallery (html_report.py)
        plots/             the per-view charts as PNG and SVG, when matplotlib is installed (plots.py)
        predictions/<model>.xlsx  VLMEvalKit's prediction file (every dataset column but the image,
                                  plus ``prediction``): what its evaluation reads, and what the
                                  benchmark's authors take for TEST; ``<model>.tsv`` is its twin

``render(run_dir)`` re-renders all of it from records.jsonl without calling any model
(``python -m gmai_client report RUN_DIR``), optionally re-scoring the raw answers.
"""

from __future__ import annotations

import csv
import json
import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gmai_client.config import RunConfig
from gmai_client.errors import redact
from gmai_client.html_report import read_run_json, write_visual_reports
from gmai_client.metrics import (
    GROUP_FIELDS,
    VIEW_FIELDS,
    Comparison,
    GroupStats,
    ModelMetrics,
    compare,
    compute_metrics,
)
from gmai_client.predictions import PREDICTIONS_DIR, write_prediction_files
from gmai_client.records import RECORDS_FILE, RecordWriter, read_records
from gmai_client.report_format import interval
from gmai_client.report_format import pct as _pct
from gmai_client.report_format import signed as _delta
from gmai_client.report_format import version as _version
from gmai_client.scoring import rescore
from gmai_client.types import Record

if TYPE_CHECKING:
    from gmai_client.runner import RunResult

CONFIG_FILE = "config.json"


def write_config(
    run_dir: Path, config: RunConfig, data_files: Sequence[str], *, identity: dict[str, Any] | None = None
) -> Path:
    """``identity``: what the run folder must agree with before it is reused (``rundir.identity``)."""
    payload = {
        "config": config.as_dict(),
        "data_files": list(data_files),
        **({"identity": identity} if identity is not None else {}),
        "gmai_client": _version(),
        "python": platform.python_version(),
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = run_dir / CONFIG_FILE
    path.write_text(redact(json.dumps(payload, indent=2, default=str)) + "\n", encoding="utf-8")
    return path


def terminal_console(*, stderr: bool = False) -> Console:
    """A console for tables: the terminal's width, or 160 columns off a terminal (logs, CI, pipes),
    where rich would otherwise squeeze the tables into 80."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160)


def write_run(result: RunResult, config: RunConfig | None = None, console: Console | None = None) -> list[str]:
    """Write metrics and reports for a finished (or interrupted) run; print the tables."""
    extra = {
        "interrupted": result.interrupted,
        "elapsed_s": round(result.elapsed_s, 3),
        "models": {
            o.spec.label: {
                "done": o.done,
                "errors": o.errors,
                "skipped": o.skipped,
                "stopped": o.stopped,
                "requests_sent": o.sent,
                "cache_hits": o.cache_hits,
                "throttled": o.throttled,
                **({"placement": list(o.placement)} if o.placement else {}),
            }
            for o in result.outcomes
        },
    }
    if result.judge is not None and config is not None and config.judge is not None:
        # Counted apart from the models' own calls: what the judge cost and what it changed.
        extra["judge"] = {"model": config.judge.label, **asdict(result.judge)}
    order = [spec.label for spec in config.models] if config else None
    return write_reports(result.run_dir, list(result.records), extra=extra, order=order, console=console)


def write_reports(
    run_dir: Path,
    records: list[Record],
    *,
    extra: dict[str, Any] | None = None,
    order: Sequence[str] | None = None,
    console: Console | None = None,
    reference: str | None = None,
) -> list[str]:
    metrics = compute_metrics(records)
    if order:
        metrics = {label: metrics[label] for label in order if label in metrics}
    comparison = compare(metrics, records, reference) if len(metrics) > 1 else None
    written = [
        _write_json(run_dir / "metrics.json", metrics, comparison, extra or {}),
        _write_csv(run_dir / "metrics.csv", metrics),
        _write_markdown(run_dir / "report.md", metrics, comparison, judge_lines(extra or {})),
        *write_prediction_files(run_dir / PREDICTIONS_DIR, records),
    ]
    console = console or terminal_console()
    print_tables(metrics, comparison, console)
    for line in judge_lines(extra or {}):
        console.print(escape(line))
    for line in incomplete_lines(metrics, run_dir):
        console.print(f"[bold yellow]{escape(line)}")
    # report.html and plots/: never fail the run (a missing matplotlib only skips PNG/SVG, with a note).
    written += write_visual_reports(run_dir, records, metrics, comparison, extra=extra, console=console)
    return [str(path) for path in written]


def render(
    run_dir: Path, *, rescore_answers: bool = False, console: Console | None = None, reference: str | None = None
) -> list[str]:
    """Re-render a run folder from its records; with ``rescore_answers``, re-apply extraction first."""
    path = run_dir / RECORDS_FILE
    if not path.exists():
        from gmai_client.errors import ConfigError

        raise ConfigError(f"{run_dir} has no {RECORDS_FILE}: not a run folder")
    records = read_records(path)
    if rescore_answers:
        records = [rescore(record) for record in records]
        # Keep the journal and the metrics in agreement: rewrite records with the new letters.
        tmp = path.with_suffix(".rescored.tmp")
        tmp.unlink(missing_ok=True)
        with RecordWriter(tmp) as writer:
            writer.write_all(records)
        tmp.replace(path)
    # Keep what only the run knew (its timings, requests, placement, judge counts) and its model order.
    extra, order = _previous_run_figures(run_dir), _model_order(run_dir)
    return write_reports(run_dir, records, extra=extra, order=order, console=console, reference=reference)


def _previous_run_figures(run_dir: Path) -> dict[str, Any]:
    previous = (read_run_json(run_dir, "metrics.json") or {}).get("run")
    return previous if isinstance(previous, dict) else {}


def _model_order(run_dir: Path) -> list[str] | None:
    try:
        return [str(model["label"]) for model in (read_run_json(run_dir, "config.json") or {})["config"]["models"]]
    except (KeyError, TypeError):
        return None  # a replayed or hand-made folder: the records' order


# --- files -----------------------------------------------------------------------------------


def _stats_dict(stats: GroupStats) -> dict[str, Any]:
    return asdict(stats)


def metrics_to_dict(metrics: dict[str, ModelMetrics], comparison: Comparison | None) -> dict[str, Any]:
    models = {}
    for label, m in metrics.items():
        models[label] = {
            "has_key": m.has_key,
            "overall": _stats_dict(m.overall),
            "macro": m.macro,
            "groups": {view: {name: _stats_dict(s) for name, s in groups.items()} for view, groups in m.groups.items()},
            "multi_answer": asdict(m.mcq),
            "input_tokens": m.input_tokens,
            "output_tokens": m.output_tokens,
            "mean_latency_s": m.mean_latency_s,
            "cached": m.cached,
            "incomplete": m.incomplete,
        }
        if m.incomplete:
            models[label]["note"] = (
                f"incomplete: {m.overall.errored} item(s) got no answer; 'accuracy' counts them wrong "
                "(VLMEvalKit's figure), 'answered_accuracy' leaves them out"
            )
        if not m.has_key:
            models[label]["note"] = "no answer key in this split: predictions only, no accuracy"
    payload: dict[str, Any] = {"protocol": PROTOCOL, "models": models}
    if comparison is not None:
        payload["comparison"] = {
            "reference": comparison.reference,
            "overall_deltas": comparison.overall_deltas,
            "deltas": comparison.deltas,
            "paired": {label: asdict(test) for label, test in comparison.paired.items()},
        }
    return payload


def _write_json(path: Path, metrics: dict[str, ModelMetrics], comparison: Comparison | None, extra: dict) -> Path:
    payload = metrics_to_dict(metrics, comparison)
    payload["run"] = extra
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


_CSV_COLUMNS = (
    "model",
    "view",
    "category",
    "n",
    "scored",
    "correct",
    "unparsed",
    "refused",
    "errored",
    "accuracy",
    "ci_low",
    "ci_high",
    "keyed",
    "answered_accuracy",
    "lenient_correct",
    "lenient_accuracy",
    "differs",
)


def _write_csv(path: Path, metrics: dict[str, ModelMetrics]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(_CSV_COLUMNS)
        for label, m in metrics.items():
            rows = [("overall", "overall", m.overall)]
            rows += [(view, name, s) for view, groups in m.groups.items() for name, s in groups.items()]
            for view, name, s in rows:
                writer.writerow(
                    [
                        label,
                        view,
                        name,
                        s.n,
                        s.scored,
                        s.correct,
                        s.unparsed,
                        s.refused,
                        s.errored,
                        _num(s.accuracy),
                        _num(s.ci_low),
                        _num(s.ci_high),
                        s.keyed,
                        _num(s.answered_accuracy),
                        s.lenient_correct,
                        _num(s.lenient_accuracy),
                        s.differs,
                    ]
                )
    return path


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


# --- tables ----------------------------------------------------------------------------------


#: What the figures mean, in every output that carries them.
PROTOCOL = {
    "headline": "acc: VLMEvalKit's exact-matching evaluation (can_infer, hit = letter equals the answer cell); "
    "items that got no answer count as wrong, as there. Comparable with the paper's tables.",
    "answered": "acc over answered items only (differs from acc only when items errored: the run is incomplete)",
    "lenient": "a second extraction (the reference plus rules for answers VLMEvalKit cannot read; multi-answer "
    "items by set match). Not comparable with published figures.",
}


def overall_rows(metrics: dict[str, ModelMetrics]) -> list[list[str]]:
    rows = []
    for label, m in metrics.items():
        o = m.overall
        rows.append(
            [
                label,
                _pct(o.accuracy),
                interval(o, plain=True),
                str(o.n),
                str(o.correct),
                str(o.unparsed),
                str(o.refused),
                str(o.errored),
                _pct(o.answered_accuracy) if o.errored else "",
                _pct(o.lenient_accuracy),
                str(o.differs),
                _pct(m.mcq.acc_mcq) if m.mcq.n else "",
                _pct(m.mcq.recall_mcq) if m.mcq.n else "",
            ]
        )
    return rows


_OVERALL_HEADER = [
    "model",
    "acc %",
    "95% CI",
    "n",
    "correct",
    "unparsed",
    "refused",
    "errored",
    "answered-only acc %",
    "lenient acc % (not comparable)",
    "lenient differs",
    "ACC_mcq",
    "Recall_mcq",
]


def judge_lines(extra: dict[str, Any]) -> list[str]:
    """What the judge did, and the one deliberate difference from VLMEvalKit, when it made one."""
    judge = extra.get("judge")
    if not isinstance(judge, dict):
        return []
    lines = [
        f"judge {judge.get('model', '')}: asked for {judge.get('asked', 0)} answers, mapped {judge.get('rescued', 0)}, "
        f"no option matches {judge.get('no_match', 0)}; {judge.get('requests', 0)} requests, "
        f"{judge.get('cache_hits', 0)} from the cache"
    ]
    if judge.get("fallback"):
        lines.append(
            f"judge: {judge['fallback']} answers got no usable verdict and stay unparsed (wrong); VLMEvalKit would "
            "draw a random letter for them"
        )
    if judge.get("stopped"):
        lines.append(f"judge stopped: {judge['stopped']}")
    return lines


def incomplete_lines(metrics: dict[str, ModelMetrics], run_dir: Path) -> list[str]:
    """What every output says when items got no answer: both figures and how to finish the run."""
    lines = []
    for label, m in metrics.items():
        if not m.incomplete:
            continue
        o = m.overall
        lines.append(
            f"INCOMPLETE: {label}: {o.errored} of {o.n} items got no answer. acc {_pct(o.accuracy)}% counts them "
            f"wrong (VLMEvalKit's figure); over the {o.scored} answered items: {_pct(o.answered_accuracy)}%."
        )
    if lines:
        lines.append(f"Finish the run with: python -m gmai_client run --resume {run_dir} --retry-errors")
    return lines


def view_rows(
    metrics: dict[str, ModelMetrics], view: str, comparison: Comparison | None
) -> tuple[list[str], list[list[str]]]:
    labels = list(metrics)
    names = sorted({name for m in metrics.values() for name in m.groups[view]})
    header = [view, "n", *labels]
    if comparison is not None:
        header += [f"Δ {label}" for label in labels if label != comparison.reference]
    rows = []
    for name in names:
        first = next(m.groups[view][name] for m in metrics.values() if name in m.groups[view])
        row = [name, str(first.n)]
        row += [_pct(metrics[label].groups[view].get(name, GroupStats()).accuracy) for label in labels]
        if comparison is not None:
            row += [
                _delta(comparison.deltas[label][view].get(name)) for label in labels if label != comparison.reference
            ]
        rows.append(row)
    macro = ["macro avg", ""] + [_pct(metrics[label].macro[view]) for label in labels]
    if comparison is not None:
        ref_macro = metrics[comparison.reference].macro[view]
        macro += [
            _delta(
                None
                if metrics[label].macro[view] is None or ref_macro is None
                else metrics[label].macro[view] - ref_macro
            )
            for label in labels
            if label != comparison.reference
        ]
    rows.append(macro)
    return header, rows


def print_tables(metrics: dict[str, ModelMetrics], comparison: Comparison | None, console: Console) -> None:
    table = Table(title="GMAI-MMBench accuracy (micro, per question; acc = VLMEvalKit's exact matching)")
    for column in _OVERALL_HEADER:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in overall_rows(metrics):
        table.add_row(*row)
    console.print(table)
    for label, m in metrics.items():
        if not m.has_key:
            note = "no answer key in this split (TEST?): predictions written, no accuracy"
            console.print(f"[yellow]{escape(label)}: {note}")
    for _, view in VIEW_FIELDS:
        header, rows = view_rows(metrics, view, comparison)
        table = Table(title=f"by {view}")
        for column in header:
            table.add_column(column, justify="left" if column == view else "right", overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    if comparison is not None:
        for test in comparison.paired.values():
            console.print(
                f"{test.model} vs {test.reference}: Δ {_delta(test.delta)} points on {test.shared} shared items, "
                f"McNemar p = {test.p_value:.4g}"
                if test.p_value is not None
                else f"{test.model} vs {test.reference}: no shared scored items"
            )


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _write_markdown(
    path: Path, metrics: dict[str, ModelMetrics], comparison: Comparison | None, notes: Sequence[str] = ()
) -> Path:
    parts = [
        "# GMAI-MMBench evaluation",
        "",
        "Accuracy in %, micro-averaged per question. **acc** is VLMEvalKit's exact-matching evaluation, the "
        "figure comparable with the paper's tables: unparsed and refused answers and items that got no answer "
        "count as wrong. *lenient* is a second extraction that reads more answer styles; it is not comparable "
        "with published figures.",
        "",
        _markdown_table(_OVERALL_HEADER, overall_rows(metrics)),
        "",
    ]
    parts += [*(f"- {line}" for line in notes), ""] if notes else []
    for line in incomplete_lines(metrics, path.parent):
        parts += [f"**{line}**", ""]
    for label, m in metrics.items():
        if not m.has_key:
            parts += [f"*{label}: no answer key in this split: predictions only.*", ""]
    for _, view in GROUP_FIELDS:
        header, rows = view_rows(metrics, view, comparison)
        parts += [f"## By {view}", "", _markdown_table(header, rows), ""]
    if comparison is not None:
        parts += ["## Paired comparison", ""]
        for test in comparison.paired.values():
            p = "—" if test.p_value is None else f"{test.p_value:.4g}"
            parts.append(
                f"- {test.model} vs {test.reference}: Δ {_delta(test.delta)} points on "
                f"{test.shared} shared items (exact McNemar p = {p})"
            )
        parts.append("")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
