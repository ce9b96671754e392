"""Tests for gmai_client.runner.plan: what is left to send, its tokens, cost and time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gmai_client.cli import main
from gmai_client.protocol.prices import Price
from gmai_client.runner.plan import plan_model
from gmai_client.testing.fake_api import FakeAPI
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


def test_plan_and_the_run_agree_with_the_tokens_the_server_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The fake server reports usage by the vendors' documented image rules (written there apart
    # from the client's estimator); plan's estimate and the run's must match what it reports.
    pytest.importorskip("openai")
    pytest.importorskip("anthropic")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-plan-0123456789")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-plan-0123456789")
    with FakeAPI() as api:
        argv = [
            "--no-progress", "--limit", "12", "--out", str(tmp_path), "--max-tokens", "16",
            "-m", f"openai:gpt-4o@{api.base_url_openai}", "-m", f"anthropic:claude-sonnet-4-5@{api.base_url_anthropic}",
        ]  # fmt: skip
        assert main(["plan", *argv]) == 0
        planned = capsys.readouterr().out
        assert api.requests == []  # the plan sent nothing
        assert main(["run", *argv]) == 0
        assert main(["plan", *argv]) == 0  # everything is finished now: nothing left to send
        again = capsys.readouterr().out
    (run_dir,) = tmp_path.iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())["models"]
    for label, figures in metrics.items():
        assert figures["reported_input_tokens"] > 0
        assert figures["estimated_input_tokens"] == figures["reported_input_tokens"], label
        assert f"{figures['reported_input_tokens']:,}" in planned  # the plan said the same before the run
    assert "$0." in planned and "prices.json" in planned and "days old" in planned
    assert " 12 │       12 │      0 │       0 " in again  # 12 items, 12 finished, none cached, none to send


def test_plan_writes_nothing_not_even_the_cache_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache" / "responses.sqlite"
    argv = ["plan", "--limit", "3", "--out", str(tmp_path / "runs"), "--cache-path", str(cache)]
    assert main(argv) == 0
    assert "random" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # no cache file (nor its folder), no run folder
