"""Writes the run folder and prints the tables.

    <out>/<run-name>/
        config.json        the resolved configuration (no secrets), data files, versions
        records.jsonl      one record per item and model (written by the runner as items finish)
        metrics.json       per model: overall, per view and category, macro, multi-answer, deltas
        metrics.csv        one row per (model, view, category)
        report.md          the same tables in Markdown
        report.html        one self-contained page: charts, heatmap, lexical tree, gallery (html_report.py)
        plots/             the per-view charts as PNG and SVG (plots.py)
        predictions/<model>.xlsx  VLMEvalKit's prediction file (every dataset column but the image,
                                  plus ``prediction``): what its evaluation reads, and what the
                                  benchmark's authors take for TEST; ``<model>.tsv`` is its twin

``render(run_dir)`` re-renders all of it from records.jsonl without calling any model
(``python -m gmai_client report RUN_DIR``), optionally re-scoring the raw answers.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gmai_client.config import flatten
from gmai_client.errors import ConfigError
from gmai_client.protocol.epochs import epoch_figures
from gmai_client.protocol.metrics import (
    GROUP_FIELDS,
    VIEW_FIELDS,
    Comparison,
    GroupStats,
    ModelMetrics,
    compare,
    compute_metrics,
)
from gmai_client.protocol.rulesets import DEFAULT_RULES, UNNAMED_RULES, RuleSet, rule_set
from gmai_client.results.completeness import Completeness, assess, notice_lines
from gmai_client.results.html.gallery_items import GalleryItems
from gmai_client.results.html.report import write_visual_reports
from gmai_client.results.predictions import PREDICTIONS_DIR, write_prediction_files
from gmai_client.results.records import RECORDS_FILE, read_records
from gmai_client.results.report_console import headline_tables
from gmai_client.results.report_epochs import epoch_lines, epochs_json
from gmai_client.results.report_format import interval, markdown_cell
from gmai_client.results.report_format import pct as _pct
from gmai_client.results.report_format import signed as _delta
from gmai_client.results.report_rules import (
    RuleSetFigures,
    describe,
    headline_note,
    predictions_note,
    rule_set_figures,
    rule_sets_json,
    rules_markdown,
    rules_table,
    score_for_report,
)
from gmai_client.results.rundir import (
    MetricsDocument,
    RunFigures,
    RunLock,
    count_selected,
    read_existing_config,
    read_metrics,
    save_rules,
    write_metrics,
)
from gmai_client.samples import extra_samples, saved_epochs
from gmai_client.types import Record


def terminal_console(*, stderr: bool = False) -> Console:
    """A console for tables: the terminal's width, or 160 columns off a terminal (logs, CI, pipes),
    where rich would otherwise squeeze the tables into 80."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160)


def write_reports(
    run_dir: Path,
    records: Sequence[Record],
    figures: RunFigures | None = None,
    *,
    order: Sequence[str] | None = None,
    console: Console | None = None,
    reference: str | None = None,
    gallery: GalleryItems | None = None,
    rules: RuleSet = DEFAULT_RULES,
    preface: Sequence[str] = (),
    extra_notes: Sequence[str] = (),
    epochs: int = 1,
) -> list[str]:
    """Write metrics and every report of a run folder from its records; print the tables to
    ``console`` when one is given (nothing is printed otherwise). ``gallery``: thumbnails made
    during the run (``gallery_items.ThumbnailCollector``). ``records`` are scored under ``rules``
    (``score_for_report``); every rule set's figures are shown beside the headline. ``preface``:
    Markdown lines report.md opens with (``compare``'s runs); ``extra_notes``: lines every output
    adds to its notes. With ``epochs`` > 1, the samples after the first (``samples``) are summed up
    beside the headline, which is the first sample's."""
    every = list(records)
    samples = extra_samples({r.model for r in every}, epochs)
    records = [r for r in every if r.model not in samples]
    by_epochs = epoch_figures(every, order or list(dict.fromkeys(r.model for r in records)), epochs)
    extra_notes = [*extra_notes, *epoch_lines(by_epochs)]
    figures = figures or RunFigures()
    metrics = compute_metrics(records, selected=figures.selected)
    if order:
        metrics = {label: metrics[label] for label in order if label in metrics}
    comparison = compare(metrics, records, reference) if len(metrics) > 1 else None
    by_rules = rule_set_figures(records, rules)
    protocol = {**PROTOCOL, "rules": describe(rules)}
    document = MetricsDocument(
        metrics, comparison, figures, protocol, rule_sets=rule_sets_json(by_rules, rules), epochs=epochs_json(by_epochs)
    )
    notes = [
        headline_note(rules, figures.judge is not None),
        *judge_lines(figures),
        *token_lines(metrics),
        *extra_notes,
    ]
    notices = notice_lines(assess(every, figures, order or list(metrics)), run_dir, metrics)  # samples too
    written = [
        write_metrics(run_dir, document),
        _write_csv(run_dir / "metrics.csv", metrics, rules),
        _write_markdown(run_dir / "report.md", metrics, comparison, notes, notices, by_rules, rules, preface),
        *write_prediction_files(run_dir / PREDICTIONS_DIR, every, scoring=predictions_note(rules)),
    ]
    if console is not None:
        print_tables(metrics, comparison, console, rules)
        console.print(rules_table(by_rules, rules))
        for line in notes:
            console.print(escape(line))
        for line in notices:
            console.print(f"[bold yellow]{escape(line)}", soft_wrap=True)  # a command in it stays whole
    # report.html and plots/: never fail the run (a failure there becomes a note).
    written += write_visual_reports(
        run_dir, every, metrics, comparison, figures=figures, console=console, gallery=gallery, notes=extra_notes
    )
    return [str(path) for path in written]


