"""The per-view charts as files in ``<run_dir>/plots/`` (for papers and slides): SVG and PNG.

This module owns only the files: what a chart shows and how it looks as SVG is ``charts.py``'s,
and the SVG written here is the very one report.html inlines. The PNG draws the same ``ViewChart``
data with Pillow, already a dependency: matplotlib, which drew it before, cost ~0.85 s of every
report (0.4 s of it importing itself); Pillow draws the four charts in ~0.05 s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from gmai_client.results.charts import CHANCE_COLOUR, ViewChart, render_svg, wrap_label
from gmai_client.results.report_format import slug

PLOTS_DIR = "plots"


def plot_path(run_dir: Path, chart: ViewChart, fmt: str) -> Path:
    return run_dir / PLOTS_DIR / f"accuracy_by_{slug(chart.view)}.{fmt}"


def write_svg_plots(run_dir: Path, charts: Sequence[ViewChart]) -> list[Path]:
    """One SVG file per view that has categories; none when no model has an answer key."""
    return _write(
        run_dir,
        charts,
        "svg",
        lambda chart, path: path.write_text(render_svg(chart, standalone=True) + "\n", encoding="utf-8"),
    )


def write_png_plots(run_dir: Path, charts: Sequence[ViewChart]) -> list[Path]:
    """One PNG file per view that has categories, drawn with Pillow (a dependency already)."""
    # Compression level 1: a chart compresses well anyway, four times faster than the default.
    return _write(run_dir, charts, "png", lambda chart, path: _draw(chart).save(path, compress_level=1))


def _write(
    run_dir: Path, charts: Sequence[ViewChart], fmt: str, save: Callable[[ViewChart, Path], object]
) -> list[Path]:
    written = []
    for chart in charts:
        if not chart.categories:
            continue
        path = plot_path(run_dir, chart, fmt)
        path.parent.mkdir(exist_ok=True)
        save(chart, path)
        written.append(path)
    return written


# Layout of the PNG, in pixels: the same parts as the SVG (title, legend, one band per category
# with a bar per model, the 0-100 % axis), drawn at twice the SVG's scale for slides.
_PX = 2
_W = 880 * _PX
_LABEL_W, _RIGHT = 300 * _PX, 56 * _PX
_X0, _X1 = _LABEL_W + 12 * _PX, _W - _RIGHT
_BAR = 9 * _PX  # one model's bar
_GAP = 6 * _PX  # between categories
_LINE = 13 * _PX
_TITLE, _LEGEND_ROW, _AXIS = 30 * _PX, 18 * _PX, 34 * _PX


def _draw(chart: ViewChart) -> PILImage.Image:
    """The chart of ``charts.render_svg`` as a raster: bars, 95% intervals, chance marks, legend."""
    font, small = ImageFont.load_default(11 * _PX), ImageFont.load_default(10 * _PX)
    labels = [wrap_label(name) for name in chart.categories]
    heights = [max(len(chart.series) * _BAR, len(lines) * _LINE) + _GAP for lines in labels]
    legend = [(s.colour, s.label) for s in chart.series] + [(CHANCE_COLOUR, "uniform guessing")]
    top = _TITLE + _LEGEND_ROW * (-(-len(legend) // 4)) + 8 * _PX
    image = PILImage.new("RGB", (_W, top + sum(heights) + _AXIS), "white")
    draw = ImageDraw.Draw(image)
    title = f"GMAI-MMBench accuracy by {chart.view}"
    draw.text((_W // 2, 8 * _PX), title, fill="black", font=ImageFont.load_default(14 * _PX), anchor="mt")
    for i, (fill, text) in enumerate(legend):
        x, y = _X0 + (i % 4) * 140 * _PX, _TITLE + (i // 4) * _LEGEND_ROW
        draw.rectangle((x, y, x + 12 * _PX, y + 10 * _PX), fill=fill)
        draw.text((x + 17 * _PX, y + 5 * _PX), text[:24], fill="black", font=small, anchor="lm")
    bottom = top + sum(heights)
    for tick in range(0, 101, 20):  # the grid first: bars are painted over it
        x = _X0 + (_X1 - _X0) * tick / 100
        draw.line((x, top, x, bottom), fill="#dddddd", width=_PX)
        draw.text((x, bottom + 6 * _PX), f"{tick}", fill="black", font=small, anchor="mt")
    draw.text(((_X0 + _X1) // 2, bottom + 20 * _PX), "accuracy (%), 95% Wilson interval", fill="black",
              font=small, anchor="mt")  # fmt: skip
    y = top
    for k, (lines, height) in enumerate(zip(labels, heights, strict=True)):
        if k % 2:
            draw.rectangle((0, y, _W, y + height - 1), fill="#f6f7f9")
        for n, line in enumerate(lines):
            draw.text((_LABEL_W, y + _GAP // 2 + n * _LINE), line, fill="black", font=font, anchor="ra")
        _draw_bars(draw, chart, k, y + _GAP // 2)
        y += height
    return image


def _draw_bars(draw: ImageDraw.ImageDraw, chart: ViewChart, k: int, y: float) -> None:
    def at(value: float) -> float:
        return _X0 + (_X1 - _X0) * value

    for i, series in enumerate(chart.series):
        bar = series.bars[k]
        if bar is None:
            continue
        top = y + i * _BAR
        draw.rectangle((_X0, top + _PX, at(bar.accuracy), top + _BAR - _PX), fill=series.colour)
        low, high = bar.ci_low, bar.ci_high
        if low is not None and high is not None:
            middle = top + _BAR / 2
            draw.line((at(low), middle, at(high), middle), fill="#333333", width=_PX)
            for end in (low, high):
                draw.line((at(end), middle - 3 * _PX, at(end), middle + 3 * _PX), fill="#333333", width=_PX)
    chance = chart.chance.get(chart.categories[k])
    if chance is not None:
        x = at(chance)
        for start in range(int(y), int(y + len(chart.series) * _BAR), 5 * _PX):  # dashed
            draw.line(
                (x, start, x, min(start + 3 * _PX, y + len(chart.series) * _BAR)), fill=CHANCE_COLOUR, width=2 * _PX
            )
