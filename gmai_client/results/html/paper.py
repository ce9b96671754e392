"""report.html's "Published figures" section: the GMAI-MMBench paper's accuracies beside this run's.

Owns the rule for when they may stand side by side (``full_val``: the run covers the full VAL split,
no selection, no limit) and the mapping of the paper's column abbreviations to the lexical tree's
names. The figures themselves are package data (``data/paper_*.csv``), copied from the paper and
never recomputed here.
"""

from __future__ import annotations

import csv
import io
from functools import cache
from importlib import resources

from gmai_client.protocol.metrics import GroupStats, ModelMetrics
from gmai_client.results.html.page import Page, table
from gmai_client.results.report_format import esc, pct
from gmai_client.results.report_rules import paper_rules_note

#: Items in GMAI-MMBench's VAL split. A run is "full VAL" when every keyed model scored at least this
#: many items and the run had no selection and no limit; only then are published figures shown beside it.
FULL_VAL_ITEMS = 4550
PAPER_SOURCE = (
    "Chen et al., “GMAI-MMBench: A Comprehensive Multimodal Evaluation Benchmark Towards General Medical AI”, "
    "NeurIPS 2024 Datasets and Benchmarks Track, arXiv:2408.03361"
)

# The paper's column abbreviations -> the lexical tree's names (the CSVs keep the paper's headers).
_PAPER_TASKS = {
    "AR": "Attribute Recognition",
    "BVR": "Blood Vessels Recognition",
    "B": "Bone",
    "CR": "Cell Recognition",
    "C": "Counting",
    "DD": "Disease Diagnosis",
    "IQG": "Image Quality Grading",
    "MR": "Microorganism Recognition",
    "M": "Muscle",
    "NT": "Nervous Tissue",
    "OR-A": "Organ Recognition - Abdomen",
    "OR-HN": "Organ Recognition - Head and Neck",
    "OR-P": "Organ Recognition - Pelvic",
    "OR-T": "Organ Recognition - Thorax",
    "SG": "Severity Grading",
    "SAR": "Surgeon Action Recognition",
    "SIR": "Surgical Instrument Recognition",
    "SWR": "Surgical Workflow Recognition",
}
_PAPER_DEPARTMENTS = {
    "CS": "Cardiovascular Surgery",
    "D": "Dermatology",
    "E": "Endocrinology",
    "GH": "Gastroenterology and Hepatology",
    "GS": "General Surgery",
    "H": "Hematology",
    "ID": "Infectious Diseases",
    "LMP": "Laboratory Medicine and Pathology",
    "NH": "Nephrology and Hypertension",
    "N": "Neurosurgery",
    "OG": "Obstetrics and Gynecology",
    "OM": "Oncology (Medical)",
    "O": "Ophthalmology",
    "OS": "Orthopedic Surgery",
    "ENT/HNS": "Otolaryngology (ENT)/Head and Neck Surgery",
    "PM": "Pulmonary Medicine",
    "SM": "Sports Medicine",
    "U": "Urology",
}
# Granularity columns: segmentation contour/mask, 2D classification (image level), 2D detection (box
# level), and multi-label classification scored as ACC_mcq / Recall_mcq.
_PAPER_GRANULARITY = {
    "Seg C": "Contour Level",
    "Seg M": "Mask Level",
    "2D Cls update": "Image Level",
    "2D Det": "Box Level",
    "2D Mcls_acc": "ACC_mcq",
    "2D Mcls_recall": "Recall_mcq",
}
_PAPER_VIEWS = (
    ("paper_by_task.csv", "clinical VQA task", _PAPER_TASKS),
    ("paper_by_department.csv", "department", _PAPER_DEPARTMENTS),
    ("paper_by_granularity.csv", "perceptual granularity", _PAPER_GRANULARITY),
)


def full_val(page: Page) -> tuple[list[str], str]:
    """The models whose results stand beside the paper's, and why the others (or all) do not."""
    select = (page.saved.setting("select") if page.saved else None) or []
    limit = page.saved.setting("limit") if page.saved else None
    rule = (
        f"Published figures are shown beside a run only when it covers the full VAL split: no selection "
        f"(--select) and no --limit, and at least {FULL_VAL_ITEMS:,} scored items with an answer key for the "
        "model."
    )
    if not page.records:  # nothing selected, or no model answered: the headline's notes say which
        return [], rule + " This run recorded no answer."
    if not page.keyed:
        return [], rule + " This run has no answer key (TEST predictions only)."
    if select:
        return [], rule + f" This run selected {' ∪ '.join(select)}."
    if limit is not None:
        return [], rule + f" This run had --limit {limit}."
    covering = [label for label in page.keyed if page.metrics[label].overall.scored >= FULL_VAL_ITEMS]
    short = [f"{label} ({page.metrics[label].overall.scored:,})" for label in page.keyed if label not in covering]
    if not covering:
        return [], rule + f" Scored items in this run: {', '.join(short)}."
    return covering, (rule + " Left out, too few scored items: " + ", ".join(short) + ".") if short else rule


