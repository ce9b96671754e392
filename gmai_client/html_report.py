"""report.html: the run folder's one-file visual report, and the entry point that writes it with the plots.

This module owns the page: headline, per-view bar charts (inline SVG drawn here, no charting library),
the models x categories heatmap, the lexical tree explorer, the paper's published figures (only when
the run covers the full VAL split), a gallery of items and the run's configuration.

The page is self-contained so that it can be mailed as one file and opened offline from file://: CSS
and JavaScript are inline, images are data URIs, and a Content-Security-Policy forbids every fetch,
so even a mistake here cannot make the browser reach the network. Everything important is readable
without JavaScript: numbers are in <table>s, the tree is <details>/<summary>, and the gallery shows
every card; the script only adds the gallery filters, the heatmap's reference choice and tree
expand/collapse buttons. Every string that comes from data is escaped.

Records hold no images and no question text, so ``write_visual_reports`` looks the gallery's items up
in the run's data files (a line scan that parses only the wanted rows and stops when all are found)
and passes them to ``write_html_report`` as mappings.
"""

from __future__ import annotations

import ast
import base64
import csv
import html
import io
import json
import platform
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gmai_client.errors import redact
from gmai_client.metrics import VIEW_FIELDS, Comparison, GroupStats, ModelMetrics, group_stats
from gmai_client.plots import CHANCE_COLOUR, PALETTE, PLOTS_DIR, chance_levels, colour, usable_records
from gmai_client.types import Record

if TYPE_CHECKING:
    from rich.console import Console

