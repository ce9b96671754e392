"""charts (the per-view chart data and its SVG) and plots (the same charts as files in plots/)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gmai_client.protocol.metrics import VIEW_FIELDS, compute_metrics
from gmai_client.results.charts import CHANCE_COLOUR, PALETTE, chance_levels, render_svg, view_charts, wrap_label
from gmai_client.results.plots import write_png_plots, write_svg_plots
from gmai_client.types import Record

SVG = "{http://www.w3.org/2000/svg}"


LONG = "Otolaryngology (ENT)/Head and Neck Surgery <&> and a few more words to wrap onto three lines at least"


def record(index: int, model: str, correct: bool | None) -> Record:
    """Items 0-1: Urology with two options; items 2-3: a department whose name must be escaped and wrapped."""
    letters = "AB" if index < 2 else "ABCD"
    return Record(
        index=str(index),
        model=model,
        status="ok",
        prediction="A" if correct else "B",
        letters=("A",) if correct else ("B",),
        answer=("A",) if correct is not None else None,
        correct=correct,
        options=tuple((letter, f"option {letter}") for letter in letters),
        task="Counting",
        department="Urology" if index < 2 else LONG,
        granularity="Image Level",
        modality="CT",
        category="leaf",
    )


def records() -> list[Record]:
    """A keyless model first (a TEST-style label), then two keyed ones."""
    rows = [record(i, "test-split", None) for i in range(4)]
    rows += [record(i, "a", i % 2 == 0) for i in range(4)]
    return rows + [record(i, "b", True) for i in range(4)]


def test_chart_data_per_view_of_the_keyed_models() -> None:
    rows = records()
    metrics = compute_metrics(rows)
    overall, chance = chance_levels(rows)
    assert overall == pytest.approx((2 * 0.5 + 2 * 0.25) / 4)  # per distinct item, not per answer
    charts = view_charts(metrics, chance)
    assert [c.view for c in charts] == [view for _, view in VIEW_FIELDS]
    department = charts[1]
    assert department.categories[-1] == "Urology" and len(department.categories) == 2
    # The keyless model has no series, and the others keep the colour of their place in the run.
    assert [(s.label, s.colour) for s in department.series] == [("a", PALETTE[1]), ("b", PALETTE[2])]
    urology = department.series[0].bars[1]
    assert urology is not None and (urology.accuracy, urology.correct, urology.keyed) == (0.5, 1, 2)
    assert department.chance["Urology"] == 0.5
    no_key = compute_metrics([r for r in rows if r.model == "test-split"])
    assert view_charts(no_key, chance) == []


def test_svg_is_well_formed_and_carries_every_number() -> None:
    rows = records()
    metrics = compute_metrics(rows)
    chart = view_charts(metrics, chance_levels(rows)[1])[1]
    root = ET.fromstring(render_svg(chart, standalone=True))
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert "GMAI-MMBench accuracy by department" in texts
    assert any(t.startswith("Otolaryngology (ENT)/Head and Neck") for t in texts)  # wrapped, kept as text
    tips = [t.text or "" for t in root.iter(f"{SVG}title")]
    assert "a — Urology: 50.00% (95% interval 9.5–90.5), 1/2 correct" in tips
    assert sum(1 for line in root.iter(f"{SVG}line") if line.get("stroke") == CHANCE_COLOUR) == 1 + 2  # legend + 2
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("fill") in PALETTE and r.get("height") != "10"]
    assert len(bars) == 4  # two models x two departments
    inline = render_svg(chart)
    assert inline.startswith('<svg viewBox="0 0') and "xmlns" not in inline and "&lt;&amp;&gt;" in inline


def test_wrap_label_cuts_after_the_last_line() -> None:
    assert wrap_label("short") == ["short"]
    lines = wrap_label("word " * 40, width=20, max_lines=3)
    assert len(lines) == 3 and lines[-1].endswith("…") and all(len(line) <= 20 for line in lines)


def test_plot_files_are_the_page_svg_and_a_png(tmp_path: Path) -> None:
    rows = records()
    charts = view_charts(compute_metrics(rows), chance_levels(rows)[1])
    svgs = write_svg_plots(tmp_path, charts)
    assert [p.name for p in svgs] == [
        "accuracy_by_clinical_VQA_task.svg",
        "accuracy_by_department.svg",
        "accuracy_by_perceptual_granularity.svg",
        "accuracy_by_modality.svg",
    ]
    assert svgs[1].read_text(encoding="utf-8") == render_svg(charts[1], standalone=True) + "\n"
    pngs = write_png_plots(tmp_path, charts)
    assert [p.with_suffix(".svg") for p in pngs] == svgs
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
