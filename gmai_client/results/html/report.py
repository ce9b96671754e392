"""report.html, the run folder's one-file visual report, and ``write_visual_reports``, the report tail
that writes it with the chart files.

This module owns the page's frame (head, navigation, the order of its sections) and the tail: the
charts' data is built once (charts.py) and both drawn into the page and written to plots/
(plots.py); the gallery's questions and thumbnails are read from the data files (gallery_items.py).
Each section is a function of a ``html_page.Page`` in a module of its own: headline, views and
heatmap (html_results), the lexical tree (html_tree), the paper's figures (html_paper), the gallery
(html_gallery), configuration and versions (html_run).

The page is self-contained so that it can be mailed as one file and opened offline from file://: the
CSS and JavaScript (package data: ``data/report.css``, ``data/report.js``) are inlined, images are
data URIs, and a Content-Security-Policy forbids every fetch, so even a mistake here cannot make the
browser reach the network. Everything important is readable without JavaScript: numbers are in
<table>s, the tree is <details>/<summary>, and the gallery shows every card; the script only adds
the gallery filters, the heatmap's reference choice and tree expand/collapse buttons.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from gmai_client.protocol.metrics import Comparison, ModelMetrics
from gmai_client.results.charts import ViewChart
from gmai_client.results.html.gallery import gallery, select_gallery
from gmai_client.results.html.gallery_items import GalleryItems, data_files, load_gallery_items, row_places
from gmai_client.results.html.page import Page, build_page, palette_css
from gmai_client.results.html.paper import paper
from gmai_client.results.html.results import headline, heatmap, views
from gmai_client.results.html.run import run_info
from gmai_client.results.html.tree import tree
from gmai_client.results.plots import PLOTS_DIR, write_png_plots, write_svg_plots
from gmai_client.results.report_format import esc
from gmai_client.results.rundir import COMPARE_FILE, RunFigures, SavedConfig, read_config
from gmai_client.types import Record

if TYPE_CHECKING:
    from rich.console import Console

REPORT_FILE = "report.html"
# Nothing may be fetched: styles and scripts are inline, images are data: URIs.
_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)
_SECTIONS: tuple[tuple[str, str, Callable[[Page], str]], ...] = (
    ("headline", "Headline", headline),
    ("views", "Accuracy by view", views),
    ("heatmap", "Models × categories", heatmap),
    ("tree", "Lexical tree", tree),
    ("paper", "Published figures", paper),
    ("gallery", "Items", gallery),
)
_RUN_SECTION = ("run", "Configuration, versions, timings")


# --- the report tail, used by report.write_reports -----------------------------------------------


def write_visual_reports(
    run_dir: Path,
    records: Sequence[Record],
    metrics: dict[str, ModelMetrics],
    comparison: Comparison | None,
    *,
    figures: RunFigures | None = None,
    console: Console | None = None,
    gallery: GalleryItems | None = None,
    notes: Sequence[str] = (),
) -> list[Path]:
    """Write the chart files (SVG and PNG) and report.html (``notes`` at its top); return the paths.

    Never fails the run: the records and metrics are already on disk, so an unreadable data file
    or a bug here becomes a printed note (and a note in the page), not an error.
    """
    page = build_page(run_dir, records, metrics, comparison, saved=read_config(run_dir), figures=figures)
    # The gallery's rows are read by their offsets and decoded in threads that release the GIL:
    # the plots are drawn meanwhile (with a scan of the whole file, that overlap did not pay).
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_gallery_items, page, gallery)
        written, failures = _write_plots(run_dir, page.charts)
        items, note = pending.result()
    failures += [note] if note else []
    page = replace(page, thumbnails=items.thumbnails, questions=items.questions)
    try:
        written.append(_write_page(page, written, [*notes, *failures]))
    except Exception as exc:
        failures.append(f"report.html was not written: {type(exc).__name__}: {exc}")
    if console is not None:
        from rich.markup import escape as markup_escape  # "[report]" in a note is text, not a style

        for note in failures:
            console.print(f"[yellow]{markup_escape(note)}", highlight=False)
    return written


def _write_plots(run_dir: Path, charts: Sequence[ViewChart]) -> tuple[list[Path], list[str]]:
    written: list[Path] = []
    notes: list[str] = []
    try:
        written += write_svg_plots(run_dir, charts)
        written += write_png_plots(run_dir, charts)
    except Exception as exc:  # a plotting failure must not lose the HTML report
        notes.append(f"Plots were not all written: {type(exc).__name__}: {exc}")
    return written, notes


def _gallery_items(page: Page, made: GalleryItems | None = None) -> tuple[GalleryItems, str]:
    """The gallery's questions and thumbnails, and a note when they are (all) unavailable. ``made``:
    what a ``ThumbnailCollector`` made during the run; only the rest is read back here."""
    chosen = select_gallery(page.records, page.labels)
    made = made or GalleryItems()
    done = {index for index in chosen if index in made.thumbnails and index in made.questions}
    wanted = [index for index in chosen if index not in done]
    if not wanted:
        return _only(made, chosen), ""
    unavailable = "Gallery thumbnails and questions unavailable"
    paths = data_files(page.saved.data_files if page.saved else (), page.records)
    if not paths:
        return GalleryItems(), f"{unavailable}: the run's data files are not known."
    try:
        items = load_gallery_items(paths, wanted, at=row_places(page.records, wanted))
    except Exception as exc:  # a moved or unreadable data file costs the thumbnails only
        return _only(made, chosen), f"{unavailable}: {type(exc).__name__}: {exc}"
    merged = GalleryItems({**made.thumbnails, **items.thumbnails}, {**made.questions, **items.questions})
    if not merged.questions:
        return merged, f"{unavailable}: the items were not found in " + ", ".join(str(p) for p in paths)
    return _only(merged, chosen), ""


def _only(items: GalleryItems, indexes: Sequence[str]) -> GalleryItems:
    keep = set(indexes)
    thumbnails = {i: uri for i, uri in items.thumbnails.items() if i in keep}
    return GalleryItems(thumbnails, {i: q for i, q in items.questions.items() if i in keep})


# --- the page ------------------------------------------------------------------------------------


def write_html_report(
    run_dir: Path,
    records: Sequence[Record],
    metrics: dict[str, ModelMetrics],
    comparison: Comparison | None,
    *,
    saved: SavedConfig | None = None,
    figures: RunFigures | None = None,
    thumbnails: dict[str, str] | None = None,
    questions: dict[str, str] | None = None,
    plot_files: Sequence[Path] = (),
    notes: Sequence[str] = (),
) -> Path:
    """Write ``<run_dir>/report.html`` and return its path.

    ``saved`` is the run folder's config.json (already redacted; redacted again here all the same),
    ``figures`` what only the run knew (timings, interruption). ``thumbnails`` maps an item
    index to a JPEG data URI (``gallery_items.thumbnail``) and ``questions`` to its question text;
    without them the gallery shows neither.
    """
    page = build_page(
        run_dir, records, metrics, comparison, saved=saved, figures=figures, thumbnails=thumbnails, questions=questions
    )
    return _write_page(page, plot_files, notes)


def _write_page(page: Page, plot_files: Sequence[Path], notes: Sequence[str]) -> Path:
    path = page.run_dir / REPORT_FILE
    path.write_text(render_page(page, plot_files, notes), encoding="utf-8")
    return path


def render_page(page: Page, plot_files: Sequence[Path] = (), notes: Sequence[str] = ()) -> str:
    """The whole page as text: head, header with navigation, notes, then every section."""
    sections = [(sid, title, render(page)) for sid, title, render in _SECTIONS]
    sections.append((*_RUN_SECTION, run_info(page, [p for p in plot_files if p.parent.name == PLOTS_DIR])))
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
    title = f"GMAI-MMBench report: {page.run_dir.name}"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'  # or the browser asks for /favicon.ico
        f"<title>{esc(title)}</title>\n<style>{asset('report.css')}{palette_css()}</style>\n</head>\n<body>\n"
        f'<header><h1>{esc(title)}</h1>\n<p class="sub">{_subtitle(page)}</p>\n'
        f'<nav aria-label="Sections">{nav}</nav></header>\n<main>\n{note_html}\n{body}\n</main>\n'
        f"<script>{asset('report.js')}</script>\n</body>\n</html>\n"
    )


def _subtitle(page: Page) -> str:
    saved = page.saved
    n = len(page.labels)
    parts = [f"{n} model{'s' if n != 1 else ''}"]
    if saved is None and (page.run_dir / COMPARE_FILE).exists():  # a comparison: its runs are listed below
        parts.append("runs compared on the items they share (the runs: under Configuration)")
    else:
        data = ", ".join(Path(str(f)).name for f in (saved.data_files if saved else ())) or "unknown data"
        select = (saved.setting("select") if saved else None) or []
        parts.append(f"data: {data}")
        parts.append("selection: " + " ∪ ".join(select) if select else "selection: all items")
    if saved is not None and saved.setting("limit") is not None:
        parts.append(f"limit {saved.setting('limit')}")
    if saved is not None and saved.first_started:
        parts.append(f"started {saved.first_started}")
    parts.append(f"report written {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    return esc(" · ".join(parts))


@cache
def asset(name: str) -> str:
    """A static file of the page (``data/report.css``, ``data/report.js``), checked to be inlinable."""
    text = resources.files("gmai_client").joinpath(f"data/{name}").read_text(encoding="utf-8")
    if "</" in text:  # "</style" or "</script" would end the inline element early
        raise ValueError(f"data/{name} cannot be inlined: it contains '</'")
    return text
