"""Repeated samples summed up per model (``--epochs N``, ``samples``): the spread, the vote, the agreement.

The headline stays the first sample's, scored as VLMEvalKit would score that one answer per item.
Beside it, per model:

- each sample's accuracy (VLMEvalKit's figure over its own records: errors count wrong), their mean
  and sample standard deviation;
- the majority vote: per item, the option letters most samples gave (an error gives none; a tie goes
  to the letters an earlier sample gave), right when that answer is; an item no sample answered is wrong;
- the agreement: per item, the share of the N samples that gave the majority's letters, averaged, and
  the share of items on which all N agreed.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gmai_client.protocol.metrics import compute_metrics
from gmai_client.samples import extra_samples
from gmai_client.types import Record


@dataclass(frozen=True)
class EpochFigures:
    """One model's samples, summed up (see the module docstring); fractions from 0 to 1."""

    model: str
    samples: int
    accuracies: tuple[float | None, ...]  # sample 1 first (the headline's)
    mean: float | None
    std: float | None  # the sample standard deviation over the samples' accuracies
    majority: float | None
    agreement: float | None
    unanimous: float | None
    items: int  # items with an answer key that any sample recorded


def epoch_figures(records: Iterable[Record], models: Sequence[str], epochs: int) -> dict[str, EpochFigures]:
    """Model label -> its samples summed up, for the ``models`` that have samples beyond the first."""
    records = list(records)
    extra = extra_samples({r.model for r in records}, epochs)
    streams: dict[str, dict[int, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        model, sample = extra.get(record.model, (record.model, 1))
        if model in models:
            streams[model][sample].append(record)
    return {
        model: _figures(model, streams[model], epochs)
        for model in models
        if model in streams and len(streams[model]) > 1
    }


def _figures(model: str, by_sample: dict[int, list[Record]], epochs: int) -> EpochFigures:
    accuracies = tuple(_accuracy(by_sample.get(k, [])) for k in range(1, epochs + 1))
    known = [a for a in accuracies if a is not None]
    answers: dict[str, list[Record | None]] = defaultdict(lambda: [None] * epochs)
    for sample, records in by_sample.items():
        for record in records:
            if record.answer is not None:  # only keyed items are scored
                answers[record.index][sample - 1] = record
    right = agree = unanimous = 0.0
    for given in answers.values():
        answered = [(tuple(sorted(r.letters)), r) for r in given if r is not None and r.status != "error"]
        votes = Counter(letters for letters, _ in answered)
        if not votes:
            continue  # no sample answered: wrong, and no agreement
        top = max(votes.values())
        chosen = next(record for letters, record in answered if votes[letters] == top)  # a tie: the earliest
        right += bool(chosen.correct)
        agree += top / epochs
        unanimous += top == epochs
    count = len(answers)
    return EpochFigures(
        model=model,
        samples=epochs,
        accuracies=accuracies,
        mean=statistics.fmean(known) if known else None,
        std=statistics.stdev(known) if len(known) > 1 else None,
        majority=right / count if count else None,
        agreement=agree / count if count else None,
        unanimous=unanimous / count if count else None,
        items=count,
    )


def _accuracy(records: list[Record]) -> float | None:
    if not records:
        return None
    label = records[0].model
    return compute_metrics(records)[label].overall.accuracy
