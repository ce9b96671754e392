"""Repeated samples (``--epochs N``): every model asked every item N times, as N streams.

Sample 1 is the model itself: its label, its requests, its cache keys (a run of one epoch is the run
it always was, and a later run with more epochs reuses its answers). Sample k > 1 is a stream of its
own, labelled ``<label>#k``, whose requests carry ``repeat = k - 1``: part of the cache key, so each
sample gets an answer of its own rather than the first one's from the cache. The streams share the
model's backend (started once), its endpoint's limits and the run's budget.

Being streams, samples are what resume, batch mode, ``plan``, the progress bars and the records count.
The reports keep the headline to sample 1 (what VLMEvalKit would score) and set the spread over the
samples beside it (``protocol.epochs``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from gmai_client.config import ModelSpec

SAMPLE_MARK = "#"


def sample_label(label: str, sample: int) -> str:
    """The label of a model's ``sample``-th stream (1-based): the model's own for the first."""
    return label if sample == 1 else f"{label}{SAMPLE_MARK}{sample}"


def sample_streams(models: Sequence[ModelSpec], epochs: int) -> list[tuple[ModelSpec, ModelSpec, int]]:
    """(the model, its stream's spec, the stream's ``repeat``) for every sample of every model,
    model by model."""
    return [
        (spec, replace(spec, label=sample_label(spec.label, k)) if k > 1 else spec, k - 1)
        for spec in models
        for k in range(1, epochs + 1)
    ]


def extra_samples(labels: Iterable[str], epochs: int) -> dict[str, tuple[str, int]]:
    """Of ``labels`` (a run's streams), those of samples 2 to ``epochs``: label -> (model, sample).
    ``RunConfig`` refuses a model labelled like another's sample, so this cannot mistake one."""
    labels = set(labels)
    found: dict[str, tuple[str, int]] = {}
    for label in labels:
        base, mark, number = label.rpartition(SAMPLE_MARK)
        if mark and base in labels and number.isdigit() and 2 <= int(number) <= epochs:
            found[label] = (base, int(number))
    return found


def saved_epochs(flat: Mapping[str, Any]) -> int:
    """The samples per item a saved configuration (by flat name) asked for; 1 for what is not a whole
    number above 0 (a folder from before ``--epochs``, or a hand-edited config.json)."""
    epochs = flat.get("epochs")
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 else 1
