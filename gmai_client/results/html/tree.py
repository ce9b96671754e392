"""report.html's lexical tree explorer: each view's categories, then modality, then leaf label, with
the number of items and each model's accuracy at every node.

Built from ``<details>``/``<summary>`` so that it opens and closes without JavaScript; the page's
script only adds "expand all" and "collapse all". Only nodes with items in the run are listed.
"""

from __future__ import annotations

from collections import defaultdict

from gmai_client.protocol.metrics import VIEW_FIELDS, group_stats
from gmai_client.results.charts import PALETTE, usable_records
from gmai_client.results.html.page import Page, swatch
from gmai_client.results.report_format import esc, pct
from gmai_client.types import Record

#: The views the tree is drawn for (modality is the level under each of them, not a tree of its own).
TREE_VIEWS: tuple[tuple[str, str], ...] = tuple((a, view) for a, view in VIEW_FIELDS if a != "modality")

_Nested = dict[str, dict[str, dict[str, list[Record]]]]  # category -> modality -> leaf label -> records


def tree(page: Page) -> str:
    records = usable_records(page.records)
    legend = " ".join(f'<span class="chip">{swatch(i)}{esc(label)}</span>' for i, label in enumerate(page.labels))
    parts = [
        "<p>The benchmark's lexical tree as this run covers it: each view's categories, then modality, then "
        "leaf label, with the number of items and each model's accuracy at every node. Click a node to open "
        "it. Only nodes with items in this run are listed.</p>",
        '<p class="js-only" hidden><button type="button" data-tree="open">Expand all</button> '
        '<button type="button" data-tree="close">Collapse all</button></p>',
        f'<p class="legend">{legend}</p>',
    ]
    for attribute, view in TREE_VIEWS:
        nested: _Nested = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
        for r in records:
            nested[getattr(r, attribute) or "(none)"][r.modality or "(none)"][r.category or "(none)"].append(r)
        children = "".join(_category(page, name, nested[name]) for name in sorted(nested))
        parts.append(
            f'<details class="tree-view"><summary>{_node_label(page, view, records, "view")}</summary>'
            f'<ul class="tree">{children}</ul></details>'
        )
    return "\n".join(parts)


def _category(page: Page, name: str, modalities: dict[str, dict[str, list[Record]]]) -> str:
    items = []
    for modality in sorted(modalities):
        leaves = modalities[modality]
        leaf_items = "".join(
            f'<li class="leaf">{_node_label(page, leaf, leaves[leaf])}</li>' for leaf in sorted(leaves)
        )
        rows = [r for group in leaves.values() for r in group]
        items.append(
            f"<li><details><summary>{_node_label(page, modality, rows, 'modality')}</summary>"
            f"<ul>{leaf_items}</ul></details></li>"
        )
    rows = [r for leaves in modalities.values() for group in leaves.values() for r in group]
    return f"<li><details><summary>{_node_label(page, name, rows)}</summary><ul>{''.join(items)}</ul></details></li>"


def _node_label(page: Page, name: str, rows: list[Record], kind: str = "") -> str:
    per_model: dict[str, list[Record]] = defaultdict(list)
    for r in rows:
        per_model[r.model].append(r)
    accs = []
    for i, label in enumerate(page.labels):
        if label in page.keyed and label in per_model:
            # Compact on purpose: a full VAL tree has ~3,000 nodes; the colour says which model (legend above).
            accs.append(f'<b class="c{i % len(PALETTE)}">{pct(group_stats(per_model[label]).accuracy, 1)}</b>')
    kind_html = f'<span class="kind">{esc(kind)}</span> ' if kind else ""
    accs_html = f'<span class="accs">{"".join(accs)}</span>' if accs else ""
    n = len({r.index for r in rows})
    return f'{kind_html}<span class="nm">{esc(name)}</span> <span class="n">n={n}</span>{accs_html}'
