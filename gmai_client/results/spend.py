"""What a run folder's answers cost: each model's reported tokens priced at the shipped (or the user's) list prices.

The tokens are the ones the providers reported in each record (reasoning tokens are part of the output
tokens, billed as output). Items answered through a batch API (``batches.jsonl`` says which) are priced
at the provider's batch discount. Answers read from the response cache are counted too: this is what
the answers cost when they were paid for, the figure to set beside another model's, not what this
invocation spent. A model without a known price (a local model, an unlisted one) has no cost, and says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmai_client.errors import GmaiError
from gmai_client.protocol.prices import PriceTable
from gmai_client.results.batch_journal import JOURNAL_FILE, BatchJournal
from gmai_client.results.rundir import SavedConfig
from gmai_client.types import Record


@dataclass(frozen=True)
class ModelCost:
    """One model's answers priced: ``usd`` is None when no price is known for it."""

    label: str
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float | None = None
    cached: int = 0  # answers read from the response cache (paid for by an earlier run)
    batched: int = 0  # answers priced at the batch discount
    price_source: str = ""

    @property
    def shown(self) -> str:
        """The cost as a table cell: ``$0.42``, or ``-`` without a price."""
        return "-" if self.usd is None else f"${self.usd:,.2f}"


def model_costs(
    run_dir: Path, records: Iterable[Record], saved: SavedConfig | None, prices: PriceTable
) -> dict[str, ModelCost]:
    """Model label -> what its recorded answers cost (see the module docstring)."""
    specs = _specs(saved)
    batched = _batched_items(run_dir)
    totals: dict[str, dict[str, int]] = {}
    for record in records:
        counts = totals.setdefault(record.model, {"in": 0, "out": 0, "in_b": 0, "out_b": 0, "cached": 0, "batched": 0})
        suffix = "_b" if (record.model, record.index) in batched else ""
        counts["in" + suffix] += record.input_tokens or 0
        counts["out" + suffix] += record.output_tokens or 0
        counts["cached"] += record.cached
        counts["batched"] += bool(suffix)
    costs = {}
    for label, counts in totals.items():
        spec = specs.get(label)
        price = None
        if spec is not None:
            options = {str(k): str(v) for k, v in (spec.get("options") or {}).items()}
            price = prices.price(str(spec.get("backend", "")), str(spec.get("target", "")), options)
        usd = None
        if price is not None:
            usd = price.cost(counts["in"], counts["out"]) + price.cost(counts["in_b"], counts["out_b"], batch=True)
        costs[label] = ModelCost(
            label,
            counts["in"] + counts["in_b"],
            counts["out"] + counts["out_b"],
            usd,
            counts["cached"],
            counts["batched"],
            price.source if price is not None else "no price known",
        )
    return costs


def _specs(saved: SavedConfig | None) -> dict[str, Mapping[str, Any]]:
    models = saved.config.get("models") if saved is not None else None
    return {str(m.get("label")): m for m in models or () if isinstance(m, Mapping)}


def _batched_items(run_dir: Path) -> set[tuple[str, str]]:
    """(model label, item index) of every request a collected batch of the folder answered."""
    try:
        batches = BatchJournal(run_dir).read().values() if (run_dir / JOURNAL_FILE).exists() else ()
    except (GmaiError, OSError):  # an unreadable journal costs the discount, not the figure
        return set()
    return {(b.model, index) for b in batches if b.state == "collected" for index in b.items.values()}