def paper(page: Page) -> str:
    covering, why = full_val(page)
    if not covering:
        return f'<p class="note">{esc(why)}</p>'
    parts = [
        '<p class="published"><strong>Published figures</strong>, copied from the GMAI-MMBench paper '
        f"({esc(PAPER_SOURCE)}); "
        "they are not recomputed here. Rows marked <em>this run</em> are this run's own accuracy on the VAL "
        "split. The paper's per-category columns are as published and may come from a different split than "
        f"this run; read them as context, not as a paired comparison.</p><p>{esc(why)}</p>",
        paper_rules_note(page.run_dir),  # the table's rules, and this run's
        _leaderboard(page, covering),
    ]
    for filename, view, columns in _PAPER_VIEWS:
        published = _read_paper(filename)
        if published:
            parts.append(_view_table(page, covering, published, view, columns))
    return "\n".join(parts)


def _leaderboard(page: Page, covering: list[str]) -> str:
    """The paper's overall leaderboard with this run's models ranked among its rows."""
    rows: list[tuple[float, str, str]] = []  # (VAL accuracy for the rank, row class, cells)
    for row in _read_paper("paper_overall.csv"):
        val = _float(row.get("val_overall"))
        cells = "".join(f"<td>{esc(row.get(key, ''))}</td>" for key in ("model", "group", "size"))
        cells += "".join(f'<td class="num">{esc(row.get(key, ""))}</td>' for key in ("val_overall", "test_overall"))
        rows.append((val if val is not None else -1.0, "", cells))
    for label in covering:
        acc = page.metrics[label].overall.accuracy or 0.0
        cells = f'<td>{esc(label)}</td><td><em>this run</em></td><td></td><td class="num">{pct(acc)}</td>'
        rows.append((100 * acc, ' class="this-run"', cells + '<td class="num">—</td>'))
    rows.sort(key=lambda row: -row[0])
    body = [f'<tr{cls}><td class="num">{rank}</td>{cells}</tr>' for rank, (_, cls, cells) in enumerate(rows, 1)]
    return table(
        ["rank (VAL)", "model", "group", "size", "VAL overall %", "TEST overall %"],
        body,
        caption="Overall accuracy: the paper's leaderboard (published) with this run's models (this run)",
        cls="paper",
    )


def _view_table(
    page: Page, covering: list[str], published: list[dict[str, str]], view: str, columns: dict[str, str]
) -> str:
    abbreviations = [c for c in published[0] if c in columns]
    header = ["model", "VAL overall %"] + [f"{columns[c]} ({c})" for c in abbreviations]
    body = [
        f"<tr><td>{esc(row.get('Model name', ''))}</td>"
        f'<td class="num">{esc(row.get("Overall (val)", ""))}</td>'
        + "".join(f'<td class="num">{esc(row.get(c, ""))}</td>' for c in abbreviations)
        + "</tr>"
        for row in published
    ]
    for label in covering:
        m = page.metrics[label]
        cells = "".join(f'<td class="num">{pct(_this_run(m, view, columns[c]))}</td>' for c in abbreviations)
        body.append(
            f'<tr class="this-run"><td>{esc(label)} <em>(this run)</em></td>'
            f'<td class="num">{pct(m.overall.accuracy)}</td>{cells}</tr>'
        )
    return (
        f"<details><summary>By {esc(view)}: published figures and this run</summary>"
        + table(header, body, caption=f"Accuracy (%) by {view}: published (paper) and this run", cls="paper")
        + "</details>"
    )


def _this_run(m: ModelMetrics, view: str, name: str) -> float | None:
    if name == "ACC_mcq":
        return m.mcq.acc_mcq
    if name == "Recall_mcq":
        return m.mcq.recall_mcq
    return m.groups[view].get(name, GroupStats()).accuracy


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "-") else None
    except ValueError:
        return None


@cache
def _read_paper(filename: str) -> list[dict[str, str]]:
    text = resources.files("gmai_client").joinpath(f"data/{filename}").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))
