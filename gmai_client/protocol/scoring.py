"""Turns one item's outcome (an answer or an error) into a ``Record``: the unit metrics work on.

Every answer is read twice: by the reference extraction (VLMEvalKit's reading under the run's rule
set, ``rulesets``: the headline ``letters``/``status``/``correct``) and by the lenient one (the
``lenient_*`` fields, reported beside the headline, never in it). The reference's hit is
VLMEvalKit's: the letter equals the answer cell exactly. The lenient hit is a set match against
the parsed key (multi-answer items included).

An API failure is an *error* record: the headline counts it wrong, as VLMEvalKit does (its
prediction there is the failure text), and the reports also show accuracy over answered items.
Neither an error nor an unreadable answer ever becomes a guessed letter.

Thinking is kept apart from the answer and never matched: what a server sent apart
(``Response.thinking``: Anthropic's thinking blocks, ``reasoning_content``) and the
``<think>...</think>`` of an answer's text, split off as VLMEvalKit does with ``SPLIT_THINK`` set
(``split_thinking``: the answer is what follows the last ``</think>``), so the headline equals
VLMEvalKit's on thinking models. An answer cut by the output bound while the model was still
thinking (nothing after the thinking) is ``thinking_length``: wrong in the headline, counted apart.
Deliberate difference: VLMEvalKit would match the unfinished ``<think>`` text itself; here it is
never read for a letter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from gmai_client.errors import redact
from gmai_client.protocol.normalize import extract, extract_lenient
from gmai_client.protocol.readback import read_back, read_back_column
from gmai_client.protocol.reference import API_FAILURE_TEXT, is_hit
from gmai_client.protocol.rulesets import DEFAULT_RULES, RuleSet
from gmai_client.types import BadRow, Extraction, Item, Record, Response

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def split_thinking(text: str) -> tuple[str, str]:
    """(answer, thinking) of ``text`` as VLMEvalKit's ``SPLIT_THINK`` handling splits it
    (``vlmeval/inference.py``): the answer is what follows the last ``</think>``, stripped; the
    thinking is what lies between ``<think>`` and ``</think>`` when the text holds one pair, else
    everything before the last ``</think>`` with it (a chat template that opened ``<think>``
    itself, or several blocks). Text without ``</think>`` is all answer."""
    if THINK_CLOSE not in text:
        return text, ""
    splits = text.split(THINK_CLOSE)
    answer = splits[-1].strip()
    if len(splits) == 2 and THINK_OPEN in splits[0]:
        return answer, splits[0].split(THINK_OPEN)[1].strip()
    return answer, THINK_CLOSE.join(splits[:-1]) + THINK_CLOSE


def _read_thinking(response: Response) -> tuple[str, str, bool]:
    """(answer, thinking, cut inside the thinking) of a response."""
    text = response.text
    cut = response.finish_reason == "length"
    if cut and text.lstrip().startswith(THINK_OPEN) and THINK_CLOSE not in text:
        answer, thinking = "", text.lstrip()[len(THINK_OPEN) :].strip()  # the bound ran out mid-thought
    else:
        answer, thinking = split_thinking(text)
    thinking = "\n\n".join(part for part in (response.thinking, thinking) if part)
    reasoned = bool(thinking) or bool(response.usage and response.usage.reasoning_tokens)
    return answer, thinking, cut and reasoned and not answer.strip()


def score_answer(
    item: Item,
    model: str,
    response: Response,
    *,
    latency_s: float = 0.0,
    attempts: int = 1,
    retries: tuple[str, ...] = (),
    cached: bool = False,
    estimated_input_tokens: int | None = None,
    rules: RuleSet = DEFAULT_RULES,
) -> Record:
    """A record for an answer, read by both extractions (the reference one under ``rules``)."""
    usage = response.usage
    answer, thinking, cut = _read_thinking(response)
    record = Record(
        index=item.index,
        model=model,
        status="ok",
        prediction=answer,
        thinking=thinking,
        answer=item.answer,
        answer_cell=item.answer_cell,
        latency_s=round(latency_s, 4),
        input_tokens=usage.input_tokens if usage else None,
        output_tokens=usage.output_tokens if usage else None,
        reasoning_tokens=usage.reasoning_tokens if usage else None,
        estimated_input_tokens=estimated_input_tokens,
        attempts=attempts,
        retries=retries,
        cached=cached,
        **_groups(item),
    )
    if cut:
        wrong = None if item.answer is None else False
        return replace(record, status="thinking_length", rule="thinking cut", correct=wrong, lenient_correct=wrong)
    return rescore(record, rules)


def with_reference(record: Record, extraction: Extraction) -> Record:
    """``record`` with ``extraction`` as its reference reading (the judge's verdict, say)."""
    letter = extraction.letters[0] if extraction.letters else None
    cell = record.answer_cell
    if cell is None and record.answer is not None:
        cell = ",".join(record.answer)  # a record written before the cell was kept: its key as written
    correct = None if record.answer is None else is_hit(letter, cell)
    return replace(record, status=extraction.status, letters=extraction.letters, rule=extraction.rule, correct=correct)


def score_error(
    item: Item | BadRow, model: str, error: BaseException, *, latency_s: float = 0.0, attempts: int = 1
) -> Record:
    """A record for an item that got no answer: a backend failure or an unreadable row."""
    retries = tuple(getattr(error, "reasons", ()))
    kind = getattr(error, "kind", type(error).__name__)
    if isinstance(item, BadRow):
        return Record(
            index=item.record_index,
            model=model,
            status="error",
            prediction=None,
            error=redact(str(item)),
            error_kind="bad_row",
            source=str(item.source),
        )
    message = redact(str(error) or type(error).__name__)
    if kind == "unsupported_input" and item.images_b64:
        # The images are checked cheaply before sending (not decoded): a server or local model that
        # refuses one is pointed at the cell it came from, as a check here would have been.
        message = f"{item.source}: field 'image': {message}"
    return Record(
        index=item.index,
        model=model,
        status="error",
        prediction=None,
        answer=item.answer,
        answer_cell=item.answer_cell,
        correct=None if item.answer is None else False,
        lenient_correct=None if item.answer is None else False,
        error=message,
        error_kind=str(kind),
        latency_s=round(latency_s, 4),
        attempts=attempts,
        retries=retries,
        **_groups(item),
    )


def _groups(item: Item) -> dict:
    return {
        "task": item.task,
        "department": item.department,
        "granularity": item.granularity,
        "modality": item.modality,
        "category": item.category,
        "source": str(item.source),
        "source_offset": item.source.offset,
        "options": item.options,
        "row": item.row,
    }


def rescore(record: Record, rules: RuleSet = DEFAULT_RULES, *, evaluated: str | None = None) -> Record:
    """Apply both extractions to a record's answer (also ``report --rescore``/``--rules``); errors
    stay errors, and so does an answer that never came out of its thinking. ``evaluated``: the answer
    as read back with its whole answer set (``score_answer_set``). A record written before thinking
    was kept apart has it split off now."""
    if record.status in ("error", "thinking_length") or record.prediction is None:
        return record
    if THINK_CLOSE in record.prediction:
        answer, thinking = split_thinking(record.prediction)
        record = replace(record, prediction=answer, thinking="\n\n".join(t for t in (record.thinking, thinking) if t))
    lenient = extract_lenient(record.prediction, record.options, multi=record.is_multi_answer)
    lenient_correct = None
    if record.answer is not None:
        lenient_correct = lenient.status == "ok" and set(lenient.letters) == set(record.answer)
    record = replace(
        record,
        lenient_letters=lenient.letters,
        lenient_status=lenient.status,
        lenient_rule=lenient.rule,
        lenient_correct=lenient_correct,
    )
    found = extract(record.prediction, record.options, rules, evaluated=evaluated)
    if found.status == "unparsed" and record.rule.startswith("judge"):
        return record  # the rules still cannot read it: the judge's verdict stands
    return with_reference(record, found)


def score_answer_set(
    records: Sequence[Record], rules: RuleSet = DEFAULT_RULES, *, columns_only: bool = False
) -> list[Record]:
    """Every record read again under ``rules``, each model's answers read back together, as one
    prediction column of VLMEvalKit's file (``readback.read_back_column``: a column of numbers
    reads back differently from one number among text). Pure and cheap: the side-by-side tables
    and ``report --rules`` rescore a finished run with it. Order is kept. ``columns_only``: only
    the models whose column reads back otherwise than answer by answer (records scored one by one
    under ``rules`` need nothing else)."""
    by_model: dict[str, list[int]] = {}
    for position, record in enumerate(records):
        if record.error_kind != "bad_row":  # a row that could not be read is no row of that file
            by_model.setdefault(record.model, []).append(position)
    out = list(records)
    for positions in by_model.values():
        texts = [prediction_cell(records[p]) for p in positions]
        evaluated = read_back_column(texts, formulas=rules.xlsx_formulas)
        if columns_only and evaluated == [read_back(text, formulas=rules.xlsx_formulas) for text in texts]:
            continue
        for position, text in zip(positions, evaluated, strict=True):
            out[position] = rescore(records[position], rules, evaluated=text)
    return out


def prediction_cell(record: Record) -> str:
    """What VLMEvalKit's prediction file holds for ``record``: its answer, or the failure text."""
    if record.status == "error" or record.prediction is None:
        return API_FAILURE_TEXT + "."
    return record.prediction
