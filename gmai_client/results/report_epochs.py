"""How every output shows repeated samples (``protocol.epochs``): a line per model, and metrics.json's ``epochs``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from gmai_client.protocol.epochs import EpochFigures
from gmai_client.results.report_format import pct


def epoch_lines(figures: Mapping[str, EpochFigures]) -> list[str]:
    """One line per model with samples beyond the first: each sample's accuracy, mean ± sd, vote, agreement."""
    lines = []
    for label, f in figures.items():
        each = " / ".join(pct(a) for a in f.accuracies)
        spread = f" ± {pct(f.std)}" if f.std is not None else ""
        lines.append(
            f"{label}: {f.samples} samples per item (the headline is the first's). acc per sample {each} %; "
            f"mean {pct(f.mean)}{spread} % (sd over samples); majority vote {pct(f.majority)} %; "
            f"agreement {pct(f.agreement)} % of samples with the majority, {pct(f.unanimous)} % of the "
            f"{f.items} items unanimous."
        )
    return lines


def epochs_json(figures: Mapping[str, EpochFigures]) -> dict[str, Any]:
    return {label: {k: v for k, v in asdict(f).items() if k != "model"} for label, f in figures.items()}
