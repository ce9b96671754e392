"""Tests for ``spend``: a run folder's answers priced from the tokens the providers reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from gmai_client.protocol.prices import load_prices
from gmai_client.results.batch_journal import BatchJournal
from gmai_client.results.rundir import SavedConfig
from gmai_client.results.spend import model_costs
from gmai_client.types import Record

SAVED = SavedConfig(
    config={
        "models": [
            {"backend": "openai", "target": "gpt-4o", "options": {}, "label": "gpt-4o"},
            {"backend": "random", "target": "", "options": {}, "label": "random"},
            {"backend": "openai", "target": "my-vlm", "options": {"price_in": "1", "price_out": "4"}, "label": "mine"},
        ]
    }
)


def _record(model: str, index: str, tokens_in: int, tokens_out: int, *, cached: bool = False) -> Record:
    return Record(index, model, "ok", "A", input_tokens=tokens_in, output_tokens=tokens_out, cached=cached)


def test_answers_are_priced_at_list_prices_batched_ones_at_the_discount(tmp_path: Path) -> None:
    prices = load_prices()
    records = [
        _record("gpt-4o", "1", 1000, 10),
        _record("gpt-4o", "2", 2000, 20, cached=True),  # paid for by an earlier run: still its cost
        _record("gpt-4o", "3", 3000, 30),
        _record("random", "1", 0, 0),
        _record("mine", "1", 1_000_000, 500_000),
    ]
    journal = BatchJournal(tmp_path)
    journal.intent(key="k", model="gpt-4o", vendor="openai", items={"c3": "3"}, requests=1, size=10)
    journal.submitted("k", "batch_1")
    journal.collected("k", "completed", {"completed": 1})

    costs = model_costs(tmp_path, records, SAVED, prices)

    price = prices.price("openai", "gpt-4o")
    assert price is not None and price.batch_discount < 1
    assert costs["gpt-4o"].usd == pytest.approx(price.cost(3000, 30) + price.cost(3000, 30, batch=True))
    assert (costs["gpt-4o"].input_tokens, costs["gpt-4o"].cached, costs["gpt-4o"].batched) == (6000, 1, 1)
    assert costs["random"].usd is None and costs["random"].shown == "-"
    assert costs["mine"].usd == pytest.approx(1.0 + 2.0) and costs["mine"].shown == "$3.00"
    assert costs["mine"].price_source == "-B price_in/price_out"


def test_a_folder_without_config_or_journal_has_no_price(tmp_path: Path) -> None:
    costs = model_costs(tmp_path, [_record("gpt-4o", "1", 10, 10)], None, load_prices())
    assert costs["gpt-4o"].usd is None and costs["gpt-4o"].input_tokens == 10