@dataclass(frozen=True)
class Rendered:
    """What ``render`` wrote, and whether the run it reports answered every selected item."""

    files: list[str]
    completeness: Completeness


def render(
    run_dir: Path,
    *,
    rescore_answers: bool = False,
    console: Console | None = None,
    reference: str | None = None,
    rules: str | None = None,
) -> Rendered:
    """Re-render a run folder from its records; with ``rescore_answers``, re-apply extraction first;
    with ``rules`` (a rule set's name), score the headline under that set from now on (the answers
    are read again; nothing is sent).

    Holds the folder's lock throughout, as a run does: a run still writing the folder is not
    reported on half its records, nor has its journal replaced under it (a ``ConfigError`` names
    its pid instead). The records are counted against the run's selection, counted again from
    config.json's data (``rundir.count_selected``): a run that was killed left no figure of its own."""
    path = run_dir / RECORDS_FILE
    if not path.exists():
        raise ConfigError(f"{run_dir} has no {RECORDS_FILE}: not a run folder")
    with RunLock(run_dir, advice=_BUSY_ADVICE):
        return _render(run_dir, rescore_answers=rescore_answers, console=console, reference=reference, rules_name=rules)


#: What ``report`` says to do when a run holds the folder.
_BUSY_ADVICE = "the run is still going and writes the reports when it ends; report it then, or stop it first"


def _render(
    run_dir: Path, *, rescore_answers: bool, console: Console | None, reference: str | None, rules_name: str | None
) -> Rendered:
    path = run_dir / RECORDS_FILE
    records = read_records(path)
    saved = read_existing_config(run_dir)
    # A folder that names no rule set was scored before there were any: under the 2025 rules.
    before = rule_set(saved.setting("rules", UNNAMED_RULES.name) if saved is not None else UNNAMED_RULES.name)
    rules = rule_set(rules_name) if rules_name is not None else before
    # A rule set other than the run's, or --rescore: every answer read again (nothing is sent).
    records = score_for_report(run_dir, records, rules, rescore=rescore_answers or rules != before)
    if reference is not None and reference not in {r.model for r in records}:
        known = ", ".join(dict.fromkeys(r.model for r in records)) or "none"
        raise ConfigError(f"--reference {reference!r} is not a model of {run_dir} (models: {known})")
    # Keep what only the run knew (its timings, requests, placement, judge counts) and its model order.
    previous = read_metrics(run_dir)
    figures = previous.run if previous is not None else RunFigures()
    counted = count_selected(saved) if saved is not None else None
    if counted is not None:
        figures = replace(figures, selected=counted)
    order = (saved.model_labels if saved is not None else None) or None
    epochs = saved_epochs(flatten(saved.config)) if saved is not None else 1
    written = write_reports(
        run_dir, records, figures, order=order, console=console, reference=reference, rules=rules, epochs=epochs
    )
    if rules != before:
        save_rules(run_dir, rules.name)  # a later `report` keeps this rule set
    return Rendered(written, assess(records, figures, order or ()))


