"""The per-view accuracy charts: what they show, and their drawing as SVG in pure Python.

Owns the chart data (``ViewChart``: for one view of ``metrics.VIEW_FIELDS``, each keyed model's
accuracy per category with its 95% interval, and the uniform-guessing level), built once from the
metrics by ``view_charts``, and ``render_svg``, which draws it. report.html inlines the SVG;
plots.py writes the same SVG to plots/ and draws the same data as a PNG. Also the chance levels
and the series colours that every chart and report uses.

Bars are horizontal because category names are long ("Otolaryngology (ENT)/Head and Neck
Surgery"): each label gets full lines and is wrapped rather than cut. Styling is written as
presentation attributes rather than CSS classes, so that the SVG looks the same inline in the page
and opened as a file.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gmai_client.protocol.metrics import VIEW_FIELDS, GroupStats, ModelMetrics
from gmai_client.results.report_format import esc, pct, slug
from gmai_client.types import Record

#: Series colours (Okabe-Ito first: distinguishable with the common colour-vision deficiencies),
#: then more for runs with up to 12 models; beyond that colours repeat and the legend disambiguates.
PALETTE: tuple[str, ...] = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
    "#7F7F7F",
    "#8C564B",
    "#9467BD",
    "#17BECF",
)
CHANCE_COLOUR = "#B00020"
FONT = "system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif"

# Layout, in SVG user units (px at 100%): the labels' column, then the 0-100% axis.
_WIDTH, _LABEL_W, _RIGHT = 880, 300, 56
_X0, _X1 = _LABEL_W + 12, _WIDTH - _RIGHT
_SCALE = (_X1 - _X0) / 100
_LINE = 13  # height of one line of a category label
_LABEL_CHARS, _LABEL_LINES = 44, 3
_LEGEND_CHARS = 40


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


@dataclass(frozen=True)
class Bar:
    """One model's accuracy in one category."""

    accuracy: float
    ci_low: float | None
    ci_high: float | None
    correct: int
    keyed: int  # the accuracy's denominator


@dataclass(frozen=True)
class Series:
    """One model's bars, one per category of the chart (None: no keyed item of it there)."""

    label: str
    colour: str
    bars: tuple[Bar | None, ...]


@dataclass(frozen=True)
class ViewChart:
    """Accuracy by one view: categories top to bottom in alphabetical order, as in the tables."""

    view: str
    categories: tuple[str, ...]
    series: tuple[Series, ...]
    chance: Mapping[str, float]  # category -> expected accuracy of uniform guessing


# --- the data ----------------------------------------------------------------------------------


def usable_records(records: Iterable[Record]) -> list[Record]:
    """Records that belong to a group: metrics drops unreadable rows from the groups, so do we."""
    return [r for r in records if not (r.status == "error" and r.error_kind == "bad_row")]


def chance_levels(records: Iterable[Record]) -> tuple[float | None, dict[str, dict[str, float]]]:
    """Expected accuracy of uniform guessing: overall, and per view -> category.

    The mean over the distinct items of 1/len(options) (one guessed letter). Items are counted once
    however many models answered them, so the level does not depend on the number of models.
    """
    items: dict[str, Record] = {}
    for record in usable_records(records):
        if record.options:
            items.setdefault(record.index, record)
    overall = [1 / len(r.options) for r in items.values()]
    per_view: dict[str, dict[str, float]] = {}
    for attribute, view in VIEW_FIELDS:
        buckets: dict[str, list[float]] = defaultdict(list)
        for record in items.values():
            buckets[getattr(record, attribute) or "(none)"].append(1 / len(record.options))
        per_view[view] = {name: sum(values) / len(values) for name, values in buckets.items()}
    return (sum(overall) / len(overall) if overall else None), per_view


