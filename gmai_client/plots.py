"""The per-view charts as files in ``<run_dir>/plots/`` (for papers and slides): SVG always, PNG
when matplotlib is installed.

This module owns only the files: what a chart shows and how it looks as SVG is ``charts.py``'s,
and the SVG written here is the very one report.html inlines. A PNG needs a rasteriser, so the same
``ViewChart`` data is drawn with matplotlib (Agg), an optional dependency (``pip install
gmai-client[report]``) imported inside ``write_png_plots`` only: importing this module never needs
it, and a missing matplotlib is an ImportError the caller turns into a note.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gmai_client.charts import CHANCE_COLOUR, ViewChart, render_svg, wrap_label
from gmai_client.report_format import slug

PLOTS_DIR = "plots"


def plot_path(run_dir: Path, chart: ViewChart, fmt: str) -> Path:
    return run_dir / PLOTS_DIR / f"accuracy_by_{slug(chart.view)}.{fmt}"


def write_svg_plots(run_dir: Path, charts: Sequence[ViewChart]) -> list[Path]:
    """One SVG file per view that has categories; none when no model has an answer key."""
    written = []
    for chart in charts:
        if not chart.categories:
            continue
        path = plot_path(run_dir, chart, "svg")
        path.parent.mkdir(exist_ok=True)
        path.write_text(render_svg(chart, standalone=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


def write_png_plots(run_dir: Path, charts: Sequence[ViewChart]) -> list[Path]:
    """One PNG file per view that has categories. Raises ImportError when matplotlib is missing."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display, no GUI toolkit: safe in servers and CI
    from matplotlib.figure import Figure  # not pyplot: no global figure registry to clean up

    written = []
    with matplotlib.rc_context({"font.size": 9}):
        for chart in charts:
            if not chart.categories:
                continue
            path = plot_path(run_dir, chart, "png")
            path.parent.mkdir(exist_ok=True)
            _figure(Figure, chart).savefig(path, dpi=110)
            written.append(path)
    return written


def _figure(figure_class: Any, chart: ViewChart) -> Any:
    """The chart of ``charts.render_svg`` drawn by matplotlib: bars, intervals, chance marks, legend."""
    names = chart.categories
    n_models = len(chart.series)
    wrapped = ["\n".join(wrap_label(name, 30)) for name in names]
    rows_per_label = max(label.count("\n") + 1 for label in wrapped)
    widest = max(len(line) for label in wrapped for line in label.split("\n"))
    # The layout is computed here rather than by constrained layout or bbox_inches="tight": both
    # measure every text artist again on each savefig, which tripled the time a run spends on plots.
    legend_rows = -(-(n_models + 1) // 4)
    top_in = 0.45 + 0.2 * legend_rows  # title, then the legend rows
    bottom_in, left_in, right_in = 0.5, 0.35 + 0.07 * widest, 0.3
    # Tall enough for the bars and for wrapped labels, whichever needs more.
    per_category = max(0.2 * n_models + 0.1, 0.16 * rows_per_label + 0.1, 0.32)
    width, height = 9.0, min(top_in + bottom_in + per_category * len(names), 160.0)
    fig = figure_class(figsize=(width, height))
    fig.subplots_adjust(
        left=left_in / width, right=1 - right_in / width, top=1 - top_in / height, bottom=bottom_in / height
    )
    ax = fig.subplots()
    _draw_bars(ax, chart)
    ax.set_yticks([len(names) - 1 - i for i in range(len(names))])
    ax.set_yticklabels(wrapped)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy (%), 95% Wilson interval")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    fig.suptitle(f"GMAI-MMBench accuracy by {chart.view}", y=1 - 0.08 / height, va="top", fontsize=11)
    # Above the axes, outside them: a legend inside would cover bars of some category.
    legend_at = (0.5, 1 - 0.36 / height)
    fig.legend(loc="upper center", bbox_to_anchor=legend_at, ncol=min(4, n_models + 1), fontsize=8, frameon=False)
    return fig


def _draw_bars(ax: Any, chart: ViewChart) -> None:
    group = 0.8  # the height one category's bars share, in category units
    bar_h = group / len(chart.series)
    top = len(chart.categories) - 1  # categories top to bottom, as in the tables
    for i, series in enumerate(chart.series):
        ys, widths, lows, highs = [], [], [], []
        for k, bar in enumerate(series.bars):
            if bar is None:
                continue
            acc = 100 * bar.accuracy
            ys.append(top - k + group / 2 - bar_h * (i + 0.5))
            widths.append(acc)
            # max(0, ...): at 0% or 100% the interval's end equals the value up to rounding, and
            # matplotlib rejects an error bar of -1e-15.
            lows.append(max(0.0, acc - 100 * (bar.ci_low if bar.ci_low is not None else bar.accuracy)))
            highs.append(max(0.0, 100 * (bar.ci_high if bar.ci_high is not None else bar.accuracy) - acc))
        ax.barh(
            ys,
            widths,
            height=bar_h * 0.9,
            color=series.colour,
            xerr=[lows, highs],
            error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#333333"},
            label=series.label,
        )
    marked = [k for k, name in enumerate(chart.categories) if name in chart.chance]
    if marked:
        ax.vlines(
            [100 * chart.chance[chart.categories[k]] for k in marked],
            [top - k - group / 2 for k in marked],
            [top - k + group / 2 for k in marked],
            colors=CHANCE_COLOUR,
            linestyles="--",
            linewidth=1.2,
            label="uniform guessing",
        )