REPORT_FILE = "report.html"
#: Items in GMAI-MMBench's VAL split. A run is "full VAL" when every keyed model scored at least this
#: many items and the run had no selection and no limit; only then are published figures shown beside it.
FULL_VAL_ITEMS = 4550
GALLERY_CAP = 200
#: Of the gallery's places, how many go first to items some model got wrong, left unparsed or errored
#: on; the rest show items every model answered correctly (filled with problem items when too few).
GALLERY_PROBLEM_PLACES = 160
THUMB_PX = 96
RAW_CHARS = 600  # a raw answer longer than this is cut in the gallery (the full text is in records.jsonl)
PAPER_SOURCE = (
    "Chen et al., “GMAI-MMBench: A Comprehensive Multimodal Evaluation Benchmark Towards General Medical AI”, "
    "NeurIPS 2024 Datasets and Benchmarks Track, arXiv:2408.03361"
)
TREE_VIEWS: tuple[tuple[str, str], ...] = (
    ("task", "clinical VQA task"),
    ("department", "department"),
    ("granularity", "perceptual granularity"),
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


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def pct(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}"


# --- the entry point used by report.write_reports ---------------------------------------------


def write_visual_reports(
    run_dir: Path,
    records: Sequence[Record],
    metrics: dict[str, ModelMetrics],
    comparison: Comparison | None,
    *,
    extra: dict[str, Any] | None = None,
    console: Console | None = None,
) -> list[Path]:
    """Write the PNG/SVG plots (when matplotlib is installed) and report.html; return the paths.

    Never fails the run: the records and metrics are already on disk, so a missing matplotlib, an
    unreadable data file or a bug here becomes a printed note (and a note in the page), not an error.
    """
    notes: list[str] = []
    written: list[Path] = []
    records = [r for r in records if r.model in metrics]
    config = read_run_json(run_dir, "config.json")
    _, chance = chance_levels(records)
    try:
        from gmai_client.plots import write_plots

        written += write_plots(run_dir, metrics, chance)
    except ImportError:
        notes.append("PNG/SVG plots were not written: matplotlib is not installed (pip install 'gmai-client[report]').")
    except Exception as exc:  # a plotting failure must not lose the HTML report
        notes.append(f"PNG/SVG plots were not written: {type(exc).__name__}: {exc}")
    images: dict[str, str] = {}
    questions: dict[str, str] = {}
    wanted = select_gallery(records, list(metrics))
    if wanted:
        paths = _data_files(config, records)
        try:
            images, questions = load_item_details(paths, wanted)
        except Exception as exc:  # a moved or unreadable data file costs the thumbnails only
            notes.append(f"Gallery thumbnails and questions unavailable: {type(exc).__name__}: {exc}")
        else:
            if not images and not paths:
                notes.append("Gallery thumbnails and questions unavailable: the run's data files are not known.")
            elif not images:
                notes.append(
                    "Gallery thumbnails and questions unavailable: the items were not found in "
                    + ", ".join(str(p) for p in paths)
                )
    try:
        written.append(
            write_html_report(
                run_dir,
                records,
                metrics,
                comparison,
                config=config,
                extra=extra,
                images=images,
                questions=questions,
                plot_files=[p for p in written if p.parent.name == PLOTS_DIR],
                notes=notes,
            )
        )
    except Exception as exc:
        notes.append(f"report.html was not written: {type(exc).__name__}: {exc}")
    if console is not None:
        from rich.markup import escape as markup_escape  # "[report]" in a note is text, not a style

        for note in notes:
            console.print(f"[yellow]{markup_escape(note)}", highlight=False)
    return written


def read_run_json(run_dir: Path, name: str) -> dict[str, Any] | None:
    """A run folder's JSON file (config.json, metrics.json), or None when missing or unreadable."""
    try:
        value = json.loads((run_dir / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _data_files(config: dict[str, Any] | None, records: Sequence[Record]) -> list[Path]:
    files = [str(p) for p in (config or {}).get("data_files", [])]
    if not files:
        # A record's source reads "<file>, row N, index I": the file is all before ", row ".
        files = sorted({r.source.rsplit(", row ", 1)[0] for r in records if ", row " in r.source})
    return [Path(f) for f in dict.fromkeys(files) if Path(f).is_file()]


# --- gallery items from the data files ---------------------------------------------------------


def load_item_details(paths: Iterable[Path], wanted: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """index -> first image (base64) and index -> question text, for the ``wanted`` indexes only.

    The real VAL file is 9 GB, so rows are not all parsed: each line's index cell is read first and
    only wanted rows go through the csv module; the scan stops once every wanted item was found. A
    row whose quoted cells span lines is skipped (its card shows no thumbnail).
    """
    remaining = set(wanted)
    images: dict[str, str] = {}
    questions: dict[str, str] = {}
    for path in paths:
        if not remaining:
            break
        with open(path, "rb") as handle:
            header = next(csv.reader([handle.readline().decode("utf-8", "replace")], delimiter="\t"), [])
            columns = [name.strip().lower() for name in header]
            if "index" not in columns:
                continue
            at_index = columns.index("index")
            at_question = columns.index("question") if "question" in columns else None
            at_image = columns.index("image") if "image" in columns else None
            for line in handle:
                if at_index == 0:
                    first = line.split(b"\t", 1)[0].strip().strip(b'"').decode("utf-8", "replace")
                    if first not in remaining:
                        continue
                cells = next(csv.reader([line.decode("utf-8", "replace").rstrip("\r\n")], delimiter="\t"), [])
                if len(cells) != len(columns):
                    continue
                index = cells[at_index].strip()
                if index not in remaining:
                    continue
                remaining.discard(index)
                if at_question is not None:
                    questions[index] = cells[at_question].strip()
                if at_image is not None and (image := _first_image(cells[at_image])):
                    images[index] = image
                if not remaining:
                    break
    return images, questions


def _first_image(cell: str) -> str:
    cell = cell.strip()
    if cell.startswith("["):  # VLMEvalKit's multi-image form: a Python list literal
        try:
            parsed = ast.literal_eval(cell)
        except (ValueError, SyntaxError):
            return ""
        return str(parsed[0]) if parsed else ""
    return cell


def thumbnail(image_b64: str, size: int = THUMB_PX) -> str | None:
    """A small JPEG data URI of a base64 image, or None when it cannot be decoded."""
    from PIL import Image as PILImage

    try:
        data = base64.b64decode(image_b64)
        with PILImage.open(io.BytesIO(data)) as img:
            img.draft("RGB", (size, size))  # JPEG sources decode at a reduced scale: much faster
            img.load()
            if img.mode in ("I", "I;16", "I;16B", "F"):
                # 16-bit and float scans: stretch to 8 bits, or they render black or clipped.
                img = img.convert("F")
                low, high = img.getextrema()
                img = img.point(lambda v: (v - low) * 255.0 / ((high - low) or 1)).convert("L")
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                img = PILImage.new("RGB", rgba.size, "white")
                img.paste(rgba, mask=rgba.getchannel("A"))
            img = img.convert("RGB")
            img.thumbnail((size, size), PILImage.Resampling.LANCZOS)
            out = io.BytesIO()
            img.save(out, format="JPEG", quality=70, optimize=True)
    except Exception:  # any undecodable image: the card shows "no image" instead
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


# --- which items the gallery shows -------------------------------------------------------------


def _outcome(record: Record) -> str:
    if record.status == "error":
        return "errored"
    if record.status in ("unparsed", "refused"):
        return "unparsed"
    if record.correct is True:
        return "correct"
    if record.correct is False:
        return "wrong"
    return "answered"  # no key (TEST): neither right nor wrong


def select_gallery(records: Sequence[Record], labels: Sequence[str], cap: int = GALLERY_CAP) -> list[str]:
    """The indexes the gallery shows, at most ``cap``.

    Problem items first (errored, then unparsed or refused, then wrong), up to
    ``GALLERY_PROBLEM_PLACES``, the rest items every model answered correctly; whichever kind runs
    short leaves its places to the other. Within a kind, items are taken round-robin over clinical
    tasks so that a full VAL report is not all one task.
    """
    by_index: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        if record.model in labels:
            by_index[record.index].append(record)
    tiers: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for index, rows in by_index.items():
        outcomes = {_outcome(r) for r in rows}
        tier = next((t for t, kind in enumerate(("errored", "unparsed", "wrong")) if kind in outcomes), 3)
        tiers[tier].append((rows[0].task, index))
    ordered = [_round_robin(sorted(tiers[t], key=lambda pair: _index_key(pair[1]))) for t in range(4)]
    problems = [i for tier in ordered[:3] for i in tier]
    others = ordered[3]
    take_problems = min(len(problems), max(GALLERY_PROBLEM_PLACES * cap // GALLERY_CAP, cap - len(others)))
    chosen = problems[:take_problems] + others[: cap - take_problems]
    return sorted(chosen, key=_index_key)


def _round_robin(pairs: list[tuple[str, str]]) -> list[str]:
    groups: dict[str, list[str]] = defaultdict(list)
    for group, index in pairs:
        groups[group].append(index)
    queues = [groups[g] for g in sorted(groups)]
    out: list[str] = []
    depth = 0
    while len(out) < len(pairs):
        out += [q[depth] for q in queues if depth < len(q)]
        depth += 1
    return out


def _index_key(index: str) -> tuple[int, str]:
    return (int(index), "") if index.isdigit() else (1 << 62, index)


# --- the page ----------------------------------------------------------------------------------


def write_html_report(
    run_dir: Path,
    records: Sequence[Record],
    metrics: dict[str, ModelMetrics],
    comparison: Comparison | None,
    *,
    config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    images: Mapping[str, str] | None = None,
    questions: Mapping[str, str] | None = None,
    plot_files: Sequence[Path] = (),
    notes: Sequence[str] = (),
) -> Path:
    """Write ``<run_dir>/report.html`` and return its path.

    ``config`` is the run folder's config.json (already redacted; redacted again here all the same),
    ``extra`` the run section of metrics.json (timings, interruption). ``images`` maps an item index
    to its image as base64 (thumbnailed here; only the gallery's items are looked up) and
    ``questions`` an index to its question text; without them the gallery shows neither.
    """
    page = _Page(run_dir, list(records), metrics, comparison, config or {}, extra or {}, images, questions)
    text = page.render(plot_files, notes)
    path = run_dir / REPORT_FILE
    path.write_text(text, encoding="utf-8")
    return path


class _Page:
    def __init__(
        self,
        run_dir: Path,
        records: list[Record],
        metrics: dict[str, ModelMetrics],
        comparison: Comparison | None,
        config: dict[str, Any],
        extra: dict[str, Any],
        images: Mapping[str, str] | None,
        questions: Mapping[str, str] | None,
    ) -> None:
        self.run_dir = run_dir
        self.metrics = metrics
        self.labels = list(metrics)
        self.records = [r for r in records if r.model in metrics]
        self.comparison = comparison
        self.config = config
        self.settings: dict[str, Any] = config.get("config", config) if isinstance(config, dict) else {}
        self.extra = extra
        self.images = images or {}
        self.questions = questions or {}
        self.keyed = [label for label in self.labels if metrics[label].has_key]
        self.chance_overall, self.chance = chance_levels(self.records)
        self.by_model: dict[str, list[Record]] = defaultdict(list)
        for record in self.records:
            self.by_model[record.model].append(record)

    # -- skeleton

    def render(self, plot_files: Sequence[Path], notes: Sequence[str]) -> str:
        sections = [
            ("headline", "Headline", self._headline()),
            ("views", "Accuracy by view", self._views()),
            ("heatmap", "Models × categories", self._heatmap()),
            ("tree", "Lexical tree", self._tree()),
            ("paper", "Published figures", self._paper()),
            ("gallery", "Items", self._gallery()),
            ("run", "Configuration, versions, timings", self._run_info(plot_files)),
        ]
        nav = " ".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title, _ in sections)
        body = "\n".join(
            f'<section id="{sid}" aria-labelledby="{sid}-h"><h2 id="{sid}-h">{esc(title)}</h2>\n{content}</section>'
            for sid, title, content in sections
        )
        note_html = (
            '<div class="notes" role="note"><ul>' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul></div>"
            if notes
            else ""
        )
        title = f"GMAI-MMBench report: {self.run_dir.name}"
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            # Nothing may be fetched: styles and scripts are inline, images are data: URIs.
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            '<link rel="icon" href="data:,">\n'  # or the browser asks for /favicon.ico
            f"<title>{esc(title)}</title>\n<style>{_CSS}{_palette_css()}</style>\n</head>\n<body>\n"
            f'<header><h1>{esc(title)}</h1>\n<p class="sub">{self._subtitle()}</p>\n'
            f'<nav aria-label="Sections">{nav}</nav></header>\n<main>\n{note_html}\n{body}\n</main>\n'
            f"<script>{_JS}</script>\n</body>\n</html>\n"
        )

    def _subtitle(self) -> str:
        data = ", ".join(Path(str(f)).name for f in self.config.get("data_files", [])) or "unknown data"
        select = self.settings.get("select") or []
        parts = [f"{len(self.labels)} model{'s' if len(self.labels) != 1 else ''}", f"data: {data}"]
        parts.append("selection: " + " ∪ ".join(select) if select else "selection: all items")
        if self.settings.get("limit") is not None:
            parts.append(f"limit {self.settings['limit']}")
        if self.config.get("written"):
            parts.append(f"started {self.config['written']}")
        parts.append(f"report written {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
        return esc(" · ".join(parts))

    # -- headline

    def _headline(self) -> str:
        header = [
            "model",
            "accuracy %",
            "95% interval",
            "items",
            "correct",
            "unparsed",
            "refused",
            "errored",
            "answered-only %",
            "lenient % (not comparable)",
            "lenient differs",
            "ACC_mcq %",
            "Recall_mcq %",
            "tokens in / out",
            "latency s mean / total",
        ]
        rows = []
        for i, (label, m) in enumerate(self.metrics.items()):
            o = m.overall
            mine = self.by_model[label]
            reported = any(r.input_tokens is not None or r.output_tokens is not None for r in mine)
            total_latency = sum(r.latency_s for r in mine if r.status != "error" and not r.cached)
            cells = [
                f'<th scope="row">{_swatch(i)}{esc(label)}</th>',
                f'<td class="acc num">{pct(o.accuracy)}</td>',
                f'<td class="num">{_interval(o)}</td>',
                f'<td class="num">{o.n}</td>',
                f'<td class="num">{o.correct}</td>',
                f'<td class="num">{o.unparsed}</td>',
                f'<td class="num">{o.refused}</td>',
                f'<td class="num">{o.errored}</td>',
                f'<td class="num">{pct(o.answered_accuracy) if o.errored else "—"}</td>',
                f'<td class="num lenient">{pct(o.lenient_accuracy)}</td>',
                f'<td class="num">{o.differs}</td>',
                f'<td class="num">{pct(m.mcq.acc_mcq) if m.mcq.n else "—"}</td>',
                f'<td class="num">{pct(m.mcq.recall_mcq) if m.mcq.n else "—"}</td>',
                f'<td class="num">{f"{m.input_tokens:,} / {m.output_tokens:,}" if reported else "—"}</td>',
                f'<td class="num">{"—" if m.mean_latency_s is None else f"{m.mean_latency_s:.3f}"} / '
                f"{total_latency:,.1f}</td>",
            ]
            rows.append(f'<tr data-model="{esc(label)}">{"".join(cells)}</tr>')
        parts = [
            "<p>Accuracy is micro-averaged per question and is VLMEvalKit's exact-matching evaluation, the "
            "figure comparable with the paper's tables: unparsed and refused answers, and items that got no "
            "answer, count as wrong. <em>Lenient</em> is a second extraction that reads more answer styles; it "
            "is shown for diagnosis and is not comparable with published figures. Intervals are 95% Wilson "
            "intervals. Latency is per answered, uncached item; requests overlap, so the total exceeds the "
            "run's wall time.</p>",
            _table(header, rows, caption="Overall results per model", cls="headline"),
        ]
        for label, m in self.metrics.items():
            if m.incomplete:
                o = m.overall
                parts.append(
                    f'<p class="warn"><strong>Incomplete:</strong> {esc(label)}: {o.errored} of {o.n} items got no '
                    f"answer. Its accuracy counts them wrong (VLMEvalKit's figure); over the {o.scored} answered "
                    f"items it is {pct(o.answered_accuracy)}%. Finish the run with "
                    f"<code>python -m gmai_client run --resume {esc(str(self.run_dir))} --retry-errors</code>.</p>"
                )
        if self.chance_overall is not None:
            parts.append(
                f"<p>Uniform guessing over each item's options would score {pct(self.chance_overall)}% on these "
                "items (the mean of 1 / number of options).</p>"
            )
        unkeyed = [label for label in self.labels if label not in self.keyed]
        if unkeyed:
            parts.append(
                '<p class="warn">No answer key for '
                + ", ".join(esc(label) for label in unkeyed)
                + " (a TEST split has none): predictions only, no accuracy. The predictions/ folder holds the "
                "files the benchmark's authors take for scoring.</p>"
            )
        if self.comparison is not None and self.comparison.paired and len(self.keyed) > 1:
            items = []
            for test in self.comparison.paired.values():
                if test.p_value is None:
                    items.append(f"<li>{esc(test.model)} vs {esc(test.reference)}: no shared scored items</li>")
                else:
                    items.append(
                        f"<li>{esc(test.model)} vs {esc(test.reference)}: Δ {_signed(test.delta)} points on "
                        f"{test.shared} shared items ({test.model_only_correct} right only for {esc(test.model)}, "
                        f"{test.reference_only_correct} only for {esc(test.reference)}), exact McNemar "
                        f"p = {test.p_value:.4g}</li>"
                    )
            parts.append("<h3>Paired comparison</h3><ul>" + "".join(items) + "</ul>")
        return "\n".join(parts)

    # -- per view charts and tables

    def _views(self) -> str:
        if not self.keyed:
            parts = [
                '<p class="warn">No model has an answer key in this run: there is no accuracy to chart. '
                "The tables give item counts per category.</p>"
            ]
            for _, view in VIEW_FIELDS:
                parts.append(f"<h3>By {esc(view)}</h3>" + self._count_table(view))
            return "\n".join(parts)
        parts = [
            "<p>One bar per model and category: accuracy with its 95% interval (whiskers). The dashed red mark is "
            "the expected accuracy of uniform guessing for the category (mean of 1 / number of options over its "
            "items). Each chart's numbers are in the table under it.</p>",
        ]
        for _, view in VIEW_FIELDS:
            names = sorted({name for label in self.keyed for name in self.metrics[label].groups[view]})
            parts.append(
                f'<div class="view"><h3 id="view-{_slug(view)}">By {esc(view)} '
                f'<span class="count">({len(names)} categor{"y" if len(names) == 1 else "ies"})</span></h3>'
                + self._bar_chart(view, names)
                + f"<details><summary>Table: accuracy by {esc(view)}</summary>{self._view_table(view, names)}"
                "</details></div>"
            )
        return "\n".join(parts)

    def _count_table(self, view: str) -> str:
        names = sorted({name for m in self.metrics.values() for name in m.groups[view]})
        header = [view] + [f"{label}: items / unparsed / errored" for label in self.labels]
        rows = []
        for name in names:
            cells = [f'<th scope="row">{esc(name)}</th>']
            for label in self.labels:
                s = self.metrics[label].groups[view].get(name, GroupStats())
                cells.append(f'<td class="num">{s.n} / {s.unparsed + s.refused} / {s.errored}</td>')
            rows.append("<tr>" + "".join(cells) + "</tr>")
        return _table(header, rows, caption=f"Items by {view}")

    def _bar_chart(self, view: str, names: list[str]) -> str:
        labels = self.keyed
        n = len(labels)
        chance = self.chance.get(view, {})
        width, label_w, right = 880, 300, 56
        x0, x1 = label_w + 12, width - right
        scale = (x1 - x0) / 100
        bar_h = 14 if n <= 2 else 10 if n <= 4 else 7 if n <= 7 else 5
        # Legend, wrapped into rows.
        legend, lx, ly = [], x0, 14
        entries = [(colour(i), label, "bar") for i, label in enumerate(labels)] + [
            (CHANCE_COLOUR, "uniform guessing", "chance")
        ]
        for fill, text, kind in entries:
            w = 26 + 6.6 * min(len(text), 40)
            if lx + w > width - 8 and lx > x0:
                lx, ly = x0, ly + 18
            mark = (
                f'<rect x="{lx:.0f}" y="{ly - 9}" width="12" height="10" fill="{fill}"/>'
                if kind == "bar"
                else f'<line x1="{lx + 6:.0f}" x2="{lx + 6:.0f}" y1="{ly - 11}" y2="{ly + 3}" stroke="{fill}" '
                'stroke-width="2" stroke-dasharray="3 2"/>'
            )
            legend.append(f'{mark}<text x="{lx + 17:.0f}" y="{ly}">{esc(_cut(text, 40))}</text>')
            lx += w
        top = ly + 14
        stripes: list[str] = []
        body: list[str] = []
        y = top
        for k, name in enumerate(names):
            lines = textwrap.wrap(name, 44)[:3] or [name]
            if len(textwrap.wrap(name, 44)) > 3:
                lines[-1] = _cut(lines[-1] + "…", 44)
            group_h = max(n * bar_h + 8, 13 * len(lines) + 8)
            if k % 2 == 0:
                stripes.append(f'<rect x="0" y="{y}" width="{width}" height="{group_h}" class="stripe"/>')
            text_y = y + group_h / 2 - 13 * (len(lines) - 1) / 2 + 4
            tspans = "".join(
                f'<tspan x="{label_w}" y="{text_y + 13 * j:.1f}">{esc(line)}</tspan>' for j, line in enumerate(lines)
            )
            body.append(f'<text class="cat" text-anchor="end"><title>{esc(name)}</title>{tspans}</text>')
            bars_top = y + (group_h - n * bar_h) / 2
            for i, label in enumerate(labels):
                s = self.metrics[label].groups[view].get(name)
                if s is None or s.accuracy is None:
                    continue
                by = bars_top + i * bar_h
                tip = (
                    f"{label} — {name}: {pct(s.accuracy)}% (95% interval {pct(s.ci_low, 1)}–{pct(s.ci_high, 1)}), "
                    f"{s.correct}/{s.scored} correct"
                )
                body.append(
                    f'<g><title>{esc(tip)}</title><rect x="{x0}" y="{by:.1f}" width="{s.accuracy * 100 * scale:.1f}" '
                    f'height="{bar_h - 1}" fill="{colour(i)}"/>'
                )
                if s.ci_low is not None and s.ci_high is not None:
                    lo, hi, cy = x0 + 100 * s.ci_low * scale, x0 + 100 * s.ci_high * scale, by + (bar_h - 1) / 2
                    cap = min(3, (bar_h - 1) / 2)
                    body.append(
                        f'<path class="ci" d="M{lo:.1f} {cy:.1f}H{hi:.1f}M{lo:.1f} {cy - cap:.1f}V{cy + cap:.1f}'
                        f'M{hi:.1f} {cy - cap:.1f}V{cy + cap:.1f}"/>'
                    )
                    if n <= 3:  # values in a column right of 100%: readable, and clear of the whiskers
                        body.append(
                            f'<text class="val" x="{x1 + 8:.1f}" y="{cy + 3.5:.1f}">{pct(s.accuracy, 1)}</text>'
                        )
                body.append("</g>")
            if name in chance:
                cx = x0 + 100 * chance[name] * scale
                body.append(
                    f'<line class="chance" x1="{cx:.1f}" x2="{cx:.1f}" y1="{y + 2}" y2="{y + group_h - 2}">'
                    f"<title>{esc(name)}: uniform guessing {pct(chance[name])}%</title></line>"
                )
            y += group_h
        bottom = y
        grid = []
        for tick in range(0, 101, 25):
            gx = x0 + tick * scale
            grid.append(
                f'<line class="grid" x1="{gx:.1f}" x2="{gx:.1f}" y1="{top}" y2="{bottom}"/>'
                f'<text class="tick" x="{gx:.1f}" y="{bottom + 14}" text-anchor="middle">{tick}%</text>'
            )
        height = bottom + 34
        sid = _slug(view)
        summary = (
            f"Horizontal bar chart of accuracy by {view} for {', '.join(labels)}, "
            f"{len(names)} categories, with 95% intervals and the uniform-guessing level; "
            "the same numbers are in the table below the chart."
        )
        return (
            f'<div class="chart"><svg viewBox="0 0 {width} {height}" width="{width}" role="img" '
            f'aria-labelledby="chart-{sid}-t chart-{sid}-d" aria-label="{esc(summary)}">'
            f'<title id="chart-{sid}-t">Accuracy by {esc(view)}</title><desc id="chart-{sid}-d">{esc(summary)}</desc>'
            + "".join(legend)
            + "".join(stripes)  # painted first: stripes, then grid lines, then bars on top
            + "".join(grid)
            + "".join(body)
            + f'<text class="tick" x="{(x0 + x1) / 2:.0f}" y="{bottom + 30}" text-anchor="middle">'
            "accuracy (%)</text></svg></div>"
        )

    def _view_table(self, view: str, names: list[str]) -> str:
        header = [view, "items", "guessing %"]
        for label in self.keyed:
            header += [f"{label} %", f"{label} 95% interval"]
        rows = []
        for name in names:
            n = max((self.metrics[label].groups[view].get(name, GroupStats()).n for label in self.keyed), default=0)
            cells = [f'<th scope="row">{esc(name)}</th>', f'<td class="num">{n}</td>']
            cells.append(f'<td class="num">{pct(self.chance.get(view, {}).get(name))}</td>')
            for label in self.keyed:
                s = self.metrics[label].groups[view].get(name, GroupStats())
                cells += [f'<td class="num">{pct(s.accuracy)}</td>', f'<td class="num">{_interval(s)}</td>']
            rows.append("<tr>" + "".join(cells) + "</tr>")
        macro = ['<th scope="row">macro average</th>', "<td></td>", "<td></td>"]
        for label in self.keyed:
            macro += [f'<td class="num">{pct(self.metrics[label].macro[view])}</td>', "<td></td>"]
        rows.append('<tr class="macro">' + "".join(macro) + "</tr>")
        return _table(header, rows, caption=f"Accuracy (%) by {view}")

    # -- heatmap

    def _heatmap(self) -> str:
        if len(self.keyed) < 2:
            why = "one model with an answer key" if len(self.keyed) == 1 else "no model with an answer key"
            return f"<p>Side-by-side comparison needs two or more models with an answer key; this run has {why}.</p>"
        reference = (
            self.comparison.reference
            if self.comparison is not None and self.comparison.reference in self.keyed
            else self.keyed[0]
        )
        options = "".join(
            f'<option value="{i}"{" selected" if label == reference else ""}>{esc(label)}</option>'
            for i, label in enumerate(self.keyed)
        )
        parts = [
            "<p>Accuracy (%) per category; the smaller number is the difference in points against the reference "
            f"model (<strong>{esc(reference)}</strong> as written). Darker cells are more accurate.</p>",
            f'<p class="js-only" hidden><label>Reference model: <select id="hm-ref">{options}</select></label></p>',
        ]
        ref_col = self.keyed.index(reference)
        for k, (_, view) in enumerate(VIEW_FIELDS):
            names = sorted({name for label in self.keyed for name in self.metrics[label].groups[view]})
            header = [view] + [label + (" (reference)" if label == reference else "") for label in self.keyed]
            rows = []
            for name in names:
                ref = self.metrics[reference].groups[view].get(name, GroupStats()).accuracy
                cells = [f'<th scope="row">{esc(name)}</th>']
                for col, label in enumerate(self.keyed):
                    acc = self.metrics[label].groups[view].get(name, GroupStats()).accuracy
                    delta = "" if col == ref_col or acc is None or ref is None else _signed(acc - ref)
                    cls = "" if not delta else " up" if acc > ref else " down" if acc < ref else ""
                    style = _heat(acc)
                    data = "" if acc is None else f' data-acc="{acc:.6f}"'
                    cells.append(
                        f'<td class="hm num"{style}{data}><span class="v">{pct(acc, 1)}</span>'
                        f'<span class="d{cls}">{delta}</span></td>'
                    )
                rows.append("<tr>" + "".join(cells) + "</tr>")
            parts.append(
                f"<details{' open' if k == 0 else ''}><summary>By {esc(view)}</summary>"
                + _table(header, rows, caption=f"Accuracy (%) by {view}, models side by side", cls="heat")
                + "</details>"
            )
        return "\n".join(parts)

    # -- lexical tree

    def _tree(self) -> str:
        records = usable_records(self.records)
        parts = [
            "<p>The benchmark's lexical tree as this run covers it: each view's categories, then modality, then "
            "leaf label, with the number of items and each model's accuracy at every node. Click a node to open "
            "it. Only nodes with items in this run are listed.</p>",
            '<p class="js-only" hidden><button type="button" data-tree="open">Expand all</button> '
            '<button type="button" data-tree="close">Collapse all</button></p>',
            self._legend(),
        ]
        for attribute, view in TREE_VIEWS:
            nested: dict[str, dict[str, dict[str, list[Record]]]] = defaultdict(
                lambda: defaultdict(lambda: defaultdict(list))
            )
            for r in records:
                nested[getattr(r, attribute) or "(none)"][r.modality or "(none)"][r.category or "(none)"].append(r)
            children = []
            for cat in sorted(nested):
                mods = []
                for mod in sorted(nested[cat]):
                    leaves = [
                        f'<li class="leaf">{self._node_label(leaf, nested[cat][mod][leaf])}</li>'
                        for leaf in sorted(nested[cat][mod])
                    ]
                    mod_rows = [r for rows in nested[cat][mod].values() for r in rows]
                    mods.append(
                        f"<li><details><summary>{self._node_label(mod, mod_rows, 'modality')}</summary>"
                        f"<ul>{''.join(leaves)}</ul></details></li>"
                    )
                cat_rows = [r for leaves in nested[cat].values() for rows in leaves.values() for r in rows]
                children.append(
                    f"<li><details><summary>{self._node_label(cat, cat_rows)}</summary>"
                    f"<ul>{''.join(mods)}</ul></details></li>"
                )
            parts.append(
                f'<details class="tree-view"><summary>{self._node_label(view, records, "view")}</summary>'
                f'<ul class="tree">{"".join(children)}</ul></details>'
            )
        return "\n".join(parts)

    def _legend(self) -> str:
        return (
            '<p class="legend">'
            + " ".join(f'<span class="chip">{_swatch(i)}{esc(label)}</span>' for i, label in enumerate(self.labels))
            + "</p>"
        )

    def _node_label(self, name: str, rows: list[Record], kind: str = "") -> str:
        per_model: dict[str, list[Record]] = defaultdict(list)
        for r in rows:
            per_model[r.model].append(r)
        n = len({r.index for r in rows})
        accs = []
        for i, label in enumerate(self.labels):
            if label not in self.keyed or label not in per_model:
                continue
            s = group_stats(per_model[label])
            # Compact on purpose: a full VAL tree has ~3,000 nodes; the colour says which model (legend above).
            accs.append(f'<b class="c{i % len(PALETTE)}">{pct(s.accuracy, 1)}</b>')
        kind_html = f'<span class="kind">{esc(kind)}</span> ' if kind else ""
        accs_html = f'<span class="accs">{"".join(accs)}</span>' if accs else ""
        return f'{kind_html}<span class="nm">{esc(name)}</span> <span class="n">n={n}</span>{accs_html}'

    # -- published figures

    def full_val(self) -> tuple[list[str], str]:
        """The models whose results stand beside the paper's, and why the others (or all) do not."""
        select = self.settings.get("select") or []
        limit = self.settings.get("limit")
        rule = (
            f"Published figures are shown beside a run only when it covers the full VAL split: no selection "
            f"(--select) and no --limit, and at least {FULL_VAL_ITEMS:,} scored items with an answer key for the "
            "model."
        )
        if not self.keyed:
            return [], rule + " This run has no answer key (TEST predictions only)."
        if select:
            return [], rule + f" This run selected {' ∪ '.join(select)}."
        if limit is not None:
            return [], rule + f" This run had --limit {limit}."
        covering = [label for label in self.keyed if self.metrics[label].overall.scored >= FULL_VAL_ITEMS]
        short = [f"{label} ({self.metrics[label].overall.scored:,})" for label in self.keyed if label not in covering]
        if not covering:
            return [], rule + f" Scored items in this run: {', '.join(short)}."
        return covering, (rule + " Left out, too few scored items: " + ", ".join(short) + ".") if short else rule

    def _paper(self) -> str:
        covering, why = self.full_val()
        if not covering:
            return f'<p class="note">{esc(why)}</p>'
        parts = [
            '<p class="published"><strong>Published figures</strong>, copied from the GMAI-MMBench paper '
            f"({esc(PAPER_SOURCE)}); "
            "they are not recomputed here. Rows marked <em>this run</em> are this run's own accuracy on the VAL "
            "split. The paper's per-category columns are as published and may come from a different split than "
            f"this run; read them as context, not as a paired comparison.</p><p>{esc(why)}</p>",
        ]
        overall = _read_paper("paper_overall.csv")
        rows: list[tuple[float, str]] = []
        for row in overall:
            val = _float(row.get("val_overall"))
            rows.append(
                (
                    val if val is not None else -1.0,
                    f"<tr><td>{esc(row.get('model', ''))}</td><td>{esc(row.get('group', ''))}</td>"
                    f'<td>{esc(row.get("size", ""))}</td><td class="num">{esc(row.get("val_overall", ""))}</td>'
                    f'<td class="num">{esc(row.get("test_overall", ""))}</td></tr>',
                )
            )
        for label in covering:
            m = self.metrics[label]
            acc = m.overall.accuracy or 0.0
            rows.append(
                (
                    100 * acc,
                    f'<tr class="this-run"><td>{esc(label)}</td><td><em>this run</em></td><td></td>'
                    f'<td class="num">{pct(acc)}</td><td class="num">—</td></tr>',
                )
            )
        rows.sort(key=lambda pair: -pair[0])
        parts.append(
            _table(
                ["rank (VAL)", "model", "group", "size", "VAL overall %", "TEST overall %"],
                [
                    row.replace(">", f'><td class="num">{rank}</td>', 1)  # after the row's opening tag
                    for rank, (_, row) in enumerate(rows, 1)
                ],
                caption="Overall accuracy: the paper's leaderboard (published) with this run's models (this run)",
                cls="paper",
            )
        )
        for filename, view, columns in _PAPER_VIEWS:
            table = _read_paper(filename)
            if not table:
                continue
            abbreviations = [c for c in table[0] if c in columns]
            header = ["model", "VAL overall %"] + [f"{columns[c]} ({c})" for c in abbreviations]
            body = [
                "<tr><td>"
                + esc(row.get("Model name", ""))
                + "</td>"
                + f'<td class="num">{esc(row.get("Overall (val)", ""))}</td>'
                + "".join(f'<td class="num">{esc(row.get(c, ""))}</td>' for c in abbreviations)
                + "</tr>"
                for row in table
            ]
            for label in covering:
                m = self.metrics[label]
                cells = []
                for c in abbreviations:
                    name = columns[c]
                    if name == "ACC_mcq":
                        value = m.mcq.acc_mcq
                    elif name == "Recall_mcq":
                        value = m.mcq.recall_mcq
                    else:
                        value = m.groups[view].get(name, GroupStats()).accuracy
                    cells.append(f'<td class="num">{pct(value)}</td>')
                body.append(
                    f'<tr class="this-run"><td>{esc(label)} <em>(this run)</em></td>'
                    f'<td class="num">{pct(m.overall.accuracy)}</td>{"".join(cells)}</tr>'
                )
            parts.append(
                f"<details><summary>By {esc(view)}: published figures and this run</summary>"
                + _table(header, body, caption=f"Accuracy (%) by {view}: published (paper) and this run", cls="paper")
                + "</details>"
            )
        return "\n".join(parts)

    # -- gallery

    def _gallery(self) -> str:
        indexes = select_gallery(self.records, self.labels)
        if not indexes:
            return "<p>No items in this run.</p>"
        by_index: dict[str, dict[str, Record]] = defaultdict(dict)
        for r in self.records:
            by_index[r.index][r.model] = r
        total = len(by_index)
        cards = []
        thumbs = 0
        for index in indexes:
            rows = by_index[index]
            first = next(iter(rows.values()))
            flags: dict[str, list[str]] = defaultdict(list)
            answers = []
            for i, label in enumerate(self.labels):
                r = rows.get(label)
                if r is None:
                    continue
                outcome = _outcome(r)
                flags[outcome].append(str(i))
                letters = ",".join(r.letters) or "—"
                raw = r.prediction if r.prediction is not None else (r.error or "")
                shown = raw if len(raw) <= RAW_CHARS else raw[:RAW_CHARS] + f"… ({len(raw):,} characters)"
                answers.append(
                    f'<tr class="{outcome}"><th scope="row" title="{esc(label)}">{_swatch(i)}{esc(label)}</th>'
                    f'<td class="letter">{esc(letters)}</td><td><span class="badge {outcome}">{outcome}</span></td>'
                    f'<td class="raw">{esc(shown) if shown else "<em>no answer</em>"}</td></tr>'
                )
            key = set(first.answer or ())
            options = "".join(
                f"<li{' class=key' if letter in key else ''}><b>{esc(letter)}.</b> {esc(text)}"
                f"{' <span class=keymark>✓ key</span>' if letter in key else ''}</li>"
                for letter, text in first.options
            )
            thumb = thumbnail(self.images[index]) if index in self.images else None
            thumbs += thumb is not None
            image = (
                f'<img src="{thumb}" alt="thumbnail of item {esc(index)}" width="{THUMB_PX}">'
                if thumb
                else '<div class="noimg">no image</div>'
            )
            question = self.questions.get(index)
            path = " › ".join(esc(x) for x in (first.task, first.modality, first.category) if x)
            data = " ".join(
                f'data-{kind}="{" ".join(flags.get(kind, []))}"'
                for kind in ("wrong", "unparsed", "errored", "correct", "answered")
            )
            cards.append(
                f'<article class="card" {data}><div class="thumb">{image}</div><div class="body">'
                f'<h3>Item {esc(index)}</h3><p class="path">{path} · {esc(first.department)} · '
                f"{esc(first.granularity)}</p>"
                + (f'<p class="q">{esc(question)}</p>' if question else "")
                + f'<ol class="opts">{options}</ol>'
                + ("" if first.answer is not None else '<p class="nokey">no answer key</p>')
                + '<table class="answers"><thead><tr><th scope="col">model</th><th scope="col">letter</th>'
                '<th scope="col">outcome</th><th scope="col">raw answer</th></tr></thead><tbody>'
                + "".join(answers)
                + "</tbody></table></div></article>"
            )
        counts = " · ".join(
            f"{name}: {sum(1 for rows in by_index.values() if any(_outcome(r) == kind for r in rows.values()))}"
            for kind, name in (("wrong", "wrong"), ("unparsed", "unparsed or refused"), ("errored", "errored"))
        )
        buttons = "".join(
            f'<button type="button" data-filter="{f}" aria-pressed="{"true" if f == "all" else "false"}">{t}</button>'
            for f, t in (
                ("all", "all"),
                ("wrong", "wrong"),
                ("unparsed", "unparsed or refused"),
                ("errored", "errored"),
                ("correct", "correct"),
            )
        )
        models = '<option value="any">any model</option>' + "".join(
            f'<option value="{i}">{esc(label)}</option>' for i, label in enumerate(self.labels)
        )
        return (
            f"<p>{len(indexes)} of {total} items are shown (the gallery holds at most {GALLERY_CAP}: up to "
            f"{GALLERY_PROBLEM_PLACES} that some model got wrong, left unparsed or errored on, the rest answered "
            f"correctly by every model; thumbnails at most {THUMB_PX} px, JPEG, so that a full VAL report stays a "
            f"few megabytes). Items of this run with at least one answer that is {counts}. "
            f"{thumbs} thumbnail{'s' if thumbs != 1 else ''} included.</p>"
            '<div id="gallery-filters" class="js-only" hidden role="group" aria-label="Filter items">'
            f'Show: {buttons} <label>for <select id="gallery-model">{models}</select></label> '
            '<span id="gallery-count" aria-live="polite"></span></div>'
            "<noscript><p>Filters need JavaScript: every item of the gallery is shown.</p></noscript>"
            f'<div class="gallery">{"".join(cards)}</div>'
        )

    # -- configuration, versions, timings

    def _run_info(self, plot_files: Sequence[Path]) -> str:
        versions = [("gmai_client", self.config.get("gmai_client") or _version())]
        versions += [("python", self.config.get("python") or platform.python_version())]
        versions += [("platform (where this page was written)", platform.platform(terse=True))]
        for package in ("Pillow", "matplotlib"):
            versions.append((package, _package_version(package)))
        version_rows = [f'<tr><th scope="row">{esc(k)}</th><td>{esc(v)}</td></tr>' for k, v in versions]
        run = self.extra
        timing_rows = []
        if "elapsed_s" in run:
            timing_rows.append(f'<tr><th scope="row">run wall time</th><td>{float(run["elapsed_s"]):.1f} s</td></tr>')
        if run.get("interrupted"):
            timing_rows.append('<tr><th scope="row">interrupted</th><td>yes: results are partial</td></tr>')
        model_rows = []
        for label in self.labels:
            state = (run.get("models") or {}).get(label, {})
            mine = self.by_model[label]
            model_rows.append(
                f'<tr><th scope="row">{esc(label)}</th><td class="num">{state.get("done", len(mine))}</td>'
                f'<td class="num">{state.get("errors", sum(r.status == "error" for r in mine))}</td>'
                f'<td class="num">{state.get("skipped", "—")}</td>'
                f'<td class="num">{sum(r.cached for r in mine)}</td>'
                f'<td class="num">{sum(r.attempts for r in mine)}</td>'
                f"<td>{esc(state.get('stopped', '') or '')}</td></tr>"
            )
        plots = (
            "<p>Charts as files beside this report (for papers and slides): "
            + ", ".join(
                f'<a href="{esc(PLOTS_DIR + "/" + p.name)}">{esc(PLOTS_DIR + "/" + p.name)}</a>' for p in plot_files
            )
            + ".</p>"
            if plot_files
            else ""
        )
        config_text = redact(json.dumps(self.config, indent=2, default=str)) if self.config else "(no config.json)"
        return (
            plots
            + _table(["", ""], version_rows, caption="Versions", head=False)
            + (_table(["", ""], timing_rows, caption="Timings", head=False) if timing_rows else "")
            + _table(
                ["model", "done", "errors", "skipped (resumed)", "cached", "attempts", "stopped"],
                model_rows,
                caption="Per model (this invocation; skipped items were finished by an earlier one)",
            )
            + "<details><summary>Configuration (config.json, no secrets)</summary>"
            f"<pre>{esc(config_text)}</pre></details>"
        )


# --- small helpers -----------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[str], *, caption: str = "", cls: str = "", head: bool = True) -> str:
    thead = "<thead><tr>" + "".join(f'<th scope="col">{esc(h)}</th>' for h in header) + "</tr></thead>" if head else ""
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    klass = f' class="{cls}"' if cls else ""
    return f'<div class="tablewrap"><table{klass}>{cap}{thead}<tbody>{"".join(rows)}</tbody></table></div>'


def _interval(stats: GroupStats) -> str:
    if stats.ci_low is None or stats.ci_high is None:
        return "—"
    return f"{100 * stats.ci_low:.1f}–{100 * stats.ci_high:.1f}"


def _signed(value: float | None) -> str:
    return "" if value is None else f"{100 * value:+.2f}"


def _swatch(i: int) -> str:
    return f'<span class="sw c{i % len(PALETTE)}" aria-hidden="true"></span>'


def _palette_css() -> str:
    return "".join(f".c{i}{{--c:{c}}}" for i, c in enumerate(PALETTE))


def _heat(acc: float | None) -> str:
    if acc is None:
        return ""
    lightness = 96 - 50 * acc
    text = "#fff" if lightness < 60 else "#111"
    return f' style="background:hsl(212,65%,{lightness:.0f}%);color:{text}"'


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "-") else None
    except ValueError:
        return None


def _read_paper(filename: str) -> list[dict[str, str]]:
    text = resources.files("gmai_client").joinpath(f"data/{filename}").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _version() -> str:
    from gmai_client import __version__

    return __version__


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


_CSS = """
:root{color-scheme:light;--fg:#1b1b1b;--muted:#5a5a5a;--line:#d9d9d9;--bg2:#f5f6f8;--accent:#0b5cad}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);
 font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{padding:16px 24px 8px;border-bottom:1px solid var(--line);background:var(--bg2)}
h1{font-size:1.45rem;margin:0 0 4px;overflow-wrap:anywhere}
h2{font-size:1.25rem;margin:28px 0 10px;border-bottom:2px solid var(--accent);padding-bottom:3px}
h3{font-size:1.05rem;margin:18px 0 6px}
.sub{margin:0 0 6px;color:var(--muted);font-size:.9rem;overflow-wrap:anywhere}
nav a{margin-right:14px;color:var(--accent)}
main{max-width:1240px;margin:0 auto;padding:0 24px 48px}
.tablewrap{overflow-x:auto;margin:8px 0 14px}
table{border-collapse:collapse;font-size:.88rem}
caption{text-align:left;font-weight:600;padding:4px 0;color:var(--muted)}
th,td{border:1px solid var(--line);padding:3px 7px;vertical-align:top;text-align:left;overflow-wrap:break-word}
thead th{background:var(--bg2);max-width:14em}
tbody th{font-weight:500;max-width:26em;min-width:9em;overflow-wrap:anywhere}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.headline th,table.headline td{padding:3px 6px}
table.headline td.acc{font-weight:700}
tr.macro{font-style:italic;background:#fafafa}
tr.this-run{background:#fff6d5;font-weight:600}
.sw{display:inline-block;width:.8em;height:.8em;margin-right:.35em;border-radius:2px;vertical-align:-.05em}
.warn{background:#fff3cd;border-left:4px solid #e0a800;padding:6px 10px}
.note,.notes{background:var(--bg2);border-left:4px solid #888;padding:6px 10px}
.published{background:#eef5ff;border-left:4px solid var(--accent);padding:6px 10px}
.count{color:var(--muted);font-weight:400;font-size:.9rem}
.chart{overflow-x:auto}
.chart svg{max-width:100%;height:auto;font:11px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}
.chart .stripe{fill:#f6f7f9}.chart .grid{stroke:#d5d5d5;stroke-width:1}
.chart .ci{stroke:#222;stroke-width:1;fill:none}.chart .chance{stroke:#B00020;stroke-width:2;stroke-dasharray:4 2}
.chart .tick{fill:#444;font-size:10px}.chart .val{fill:#333;font-size:10px}.chart .cat{fill:#222}
details{margin:4px 0}summary{cursor:pointer}
table.heat td.hm{min-width:4.8em}
td.hm .v{display:block;font-weight:600}td.hm .d{display:block;font-size:.78em}
td.hm .d.up::before{content:"▲ "}td.hm .d.down::before{content:"▼ "}
ul.tree,ul.tree ul{list-style:none;margin:0;padding-left:1.3em;border-left:1px dotted #bbb}
ul.tree li{margin:2px 0}
details.tree-view>summary{font-size:1.02rem;font-weight:600}
.kind{color:var(--muted);font-size:.78em;text-transform:uppercase;letter-spacing:.03em}
.nm{overflow-wrap:anywhere}.n{color:var(--muted);font-size:.85em;margin-left:4px}
.accs b{display:inline-block;margin-left:9px;font-weight:400;font-size:.85em;font-variant-numeric:tabular-nums}
.accs b::before{content:"";display:inline-block;width:.7em;height:.7em;margin-right:.25em;border-radius:2px;
 background:var(--c)}
.sw{background:var(--c)}
li.leaf{padding-left:1.1em}
.legend .chip{margin-right:14px;display:inline-block}
.js-only button{margin:2px 3px;padding:3px 10px;border:1px solid #999;border-radius:4px;background:#fff;cursor:pointer}
.js-only button[aria-pressed=true]{background:var(--accent);color:#fff;border-color:var(--accent)}
#gallery-filters{position:sticky;top:0;background:#fff;padding:6px 0;z-index:2;border-bottom:1px solid var(--line)}
#gallery-count{color:var(--muted);margin-left:8px}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:12px;margin-top:10px}
.card{display:flex;gap:10px;border:1px solid var(--line);border-radius:6px;padding:8px;min-width:0}
.card[hidden]{display:none}
.card .thumb{flex:0 0 96px}.card img{display:block;max-width:96px;height:auto;border-radius:3px}
.noimg{width:96px;height:72px;display:flex;align-items:center;justify-content:center;background:var(--bg2);color:var(--muted);font-size:.8rem}
.card .body{min-width:0;flex:1}
.card h3{margin:0;font-size:.95rem}
.card .path{margin:2px 0;color:var(--muted);font-size:.8rem;overflow-wrap:anywhere}
.card .q{margin:4px 0;font-size:.88rem;overflow-wrap:anywhere}
.opts{margin:4px 0;padding-left:0;list-style:none;font-size:.85rem}
.opts li{overflow-wrap:anywhere}.opts li.key{font-weight:600}
.keymark{color:#0a7d32;font-size:.8em}
.nokey{color:var(--muted);font-size:.8rem;margin:2px 0}
table.answers{font-size:.78rem;width:100%;table-layout:fixed}
table.answers td{overflow-wrap:anywhere;padding:2px 4px}
table.answers thead th{padding:2px 4px;overflow-wrap:normal;word-break:normal;font-size:.72rem}
table.answers thead th:nth-child(1){width:32%}table.answers thead th:nth-child(2){width:16%}
table.answers thead th:nth-child(3){width:26%}table.answers thead th:nth-child(4){width:24%}
table.answers th[scope=row]{overflow-wrap:anywhere;padding:2px 4px}  /* full model names, wrapped */
table.answers td.raw{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap}
.badge{border-radius:3px;padding:0 4px;font-size:.75rem;white-space:nowrap}
.badge.correct{background:#d8f5e1;color:#0a5d26}.badge.wrong{background:#fde0e0;color:#8b0000}
.badge.unparsed{background:#fff0c2;color:#6b4e00}.badge.errored{background:#e3e3e3;color:#333}
.badge.answered{background:#e7eefb;color:#163f7a}
pre{background:var(--bg2);padding:10px;overflow-x:auto;font-size:.8rem}
@media print{.js-only,nav{display:none}details{display:block}}
"""

# Kept small and defensive: every lookup tolerates a missing section (one-model runs have no heatmap,
# keyless runs no charts) so that no run can produce a console error.
_JS = """
(function(){
  'use strict';
  document.querySelectorAll('.js-only').forEach(function(el){el.hidden=false;});
  var cards=Array.prototype.slice.call(document.querySelectorAll('.gallery .card'));
  var filter='all', model='any', count=document.getElementById('gallery-count');
  var nModels=document.querySelectorAll('#gallery-model option').length-1;
  function list(card,kind){var v=card.getAttribute('data-'+kind)||'';return v?v.split(' '):[];}
  function apply(){
    var shown=0;
    cards.forEach(function(card){
      var ok=true;
      if(filter!=='all'){
        var hits=list(card,filter);
        if(model==='any'){ok=filter==='correct'?hits.length===nModels:hits.length>0;}
        else{ok=hits.indexOf(model)>=0;}
      }else if(model!=='any'){
        ok=['wrong','unparsed','errored','correct','answered'].some(function(k){
          return list(card,k).indexOf(model)>=0;});
      }
      card.hidden=!ok; if(ok){shown++;}
    });
    if(count){count.textContent=shown+' of '+cards.length+' shown';}
  }
  document.querySelectorAll('#gallery-filters button[data-filter]').forEach(function(btn){
    btn.addEventListener('click',function(){
      filter=btn.getAttribute('data-filter');
      document.querySelectorAll('#gallery-filters button[data-filter]').forEach(function(b){
        b.setAttribute('aria-pressed',b===btn?'true':'false');});
      apply();
    });
  });
  var sel=document.getElementById('gallery-model');
  if(sel){sel.addEventListener('change',function(){model=sel.value;apply();});}
  if(cards.length){apply();}
  var ref=document.getElementById('hm-ref');
  function deltas(){
    if(!ref){return;}
    var col=parseInt(ref.value,10);
    document.querySelectorAll('table.heat').forEach(function(table){
      table.querySelectorAll('thead th').forEach(function(th,i){
        if(i===0){return;}
        th.textContent=th.textContent.replace(/ \\(reference\\)$/,'')+(i-1===col?' (reference)':'');
      });
      table.querySelectorAll('tbody tr').forEach(function(tr){
        var cells=tr.querySelectorAll('td.hm'), base=cells[col]&&cells[col].getAttribute('data-acc');
        cells.forEach(function(td,i){
          var d=td.querySelector('.d'), a=td.getAttribute('data-acc');
          if(!d){return;}
          d.className='d'; d.textContent='';
          if(i===col||a===null||base===null||base===undefined){return;}
          var v=100*(parseFloat(a)-parseFloat(base));
          d.textContent=(v>=0?'+':'')+v.toFixed(2);
          if(v>0){d.className='d up';}else if(v<0){d.className='d down';}
        });
      });
    });
  }
  if(ref){ref.addEventListener('change',deltas);}
  document.querySelectorAll('button[data-tree]').forEach(function(btn){
    btn.addEventListener('click',function(){
      var open=btn.getAttribute('data-tree')==='open';
      document.querySelectorAll('#tree details').forEach(function(d){d.open=open;});
    });
  });
})();
"""
