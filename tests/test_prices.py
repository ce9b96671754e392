"""Tests for gmai_client.protocol.prices: the shipped table, prefixes, overrides and the batch discount."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from gmai_client.errors import ConfigError
from gmai_client.protocol.prices import load_prices


def test_longest_prefix_prices_a_dated_model_name() -> None:
    table = load_prices()
    mini = table.price("openai", "gpt-4o-mini-2024-07-18")
    full = table.price("openai", "gpt-4o-2024-08-06")
    assert mini is not None and full is not None and mini.input_per_m < full.input_per_m
    assert "prices.json" in full.source and full.as_of is not None
    assert full.age_days(date(2030, 1, 1)) > 365


def test_cost_live_and_batch() -> None:
    price = load_prices().price("openai", "gpt-4o")
    assert price is not None
    live = price.cost(1_000_000, 100_000)
    assert live == pytest.approx(price.input_per_m + 0.1 * price.output_per_m)
    assert price.cost(1_000_000, 100_000, batch=True) == pytest.approx(live * price.batch_discount)


def test_unknown_model_has_no_price_and_options_override() -> None:
    table = load_prices()
    assert table.price("openai", "my-local-llava") is None
    price = table.price("openai", "my-local-llava", {"price_in": "1", "price_out": "2"})
    assert (price.input_per_m, price.output_per_m, price.source) == (1.0, 2.0, "-B price_in/price_out")
    with pytest.raises(ConfigError, match="price_in"):
        table.price("openai", "x", {"price_in": "cheap"})


def test_a_user_file_is_laid_over_the_shipped_table(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"as_of": "2026-11-01", "models": {"openai:gpt-4o": {"input": 1, "output": 4}}}))
    table = load_prices(path)
    price = table.price("openai", "gpt-4o")
    assert (price.input_per_m, price.output_per_m) == (1.0, 4.0) and str(path) in price.source
    assert table.price("anthropic", "claude-sonnet-4-5") is not None  # the rest still shipped


def test_a_broken_user_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": {"openai:x": {"input": "free"}}}))
    with pytest.raises(ConfigError, match="numeric 'input' and 'output'"):
        load_prices(path)