# --- files -----------------------------------------------------------------------------------


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
    # The model's completeness (``metrics.ModelMetrics``): counts on its overall row, the flag on every row.
    "selected",
    "unanswered",
    "incomplete",
    "rules",  # the rule set the accuracies are scored under (``rulesets``)
)


def _write_csv(path: Path, metrics: dict[str, ModelMetrics], rules: RuleSet = DEFAULT_RULES) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(_CSV_COLUMNS)
        for label, m in metrics.items():
            rows = [("overall", "overall", m.overall)]
            rows += [(view, name, s) for view, groups in m.groups.items() for name, s in groups.items()]
            for view, name, s in rows:
                overall = view == "overall"
                selected = "" if m.selected is None or not overall else m.selected
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
                        selected,
                        m.unanswered if overall else "",
                        str(m.incomplete).lower(),
                        rules.name,
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
                _pct(o.answered_accuracy),  # equal to acc when nothing errored
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


def token_lines(metrics: dict[str, ModelMetrics]) -> list[str]:
    """The input-token estimate (``plan``'s rules) beside what the provider reported, the reasoning
    tokens, and the answers cut while thinking, per model."""
    lines = []
    for label, m in metrics.items():
        if m.reported_input_tokens > 0:
            error = (m.estimated_input_tokens - m.reported_input_tokens) / m.reported_input_tokens
            lines.append(
                f"{label}: input tokens reported {m.reported_input_tokens:,}, estimated before sending "
                f"{m.estimated_input_tokens:,} ({100 * error:+.1f}%)"
            )
        if m.reasoning_tokens:
            lines.append(
                f"{label}: {m.reasoning_tokens:,} of its {m.output_tokens:,} output tokens were reasoning "
                "(billed as output)"
            )
        if m.thinking_cut:
            lines.append(
                f"{label}: {m.thinking_cut} answers ran out of tokens while thinking and gave no answer (counted "
                "wrong); a larger output bound (-B max_tokens=N) would let them finish"
            )
    return lines


def judge_lines(figures: RunFigures) -> list[str]:
    """What the judge did, and the one deliberate difference from VLMEvalKit, when it made one."""
    judge = figures.judge
    if judge is None:
        return []
    lines = [
        f"judge {judge.model}: asked for {judge.asked} answers, mapped {judge.rescued}, no option matches "
        f"{judge.no_match}; {judge.requests} requests, {judge.cache_hits} from the cache"
    ]
    if judge.fallback:
        lines.append(
            f"judge: {judge.fallback} answers got no usable verdict and stay unparsed (wrong); VLMEvalKit would "
            "draw a random letter for them"
        )
    if judge.failed_items:
        lines.append(
            f"judge: every call failed for {judge.failed_items} answers: they were not judged and stay unparsed (wrong)"
        )
    if judge.stopped:
        lines.append(f"judge stopped: {judge.stopped}")
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


def print_tables(
    metrics: dict[str, ModelMetrics], comparison: Comparison | None, console: Console, rules: RuleSet = DEFAULT_RULES
) -> None:
    title = f"GMAI-MMBench accuracy (micro, per question; acc = VLMEvalKit's exact matching, rules {rules.name})"
    for table in headline_tables(title, _OVERALL_HEADER, overall_rows(metrics), console):  # fits the width
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
    lines = ["| " + " | ".join(markdown_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _write_markdown(
    path: Path,
    metrics: dict[str, ModelMetrics],
    comparison: Comparison | None,
    notes: Sequence[str] = (),
    notices: Sequence[str] = (),
    by_rules: Mapping[str, Mapping[str, RuleSetFigures]] | None = None,
    rules: RuleSet = DEFAULT_RULES,
    preface: Sequence[str] = (),
) -> Path:
    parts = [
        "# GMAI-MMBench evaluation",
        "",
        *([*preface, ""] if preface else []),
        f"Rule set: **{rules.name}** (VLMEvalKit {rules.vlmevalkit}, matching of {rules.matching}).",
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
    for line in notices:
        parts += [f"**{line}**", ""]
    for label, m in metrics.items():
        if not m.has_key:
            parts += [f"*{label}: no answer key in this split: predictions only.*", ""]
    for _, view in GROUP_FIELDS:
        header, rows = view_rows(metrics, view, comparison)
        parts += [f"## By {view}", "", _markdown_table(header, rows), ""]
    if by_rules:
        parts += rules_markdown(by_rules, rules, _markdown_table)
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