def view_charts(metrics: Mapping[str, ModelMetrics], chance: Mapping[str, Mapping[str, float]]) -> list[ViewChart]:
    """One chart per view, of the models with an answer key (none: no charts).

    A model keeps the colour of its place among all the run's models, as in the page's swatches.
    """
    keyed = [(i, label) for i, label in enumerate(metrics) if metrics[label].has_key]
    if not keyed:
        return []
    charts = []
    for _, view in VIEW_FIELDS:
        names = tuple(sorted({name for _, label in keyed for name in metrics[label].groups[view]}))
        series = tuple(
            Series(label, colour(i), tuple(_bar(metrics[label].groups[view].get(name)) for name in names))
            for i, label in keyed
        )
        charts.append(ViewChart(view, names, series, dict(chance.get(view, {}))))
    return charts


def _bar(stats: GroupStats | None) -> Bar | None:
    if stats is None or stats.accuracy is None:
        return None
    return Bar(stats.accuracy, stats.ci_low, stats.ci_high, stats.correct, stats.keyed)


def wrap_label(text: str, width: int = _LABEL_CHARS, max_lines: int = _LABEL_LINES) -> list[str]:
    """A category name in lines of at most ``width`` characters; past ``max_lines`` the rest is cut."""
    lines = textwrap.wrap(text, width) or [text]
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], textwrap.shorten(" ".join(lines[max_lines - 1 :]), width, placeholder="…")]
    return lines


# --- the drawing -------------------------------------------------------------------------------


def render_svg(chart: ViewChart, *, standalone: bool = False) -> str:
    """The chart as an SVG element; ``standalone`` adds what a file needs (namespace, background,
    a visible title) where the page has its own heading."""
    head = 26 if standalone else 0
    legend, top = _legend(chart.series, head)
    stripes, groups, y = [], [], top
    for k in range(len(chart.categories)):
        stripe, group, height = _category(chart, k, y)
        stripes.append(stripe)
        groups.append(group)
        y += height
    bottom = y
    height = bottom + 34
    sid = slug(chart.view)
    labels = ", ".join(s.label for s in chart.series)
    summary = (
        f"Horizontal bar chart of accuracy by {chart.view} for {labels}, {len(chart.categories)} categories, "
        "with 95% intervals and the uniform-guessing level; the same numbers are in the table below the chart."
    )
    title = f"Accuracy by {chart.view}"
    extra = (
        f' height="{height}" xmlns="http://www.w3.org/2000/svg"><rect width="100%" height="100%" fill="#fff"/>'
        f'<text x="{_WIDTH / 2:.0f}" y="18" text-anchor="middle" font-size="14">GMAI-MMBench accuracy by '
        f"{esc(chart.view)}</text>"
        if standalone
        else ">"
    )
    return (
        f'<svg viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" role="img" '
        f'aria-labelledby="chart-{sid}-t chart-{sid}-d" aria-label="{esc(summary)}" '
        f'font-family="{FONT}" font-size="11"{extra}'
        f'<title id="chart-{sid}-t">{esc(title)}</title><desc id="chart-{sid}-d">{esc(summary)}</desc>'
        + legend
        + "".join(stripes)  # painted first: stripes, then grid lines, then bars on top
        + _axis(top, bottom)
        + "".join(groups)
        + "</svg>"
    )


def _legend(series: Sequence[Series], y0: int) -> tuple[str, int]:
    """The legend, wrapped into rows above the plot; returns it and where the plot starts."""
    parts: list[str] = []
    x, y = _X0, y0 + 14
    entries = [(s.colour, s.label, True) for s in series] + [(CHANCE_COLOUR, "uniform guessing", False)]
    for fill, text, is_bar in entries:
        width = 26 + 6.6 * min(len(text), _LEGEND_CHARS)
        if x + width > _WIDTH - 8 and x > _X0:
            x, y = _X0, y + 18
        mark = (
            f'<rect x="{x:.0f}" y="{y - 9}" width="12" height="10" fill="{fill}"/>'
            if is_bar
            else f'<line x1="{x + 6:.0f}" x2="{x + 6:.0f}" y1="{y - 11}" y2="{y + 3}" stroke="{fill}" '
            'stroke-width="2" stroke-dasharray="3 2"/>'
        )
        parts.append(f'{mark}<text x="{x + 17:.0f}" y="{y}">{esc(_cut(text, _LEGEND_CHARS))}</text>')
        x += width
    return "".join(parts), y + 14


