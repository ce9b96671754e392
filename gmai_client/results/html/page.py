"""What every section of report.html reads (``Page``, built once per page) and the small HTML pieces
they share: tables, colour swatches, heatmap cells.

Sections are functions of a ``Page`` that return HTML; each lives in its own module
(html_results, html_tree, html_paper, html_gallery, html_run) and html_report puts them together.
Every string that comes from data goes through ``report_format.esc``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gmai_client.protocol.metrics import Comparison, ModelMetrics
from gmai_client.results.charts import PALETTE, ViewChart, chance_levels, view_charts
from gmai_client.results.report_format import esc
from gmai_client.results.rundir import RunFigures, SavedConfig
from gmai_client.types import Record


@dataclass(frozen=True)
class Page:
    """A run's figures as the page shows them. Built by ``build_page``; sections only read it."""

    run_dir: Path
    records: list[Record]  # of the models in ``metrics`` only
    metrics: dict[str, ModelMetrics]
    comparison: Comparison | None
    saved: SavedConfig | None  # config.json (None for a hand-made folder)
    figures: RunFigures  # what only the run knew: timings, interruption, per-model counts
    labels: list[str]  # every model, in the run's order
    keyed: list[str]  # the models with an answer key
    by_model: dict[str, list[Record]]
    chance_overall: float | None
    chance: dict[str, dict[str, float]]  # view -> category -> uniform guessing level
    charts: list[ViewChart]  # one per view; empty when no model has a key
    thumbnails: Mapping[str, str]  # item index -> JPEG data URI (gallery items only)
    questions: Mapping[str, str]  # item index -> question text (gallery items only)
    every: Sequence[Record] = ()  # every record given, other streams too (``--epochs``): what completeness counts


def build_page(
    run_dir: Path,
    records: Sequence[Record],
    metrics: dict[str, ModelMetrics],
    comparison: Comparison | None,
    *,
    saved: SavedConfig | None = None,
    figures: RunFigures | None = None,
    thumbnails: Mapping[str, str] | None = None,
    questions: Mapping[str, str] | None = None,
) -> Page:
    mine = [r for r in records if r.model in metrics]
    by_model: dict[str, list[Record]] = defaultdict(list)
    for record in mine:
        by_model[record.model].append(record)
    chance_overall, chance = chance_levels(mine)
    return Page(
        run_dir=run_dir,
        records=mine,
        metrics=metrics,
        comparison=comparison,
        saved=saved,
        figures=figures or RunFigures(),
        labels=list(metrics),
        keyed=[label for label, m in metrics.items() if m.has_key],
        by_model=by_model,
        chance_overall=chance_overall,
        chance=chance,
        charts=view_charts(metrics, chance),
        thumbnails=thumbnails or {},
        questions=questions or {},
        every=list(records),
    )


def table(header: Sequence[str], rows: Sequence[str], *, caption: str = "", cls: str = "", head: bool = True) -> str:
    """A scrollable table of ready ``<tr>`` rows; header cells are escaped here."""
    thead = "<thead><tr>" + "".join(f'<th scope="col">{esc(h)}</th>' for h in header) + "</tr></thead>" if head else ""
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    klass = f' class="{cls}"' if cls else ""
    return f'<div class="tablewrap"><table{klass}>{cap}{thead}<tbody>{"".join(rows)}</tbody></table></div>'


def swatch(i: int) -> str:
    """The colour square of the ``i``-th model (its chart colour)."""
    return f'<span class="sw c{i % len(PALETTE)}" aria-hidden="true"></span>'


def palette_css() -> str:
    """``.cN{--c:colour}`` for the swatches and the tree's accuracies, from the charts' palette."""
    return "".join(f".c{i}{{--c:{c}}}" for i, c in enumerate(PALETTE))


def heat_style(acc: float | None) -> str:
    """A heatmap cell's background: darker blue for higher accuracy, text kept readable."""
    if acc is None:
        return ""
    lightness = 96 - 50 * acc
    text = "#fff" if lightness < 60 else "#111"
    return f' style="background:hsl(212,65%,{lightness:.0f}%);color:{text}"'
