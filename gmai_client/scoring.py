"""Turns one item's outcome (an answer or an error) into a ``Record``: the unit metrics work on.

An API failure is an *error* record (excluded from accuracy, counted); an answer no rule can read
is *unparsed* and counts as wrong, visibly. Neither ever becomes a guessed letter.
"""

from __future__ import annotations

from dataclasses import replace

from gmai_client.errors import redact
from gmai_client.normalize import extract
from gmai_client.types import BadRow, Extraction, Item, Record, Response


def score_answer(
    item: Item,
    model: str,
    response: Response,
    *,
    extraction: Extraction | None = None,
    latency_s: float = 0.0,
    attempts: int = 1,
    retries: tuple[str, ...] = (),
    cached: bool = False,
) -> Record:
    """A record for an answer. ``extraction`` overrides the rules (the judge's verdict, say)."""
    if extraction is None:
        extraction = extract(response.text, item.options, multi=item.is_multi_answer)
    correct = None
    if item.answer is not None:
        correct = extraction.status == "ok" and set(extraction.letters) == set(item.answer)
    usage = response.usage
    return Record(
        index=item.index,
        model=model,
        status=extraction.status,
        prediction=response.text,
        letters=extraction.letters,
        answer=item.answer,
        correct=correct,
        rule=extraction.rule,
        latency_s=round(latency_s, 4),
        input_tokens=usage.input_tokens if usage else None,
        output_tokens=usage.output_tokens if usage else None,
        attempts=attempts,
        retries=retries,
        cached=cached,
        **_groups(item),
    )


def score_error(
    item: Item | BadRow, model: str, error: BaseException, *, latency_s: float = 0.0, attempts: int = 1
) -> Record:
    """A record for an item that got no answer: a backend failure or an unreadable row."""
    retries = tuple(getattr(error, "reasons", ()))
    kind = getattr(error, "kind", type(error).__name__)
    if isinstance(item, BadRow):
        return Record(
            index=item.source.index or f"row{item.source.row}",
            model=model,
            status="error",
            prediction=None,
            error=redact(str(item)),
            error_kind="bad_row",
            source=str(item.source),
        )
    return Record(
        index=item.index,
        model=model,
        status="error",
        prediction=None,
        answer=item.answer,
        error=redact(str(error) or type(error).__name__),
        error_kind=str(kind),
        latency_s=round(latency_s, 4),
        attempts=attempts,
        retries=retries,
        **_groups(item),
    )


def _groups(item: Item) -> dict[str, str]:
    return {
        "task": item.task,
        "department": item.department,
        "granularity": item.granularity,
        "modality": item.modality,
        "category": item.category,
        "source": str(item.source),
        "options": item.options,
    }


def rescore(record: Record) -> Record:
    """Re-apply the extraction rules to a stored record (``report --rescore``); errors stay errors."""
    if record.status == "error" or record.prediction is None:
        return record
    extraction = extract(record.prediction, record.options, multi=record.is_multi_answer)
    correct = None
    if record.answer is not None:
        correct = extraction.status == "ok" and set(extraction.letters) == set(record.answer)
    return replace(record, status=extraction.status, letters=extraction.letters, rule=extraction.rule, correct=correct)