def _bar_height(n_series: int) -> int:
    return 14 if n_series <= 2 else 10 if n_series <= 4 else 7 if n_series <= 7 else 5


def _category(chart: ViewChart, k: int, y: float) -> tuple[str, str, float]:
    """Row ``k``: its background stripe, its label, bars and chance mark, and its height."""
    name = chart.categories[k]
    n = len(chart.series)
    bar_h = _bar_height(n)
    lines = wrap_label(name)
    height = max(n * bar_h + 8, _LINE * len(lines) + 8)
    stripe = f'<rect x="0" y="{y}" width="{_WIDTH}" height="{height}" fill="#f6f7f9"/>' if k % 2 == 0 else ""
    text_y = y + height / 2 - _LINE * (len(lines) - 1) / 2 + 4
    tspans = "".join(
        f'<tspan x="{_LABEL_W}" y="{text_y + _LINE * j:.1f}">{esc(line)}</tspan>' for j, line in enumerate(lines)
    )
    parts = [f'<text class="cat" text-anchor="end" fill="#222"><title>{esc(name)}</title>{tspans}</text>']
    bars_top = y + (height - n * bar_h) / 2
    for i, series in enumerate(chart.series):
        bar = series.bars[k]
        if bar is not None:
            parts.append(_bar_svg(bar, series, name, bars_top + i * bar_h, bar_h, show_value=n <= 3))
    if name in chart.chance:
        cx = _X0 + 100 * chart.chance[name] * _SCALE
        parts.append(
            f'<line class="chance" x1="{cx:.1f}" x2="{cx:.1f}" y1="{y + 2}" y2="{y + height - 2}" '
            f'stroke="{CHANCE_COLOUR}" stroke-width="2" stroke-dasharray="4 2">'
            f"<title>{esc(name)}: uniform guessing {pct(chart.chance[name])}%</title></line>"
        )
    return stripe, "".join(parts), height


def _bar_svg(bar: Bar, series: Series, name: str, y: float, bar_h: int, *, show_value: bool) -> str:
    tip = (
        f"{series.label} — {name}: {pct(bar.accuracy)}% (95% interval {pct(bar.ci_low, 1)}–{pct(bar.ci_high, 1)}), "
        f"{bar.correct}/{bar.keyed} correct"
    )
    parts = [
        f'<g><title>{esc(tip)}</title><rect x="{_X0}" y="{y:.1f}" width="{bar.accuracy * 100 * _SCALE:.1f}" '
        f'height="{bar_h - 1}" fill="{series.colour}"/>'
    ]
    if bar.ci_low is not None and bar.ci_high is not None:
        low, high, cy = _X0 + 100 * bar.ci_low * _SCALE, _X0 + 100 * bar.ci_high * _SCALE, y + (bar_h - 1) / 2
        cap = min(3, (bar_h - 1) / 2)
        parts.append(
            f'<path class="ci" stroke="#222" stroke-width="1" fill="none" d="M{low:.1f} {cy:.1f}H{high:.1f}'
            f'M{low:.1f} {cy - cap:.1f}V{cy + cap:.1f}M{high:.1f} {cy - cap:.1f}V{cy + cap:.1f}"/>'
        )
        if show_value:  # values in a column right of 100%: readable, and clear of the whiskers
            parts.append(
                f'<text x="{_X1 + 8:.1f}" y="{cy + 3.5:.1f}" fill="#333" font-size="10">{pct(bar.accuracy, 1)}</text>'
            )
    parts.append("</g>")
    return "".join(parts)


def _axis(top: float, bottom: float) -> str:
    """Grid lines every 25% with their ticks, and the axis title."""
    parts = []
    for tick in range(0, 101, 25):
        x = _X0 + tick * _SCALE
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" stroke="#d5d5d5" stroke-width="1"/>'
            f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle" fill="#444" font-size="10">{tick}%</text>'
        )
    parts.append(
        f'<text x="{(_X0 + _X1) / 2:.0f}" y="{bottom + 30}" text-anchor="middle" fill="#444" font-size="10">'
        "accuracy (%), 95% Wilson interval</text>"
    )
    return "".join(parts)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
