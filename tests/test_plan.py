"""Tests for gmai_client.plan: what is left to send, its tokens, cost and time."""

from __future__ import annotations

import pytest

from gmai_client.plan import plan_model
from gmai_client.prices import Price
from gmai_client.types import Request, SamplingParams

PRICE = Price(input_per_m=2.0, output_per_m=8.0, batch_discount=0.5, source="test")


def requests(n: int, max_tokens: int = 100) -> list[Request]:
    return [Request(str(i), "x" * 40, params=SamplingParams(max_tokens=max_tokens)) for i in range(n)]


def test_finished_and_cached_items_are_not_counted_as_sent() -> None:
    plan = plan_model(
        "m",
        requests(10),
        finished={"0", "1"},
        is_cached=lambda r: r.item_index in {"2", "3", "4"},
        estimate=lambda r: 1000,
        price=PRICE,
    )
    assert (plan.selected, plan.finished, plan.cached, plan.to_send) == (10, 2, 3, 5)
    assert (plan.input_tokens, plan.output_tokens_max, plan.input_tokens_per_item) == (5000, 500, 1000)


def test_cost_live_batch_and_time_from_the_limits() -> None:
    plan = plan_model(
        "m", requests(600), finished=set(), is_cached=lambda r: False, estimate=lambda r: 1000, price=PRICE,
        rpm=300, tpm=200_000,
    )  # fmt: skip
    live = (600_000 * 2.0 + 60_000 * 8.0) / 1e6
    assert plan.cost() == pytest.approx(live)
    assert plan.cost(batch=True) == pytest.approx(live / 2)
    assert plan.minutes == pytest.approx(max(600 / 300, 660_000 / 200_000))


def test_no_price_no_cost_and_no_limit_no_time() -> None:
    plan = plan_model(
        "m", requests(3), finished=set(), is_cached=lambda r: False, estimate=lambda r: len(r.text), price=None
    )
    assert plan.cost() is None and plan.minutes is None
