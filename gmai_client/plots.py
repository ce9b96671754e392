"""Accuracy charts as PNG and SVG files in ``<run_dir>/plots/`` (for papers and slides), and the
chance levels every chart marks.

This module owns ``chance_levels`` (pure Python, also used by the HTML report) and ``write_plots``
(matplotlib, Agg backend). matplotlib is an optional dependency (``pip install gmai-client[report]``):
it is imported inside ``write_plots`` only, so importing this module never needs it, and a missing
matplotlib surfaces as an ImportError the caller turns into a note instead of a failed run.

Charts are horizontal bars because category names are long ("Otolaryngology (ENT)/Head and Neck
Surgery"): horizontal bars give labels a full line each, and labels are wrapped rather than cut.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from gmai_client.metrics import VIEW_FIELDS, ModelMetrics
from gmai_client.types import Record

PLOTS_DIR = "plots"

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


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


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


def slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")


def wrap_label(text: str, width: int = 30, max_lines: int = 3) -> str:
    lines = textwrap.wrap(text, width) or [text]
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], textwrap.shorten(" ".join(lines[max_lines - 1 :]), width, placeholder="…")]
    return "\n".join(lines)


def write_plots(
    run_dir: Path,
    metrics: dict[str, ModelMetrics],
    chance: dict[str, dict[str, float]],
    *,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """One horizontal grouped bar chart per view, accuracy with 95% intervals and the chance level.

    Raises ImportError when matplotlib is missing. Models without an answer key have no accuracy
    and are left out; with none left, nothing is written.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display, no GUI toolkit: safe in servers and CI
    import matplotlib.pyplot as plt

    keyed = [label for label, m in metrics.items() if m.has_key]
    if not keyed:
        return []
    folder = run_dir / PLOTS_DIR
    folder.mkdir(exist_ok=True)
    written: list[Path] = []
    # Text stays text in the SVG: smaller files, selectable and searchable labels.
    with plt.rc_context({"svg.fonttype": "none", "font.size": 9, "svg.hashsalt": "gmai"}):
        for _, view in VIEW_FIELDS:
            names = sorted({name for label in keyed for name in metrics[label].groups[view]})
            if not names:
                continue
            fig = _view_figure(plt, view, names, keyed, metrics, chance.get(view, {}))
            base = folder / f"accuracy_by_{slug(view)}"
            for fmt in formats:
                path = base.with_suffix(f".{fmt}")
                # metadata Date=None keeps the SVG byte-stable between renders of the same run.
                fig.savefig(path, dpi=110, metadata={"Date": None} if fmt == "svg" else None)
                written.append(path)
            plt.close(fig)
    return written


def _view_figure(plt, view, names, labels, metrics, chance):  # type: ignore[no-untyped-def]
    n_models = len(labels)
    group = 0.8  # the height one category's bars share, in category units
    bar = group / n_models
    wrapped = [wrap_label(name) for name in names]
    rows_per_label = max(label.count("\n") + 1 for label in wrapped)
    widest = max(len(line) for label in wrapped for line in label.split("\n"))
    # The layout is computed here rather than by constrained layout or bbox_inches="tight": both
    # measure every text artist again on each savefig, which tripled the time a run spends on plots.
    legend_rows = -(-(n_models + 1) // 4)
    top_in = 0.45 + 0.2 * legend_rows  # title, then the legend rows
    bottom_in, left_in, right_in = 0.5, 0.35 + 0.07 * widest, 0.3
    # Tall enough for the bars and for wrapped labels, whichever needs more.
    per_category = max(0.2 * n_models + 0.1, 0.16 * rows_per_label + 0.1, 0.32)
    plot_in = per_category * len(names)
    width, height = 9.0, min(top_in + bottom_in + plot_in, 160.0)
    fig, ax = plt.subplots(figsize=(width, height))
    fig.subplots_adjust(
        left=left_in / width, right=1 - right_in / width, top=1 - top_in / height, bottom=bottom_in / height
    )
    # Categories top to bottom in alphabetical order, as in the tables.
    y_of = {name: len(names) - 1 - i for i, name in enumerate(names)}
    for i, label in enumerate(labels):
        groups = metrics[label].groups[view]
        ys, widths, lows, highs = [], [], [], []
        for name in names:
            stats = groups.get(name)
            if stats is None or stats.accuracy is None:
                continue
            y = y_of[name] + group / 2 - bar * (i + 0.5)
            acc = 100 * stats.accuracy
            ys.append(y)
            widths.append(acc)
            # max(0, ...): at 0% or 100% the interval's end equals the value up to rounding, and
            # matplotlib rejects an error bar of -1e-15.
            lows.append(max(0.0, acc - 100 * (stats.ci_low if stats.ci_low is not None else stats.accuracy)))
            highs.append(max(0.0, 100 * (stats.ci_high if stats.ci_high is not None else stats.accuracy) - acc))
        ax.barh(
            ys,
            widths,
            height=bar * 0.9,
            color=colour(i),
            xerr=[lows, highs],
            error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#333333"},
            label=label,
        )
    marked = [name for name in names if name in chance]
    if marked:
        ax.vlines(
            [100 * chance[name] for name in marked],
            [y_of[name] - group / 2 for name in marked],
            [y_of[name] + group / 2 for name in marked],
            colors=CHANCE_COLOUR,
            linestyles="--",
            linewidth=1.2,
            label="uniform guessing",
        )
    ax.set_yticks([y_of[name] for name in names])
    ax.set_yticklabels(wrapped)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy (%), 95% Wilson interval")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    fig.suptitle(f"GMAI-MMBench accuracy by {view}", y=1 - 0.08 / height, va="top", fontsize=11)
    # Above the axes, outside them: a legend inside would cover bars of some category.
    fig.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.36 / height),
        ncol=min(4, n_models + 1),
        fontsize=8,
        frameon=False,
    )
    return fig
