"""report.html's result sections: the headline table, the per-view charts with their tables, and the
models x categories heatmap.

The charts are ``charts.render_svg`` of the page's ``ViewChart``s, the same drawing as the files in
plots/. Every chart's numbers are also in a table, so nothing needs the picture to be read.
"""

from __future__ import annotations

from gmai_client.protocol.metrics import VIEW_FIELDS, GroupStats, ModelMetrics
from gmai_client.results.charts import render_svg
from gmai_client.results.completeness import assess, notice_lines
from gmai_client.results.html.page import Page, heat_style, swatch, table
from gmai_client.results.report_format import esc, interval, pct, signed, slug
from gmai_client.results.report_rules import rules_html

_HEADLINE_COLUMNS = (
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
)


# --- headline ----------------------------------------------------------------------------------


def headline(page: Page) -> str:
    rows = [_headline_row(page, i, label, m) for i, (label, m) in enumerate(page.metrics.items())]
    parts = [
        "<p>Accuracy is micro-averaged per question and is VLMEvalKit's exact-matching evaluation, the "
        "figure comparable with the paper's tables: unparsed and refused answers, and items that got no "
        "answer, count as wrong. <em>Lenient</em> is a second extraction that reads more answer styles; it "
        "is shown for diagnosis and is not comparable with published figures. Intervals are 95% Wilson "
        "intervals. Latency is per answered, uncached item; requests overlap, so the total exceeds the "
        "run's wall time.</p>",
        table(_HEADLINE_COLUMNS, rows, caption="Overall results per model", cls="headline"),
        rules_html(page.run_dir),  # the rule set, and the same answers under the others
        *_headline_notes(page),
        _paired(page),
    ]
    return "\n".join(part for part in parts if part)


def _headline_row(page: Page, i: int, label: str, m: ModelMetrics) -> str:
    o = m.overall
    mine = page.by_model[label]
    reported = any(r.input_tokens is not None or r.output_tokens is not None for r in mine)
    total_latency = sum(r.latency_s for r in mine if r.status != "error" and not r.cached)
    cells = [
        f'<th scope="row">{swatch(i)}{esc(label)}</th>',
        f'<td class="acc num">{pct(o.accuracy)}</td>',
        f'<td class="num">{interval(o)}</td>',
        *(f'<td class="num">{count}</td>' for count in (o.n, o.correct, o.unparsed, o.refused, o.errored)),
        f'<td class="num">{pct(o.answered_accuracy)}</td>',  # equal to accuracy when nothing errored
        f'<td class="num lenient">{pct(o.lenient_accuracy)}</td>',
        f'<td class="num">{o.differs}</td>',
        f'<td class="num">{pct(m.mcq.acc_mcq) if m.mcq.n else "—"}</td>',
        f'<td class="num">{pct(m.mcq.recall_mcq) if m.mcq.n else "—"}</td>',
        f'<td class="num">{f"{m.input_tokens:,} / {m.output_tokens:,}" if reported else "—"}</td>',
        f'<td class="num">{"—" if m.mean_latency_s is None else f"{m.mean_latency_s:.3f}"} / {total_latency:,.1f}</td>',
    ]
    return f'<tr data-model="{esc(label)}">{"".join(cells)}</tr>'


def _headline_notes(page: Page) -> list[str]:
    """Incomplete models, the chance level, and the models without an answer key."""
    completeness = assess(page.every or page.records, page.figures, page.labels)
    parts = [_notice(line) for line in notice_lines(completeness, page.run_dir, page.metrics)]
    if page.chance_overall is not None:
        parts.append(
            f"<p>Uniform guessing over each item's options would score {pct(page.chance_overall)}% on these "
            "items (the mean of 1 / number of options).</p>"
        )
    unkeyed = [label for label in page.labels if label not in page.keyed]
    if unkeyed:
        parts.append(
            '<p class="warn">No answer key for '
            + ", ".join(esc(label) for label in unkeyed)
            + " (a TEST split has none): predictions only, no accuracy. The predictions/ folder holds the "
            "files the benchmark's authors take for scoring.</p>"
        )
    return parts


def _notice(line: str) -> str:
    """A line of ``completeness.notice_lines`` as a warning: "INCOMPLETE: ..." -> "<strong>Incomplete:</strong> ..."."""
    head, colon, rest = line.partition(": ")
    if colon and head.isupper():
        return f'<p class="warn"><strong>{esc(head.capitalize())}:</strong> {esc(rest)}</p>'
    return f'<p class="warn">{esc(line)}</p>'


def _paired(page: Page) -> str:
    if page.comparison is None or not page.comparison.paired or len(page.keyed) < 2:
        return ""
    items = []
    for test in page.comparison.paired.values():
        pair = f"{esc(test.model)} vs {esc(test.reference)}"
        if test.p_value is None:
            items.append(f"<li>{pair}: no shared scored items</li>")
            continue
        items.append(
            f"<li>{pair}: Δ {signed(test.delta)} points on {test.shared} shared items ({test.model_only_correct} "
            f"right only for {esc(test.model)}, {test.reference_only_correct} only for {esc(test.reference)}), "
            f"exact McNemar p = {test.p_value:.4g}</li>"
        )
    return "<h3>Paired comparison</h3><ul>" + "".join(items) + "</ul>"


# --- per-view charts and tables ----------------------------------------------------------------


