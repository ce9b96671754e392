"""report.html's gallery: which items it shows (``select_gallery``) and their cards.

Each card shows the item's thumbnail and question (looked up in the data files by gallery_items.py,
since records hold neither), its options with the key, and every model's letter, outcome and raw
answer. All cards are in the page; the script only filters them (by outcome and model).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from gmai_client.results.html.gallery_items import THUMB_PX, outcome
from gmai_client.results.html.page import Page, swatch
from gmai_client.results.report_format import esc, index_key
from gmai_client.types import Record

GALLERY_CAP = 200
#: A smaller run shows fewer items: one in ``GALLERY_SHARE``, and at least ``GALLERY_MIN``. Every
#: card's thumbnail costs a full decode of a real-size image (15-45 ms): 200 of them cost more than
#: a whole 300-item run's requests, and a fifth of a small run is as telling as two thirds of it.
GALLERY_MIN = 60
GALLERY_SHARE = 5
#: Of the gallery's places, how many go first to items some model got wrong, left unparsed or errored
#: on; the rest show items every model answered correctly (filled with problem items when too few).
GALLERY_PROBLEM_PLACES = 160
RAW_CHARS = 600  # a raw answer longer than this is cut in the gallery (the full text is in records.jsonl)
THINKING_CHARS = 4000  # the same for a model's thinking, shown collapsed under its answer
_OUTCOMES = ("wrong", "unparsed", "errored", "correct", "answered")  # the cards' data-* attributes
_FILTERS = (
    ("all", "all"),
    ("wrong", "wrong"),
    ("unparsed", "unparsed or refused"),
    ("errored", "errored"),
    ("correct", "correct"),
)


def gallery_cap(items: int) -> int:
    """How many items the gallery of a run of ``items`` items shows."""
    return min(GALLERY_CAP, max(GALLERY_MIN, items // GALLERY_SHARE))


def select_gallery(records: Sequence[Record], labels: Sequence[str], cap: int | None = None) -> list[str]:
    """The indexes the gallery shows, at most ``cap`` (default: ``gallery_cap`` of the run's items).

    Problem items first (errored, then unparsed or refused, then wrong), up to
    ``GALLERY_PROBLEM_PLACES``, the rest items every model answered correctly; whichever kind runs
    short leaves its places to the other. Within a kind, items are taken round-robin over clinical
    tasks so that a full VAL report is not all one task.
    """
    by_index: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        if record.model in labels:
            by_index[record.index].append(record)
    tiers: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for index, rows in by_index.items():
        outcomes = {outcome(r) for r in rows}
        tier = next((t for t, kind in enumerate(("errored", "unparsed", "wrong")) if kind in outcomes), 3)
        tiers[tier].append((rows[0].task, index))
    cap = gallery_cap(len(by_index)) if cap is None else cap
    ordered = [_round_robin(sorted(tiers[t], key=lambda pair: index_key(pair[1]))) for t in range(4)]
    problems = [i for tier in ordered[:3] for i in tier]
    others = ordered[3]
    take_problems = min(len(problems), max(GALLERY_PROBLEM_PLACES * cap // GALLERY_CAP, cap - len(others)))
    chosen = problems[:take_problems] + others[: cap - take_problems]
    return sorted(chosen, key=index_key)


def _round_robin(pairs: list[tuple[str, str]]) -> list[str]:
    groups: dict[str, list[str]] = defaultdict(list)
    for group, index in pairs:
        groups[group].append(index)
    queues = [groups[g] for g in sorted(groups)]
    out: list[str] = []
    depth = 0
    while len(out) < len(pairs):
        out += [q[depth] for q in queues if depth < len(q)]
        depth += 1
    return out


def gallery(page: Page) -> str:
    indexes = select_gallery(page.records, page.labels)
    if not indexes:
        return "<p>No items in this run.</p>"
    by_index: dict[str, dict[str, Record]] = defaultdict(dict)
    for r in page.records:
        by_index[r.index][r.model] = r
    counts = " · ".join(
        f"{name}: {sum(1 for rows in by_index.values() if any(outcome(r) == kind for r in rows.values()))}"
        for kind, name in _FILTERS[1:4]
    )
    thumbs = sum(index in page.thumbnails for index in indexes)
    buttons = "".join(
        f'<button type="button" data-filter="{f}" aria-pressed="{"true" if f == "all" else "false"}">{t}</button>'
        for f, t in _FILTERS
    )
    models = '<option value="any">any model</option>' + "".join(
        f'<option value="{i}">{esc(label)}</option>' for i, label in enumerate(page.labels)
    )
    cards = "".join(_card(page, index, by_index[index]) for index in indexes)
    return (
        f"<p>{len(indexes)} of {len(by_index)} items are shown (the gallery holds one item in {GALLERY_SHARE}, at "
        f"least {GALLERY_MIN} and at most {GALLERY_CAP}: four in five that some model got wrong, left unparsed or "
        f"errored on, the rest answered correctly by every model; thumbnails at most {THUMB_PX} px, JPEG, so that "
        "a full VAL report stays a "
        f"few megabytes). Items of this run with at least one answer that is {counts}. "
        f"{thumbs} thumbnail{'s' if thumbs != 1 else ''} included.</p>"
        '<div id="gallery-filters" class="js-only" hidden role="group" aria-label="Filter items">'
        f'Show: {buttons} <label>for <select id="gallery-model">{models}</select></label> '
        '<span id="gallery-count" aria-live="polite"></span></div>'
        "<noscript><p>Filters need JavaScript: every item of the gallery is shown.</p></noscript>"
        f'<div class="gallery">{cards}</div>'
    )


def _card(page: Page, index: str, rows: dict[str, Record]) -> str:
    first = next(iter(rows.values()))
    flags: dict[str, list[str]] = defaultdict(list)
    answers = []
    for i, label in enumerate(page.labels):
        if label in rows:
            flags[outcome(rows[label])].append(str(i))
            answers.append(_answer_row(i, label, rows[label]))
    key = set(first.answer or ())
    options = "".join(
        f"<li{' class=key' if letter in key else ''}><b>{esc(letter)}.</b> {esc(text)}"
        f"{' <span class=keymark>✓ key</span>' if letter in key else ''}</li>"
        for letter, text in first.options
    )
    thumb = page.thumbnails.get(index)
    image = (
        f'<img src="{thumb}" alt="thumbnail of item {esc(index)}" width="{THUMB_PX}">'
        if thumb
        else '<div class="noimg">no image</div>'
    )
    question = page.questions.get(index)
    path = " › ".join(esc(x) for x in (first.task, first.modality, first.category) if x)
    data = " ".join(f'data-{kind}="{" ".join(flags.get(kind, []))}"' for kind in _OUTCOMES)
    return (
        f'<article class="card" {data}><div class="thumb">{image}</div><div class="body">'
        f'<h3>Item {esc(index)}</h3><p class="path">{path} · {esc(first.department)} · {esc(first.granularity)}</p>'
        + (f'<p class="q">{esc(question)}</p>' if question else "")
        + f'<ol class="opts">{options}</ol>'
        + ("" if first.answer is not None else '<p class="nokey">no answer key</p>')
        + '<table class="answers"><thead><tr><th scope="col">model</th><th scope="col">letter</th>'
        '<th scope="col">outcome</th><th scope="col">raw answer</th></tr></thead><tbody>'
        + "".join(answers)
        + "</tbody></table></div></article>"
    )


def _answer_row(i: int, label: str, record: Record) -> str:
    kind = outcome(record)
    letters = ",".join(record.letters) or "—"
    raw = record.prediction if record.prediction is not None else (record.error or "")
    shown = _cut(raw, RAW_CHARS)
    if record.status == "thinking_length":
        said = "<em>no answer: the output bound ran out while the model was thinking</em>"
    else:
        said = esc(shown) if shown else "<em>no answer</em>"
    return (
        f'<tr class="{kind}"><th scope="row" title="{esc(label)}">{swatch(i)}{esc(label)}</th>'
        f'<td class="letter">{esc(letters)}</td><td><span class="badge {kind}">{kind}</span></td>'
        f'<td class="raw">{said}{_thinking(record.thinking)}</td></tr>'
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text):,} characters)"


def _thinking(thinking: str) -> str:
    """The model's thinking, collapsed: never part of the answer the letter was read from."""
    if not thinking:
        return ""
    return (
        f'<details class="thinking"><summary>thinking ({len(thinking):,} characters, not scored)</summary>'
        f"<pre>{esc(_cut(thinking, THINKING_CHARS))}</pre></details>"
    )
