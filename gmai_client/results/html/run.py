"""report.html's last section: links to the chart files, versions, timings, per-model counts of this
invocation, and the run's configuration (config.json, redacted once more before it is shown); in the
folder of runs compared (``compare``), where each model comes from (its compare.json)."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from gmai_client.errors import redact
from gmai_client.results.html.page import Page, table
from gmai_client.results.plots import PLOTS_DIR
from gmai_client.results.report_format import esc, package_version, version
from gmai_client.results.rundir import COMPARE_FILE


def run_info(page: Page, plot_files: Sequence[Path]) -> str:
    saved = asdict(page.saved) if page.saved else None
    config_text = redact(json.dumps(saved, indent=2, default=str)) if saved else "(no config.json)"
    return (
        _plot_links(plot_files)
        + _compared_runs(page.run_dir)
        + _versions(page)
        + _timings(page)
        + _per_model(page)
        + "<details><summary>Configuration (config.json, no secrets)</summary>"
        f"<pre>{esc(config_text)}</pre></details>"
    )


_COMPARED = (("label", "model"), ("folder", "its run"), ("started", "started"), ("rules", "scored under"),
             ("cost", "cost"), ("status", "run status"))  # fmt: skip


def _compared_runs(run_dir: Path) -> str:
    """The runs a comparison's models come from: a table, or "" in a run's own folder."""
    try:
        models = json.loads((run_dir / COMPARE_FILE).read_text(encoding="utf-8"))["models"]
        rows = [
            '<tr><th scope="row">' + esc(str(m["label"])) + "</th>"
            + "".join(f"<td>{esc(str(m.get(key, '')))}</td>" for key, _ in _COMPARED[1:]) + "</tr>"
            for m in models
        ]  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    caption = "Runs compared: each model's run (cost: its answers at list prices)"
    return table([title for _, title in _COMPARED], rows, caption=caption)


def _plot_links(plot_files: Sequence[Path]) -> str:
    if not plot_files:
        return ""
    names = [esc(f"{PLOTS_DIR}/{p.name}") for p in plot_files]
    links = ", ".join(f'<a href="{name}">{name}</a>' for name in names)
    return f"<p>Charts as files beside this report (for papers and slides): {links}.</p>"


def _versions(page: Page) -> str:
    versions = [
        ("gmai_client", (page.saved.gmai_client if page.saved else "") or version()),
        ("python", (page.saved.python if page.saved else "") or platform.python_version()),
        ("platform (where this page was written)", platform.platform(terse=True)),
        ("Pillow", package_version("Pillow")),
    ]
    rows = [f'<tr><th scope="row">{esc(k)}</th><td>{esc(v)}</td></tr>' for k, v in versions]
    return table(["", ""], rows, caption="Versions", head=False)


def _timings(page: Page) -> str:
    rows = []
    if page.figures.elapsed_s:
        rows.append(f'<tr><th scope="row">run wall time</th><td>{page.figures.elapsed_s:.1f} s</td></tr>')
    if page.figures.interrupted:
        rows.append('<tr><th scope="row">interrupted</th><td>yes: results are partial</td></tr>')
    return table(["", ""], rows, caption="Timings", head=False) if rows else ""


def _per_model(page: Page) -> str:
    rows = []
    for label in page.labels:
        state = next((m for m in page.figures.models if m.label == label), None)
        mine = page.by_model[label]
        done = state.done if state else len(mine)
        errors = state.errors if state else sum(r.status == "error" for r in mine)
        rows.append(
            f'<tr><th scope="row">{esc(label)}</th><td class="num">{done}</td>'
            f'<td class="num">{errors}</td>'
            f'<td class="num">{state.skipped if state else "—"}</td>'
            f'<td class="num">{sum(r.cached for r in mine)}</td>'
            f'<td class="num">{sum(r.attempts for r in mine)}</td>'
            f"<td>{esc(state.stopped if state else '')}</td></tr>"
        )
    return table(
        ["model", "done", "errors", "skipped (resumed)", "cached", "attempts", "stopped"],
        rows,
        caption="Per model (this invocation; skipped items were finished by an earlier one)",
    )