def views(page: Page) -> str:
    if not page.charts:
        parts = [
            '<p class="warn">No model has an answer key in this run: there is no accuracy to chart. '
            "The tables give item counts per category.</p>"
        ]
        parts += [f"<h3>By {esc(view)}</h3>" + _count_table(page, view) for _, view in VIEW_FIELDS]
        return "\n".join(parts)
    parts = [
        "<p>One bar per model and category: accuracy with its 95% interval (whiskers). The dashed red mark is "
        "the expected accuracy of uniform guessing for the category (mean of 1 / number of options over its "
        "items). Each chart's numbers are in the table under it.</p>",
    ]
    for chart in page.charts:
        count = len(chart.categories)
        parts.append(
            f'<div class="view"><h3 id="view-{slug(chart.view)}">By {esc(chart.view)} '
            f'<span class="count">({count} categor{"y" if count == 1 else "ies"})</span></h3>'
            f'<div class="chart">{render_svg(chart)}</div>'
            f"<details><summary>Table: accuracy by {esc(chart.view)}</summary>"
            f"{_view_table(page, chart.view, chart.categories)}</details></div>"
        )
    return "\n".join(parts)


def _count_table(page: Page, view: str) -> str:
    names = sorted({name for m in page.metrics.values() for name in m.groups[view]})
    header = [view] + [f"{label}: items / unparsed / errored" for label in page.labels]
    rows = []
    for name in names:
        cells = [f'<th scope="row">{esc(name)}</th>']
        for label in page.labels:
            s = page.metrics[label].groups[view].get(name, GroupStats())
            cells.append(f'<td class="num">{s.n} / {s.unparsed + s.refused} / {s.errored}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return table(header, rows, caption=f"Items by {view}")


def _view_table(page: Page, view: str, names: tuple[str, ...]) -> str:
    header = [view, "items", "guessing %"]
    for label in page.keyed:
        header += [f"{label} %", f"{label} 95% interval"]
    rows = []
    for name in names:
        stats = [page.metrics[label].groups[view].get(name, GroupStats()) for label in page.keyed]
        cells = [f'<th scope="row">{esc(name)}</th>', f'<td class="num">{max((s.n for s in stats), default=0)}</td>']
        cells.append(f'<td class="num">{pct(page.chance.get(view, {}).get(name))}</td>')
        for s in stats:
            cells += [f'<td class="num">{pct(s.accuracy)}</td>', f'<td class="num">{interval(s)}</td>']
        rows.append("<tr>" + "".join(cells) + "</tr>")
    macro = ['<th scope="row">macro average</th>', "<td></td>", "<td></td>"]
    for label in page.keyed:
        macro += [f'<td class="num">{pct(page.metrics[label].macro[view])}</td>', "<td></td>"]
    rows.append('<tr class="macro">' + "".join(macro) + "</tr>")
    return table(header, rows, caption=f"Accuracy (%) by {view}")


# --- heatmap -----------------------------------------------------------------------------------


def heatmap(page: Page) -> str:
    if len(page.keyed) < 2:
        why = "one model with an answer key" if len(page.keyed) == 1 else "no model with an answer key"
        return f"<p>Side-by-side comparison needs two or more models with an answer key; this run has {why}.</p>"
    comparison = page.comparison
    reference = comparison.reference if comparison is not None and comparison.reference in page.keyed else None
    reference = reference or page.keyed[0]
    options = "".join(
        f'<option value="{i}"{" selected" if label == reference else ""}>{esc(label)}</option>'
        for i, label in enumerate(page.keyed)
    )
    parts = [
        "<p>Accuracy (%) per category; the smaller number is the difference in points against the reference "
        f"model (<strong>{esc(reference)}</strong> as written). Darker cells are more accurate.</p>",
        f'<p class="js-only" hidden><label>Reference model: <select id="hm-ref">{options}</select></label></p>',
    ]
    for k, (_, view) in enumerate(VIEW_FIELDS):
        header = [view] + [label + (" (reference)" if label == reference else "") for label in page.keyed]
        names = sorted({name for label in page.keyed for name in page.metrics[label].groups[view]})
        rows = [_heat_row(page, view, name, reference) for name in names]
        parts.append(
            f"<details{' open' if k == 0 else ''}><summary>By {esc(view)}</summary>"
            + table(header, rows, caption=f"Accuracy (%) by {view}, models side by side", cls="heat")
            + "</details>"
        )
    return "\n".join(parts)


def _heat_row(page: Page, view: str, name: str, reference: str) -> str:
    ref = page.metrics[reference].groups[view].get(name, GroupStats()).accuracy
    cells = [f'<th scope="row">{esc(name)}</th>']
    for label in page.keyed:
        acc = page.metrics[label].groups[view].get(name, GroupStats()).accuracy
        delta = "" if label == reference or acc is None or ref is None else signed(acc - ref)
        cls = "" if not delta or acc is None or ref is None else " up" if acc > ref else " down" if acc < ref else ""
        data = "" if acc is None else f' data-acc="{acc:.6f}"'
        cells.append(
            f'<td class="hm num"{heat_style(acc)}{data}><span class="v">{pct(acc, 1)}</span>'
            f'<span class="d{cls}">{delta}</span></td>'
        )
    return "<tr>" + "".join(cells) + "</tr>"
