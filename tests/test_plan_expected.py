"""plan for reasoning models: the output bound a thinking model needs, and an expected output beside
it (the mean of earlier answers of the same model, else the model families table's typical figure,
saying which), so that a plan's cost is not the ceiling alone; reasoning tokens billed as output in
the token budget."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("openai")

from gmai_client.backends.families import FAMILIES_ENV, load_families
from gmai_client.cli import EXIT_STOPPED, main
from gmai_client.protocol.prices import Price
from gmai_client.results.records import read_records
from gmai_client.runner.plan import ExpectedOutput, plan_model
from gmai_client.testing.fake_api import FakeAPI
from gmai_client.testing.fake_reasoning import OPENAI_REASONING_TOKENS
from gmai_client.types import Request, SamplingParams

PRICE = Price(input_per_m=1.0, output_per_m=10.0, batch_discount=0.5, source="test")


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-plan-expected-0123456789")
    monkeypatch.delenv(FAMILIES_ENV, raising=False)


def test_the_expected_output_prices_the_answers_and_never_exceeds_the_bound() -> None:
    requests = [Request(str(i), "q", params=SamplingParams(max_tokens=100)) for i in range(10)]
    plan = plan_model(
        "m", requests, finished=set(), is_cached=lambda r: False, estimate=lambda r: 1000, price=PRICE,
        expected=ExpectedOutput(40.0, "a test"),
    )  # fmt: skip
    assert (plan.output_tokens_max, plan.output_tokens_expected) == (1000, 400)
    assert plan.cost(expected=True) == pytest.approx((10_000 * 1.0 + 400 * 10.0) / 1e6)
    assert plan.cost() == pytest.approx((10_000 * 1.0 + 1000 * 10.0) / 1e6)
    chatty = plan_model(
        "m", requests, finished=set(), is_cached=lambda r: False, estimate=lambda r: 1000, price=PRICE,
        expected=ExpectedOutput(900.0, "a test"),
    )  # fmt: skip
    assert chatty.output_tokens_expected == chatty.output_tokens_max == 1000
    unknown = plan_model("m", requests, finished=set(), is_cached=lambda r: False, estimate=lambda r: 1, price=PRICE)
    assert unknown.output_tokens_expected is None and unknown.cost(expected=True) is None


def plan(tmp_path: Path, api: FakeAPI, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    argv = ["plan", "--limit", "6", "--out", str(tmp_path / "runs"), "-m", f"openai:gpt-5@{api.base_url_openai}"]
    assert main([*argv, *extra]) == 0
    return " ".join(capsys.readouterr().out.split())  # the console wraps long lines


def test_plan_of_a_new_reasoning_model_expects_the_family_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gpt5 = load_families().lookup("openai", "gpt-5")
    with FakeAPI() as api:
        printed = plan(tmp_path, api, capsys)
        assert api.requests == []
    assert f"{6 * gpt5.max_tokens:,}" in printed  # the bound a reasoning model needs, not --max-tokens' 512
    assert f"{6 * gpt5.typical_output:,}" in printed
    said = f"expected output {gpt5.typical_output:,} tokens an item, the model families table's typical figure"
    assert said in printed
    assert f"the bound is {gpt5.max_tokens:,} an item" in printed


def test_plan_after_a_run_expects_the_mean_of_its_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeAPI() as api:
        run = ["run", "--no-progress", "--limit", "3", "--out", str(tmp_path / "runs"), "--run-name", "first",
               "-m", f"openai:gpt-5@{api.base_url_openai}"]  # fmt: skip
        assert main(run) == 0
        capsys.readouterr()
        (done,) = {r.output_tokens for r in read_records(tmp_path / "runs/first/records.jsonl")}
        assert done > OPENAI_REASONING_TOKENS["medium"]  # the reasoning is in the output billed
        same_folder = plan(tmp_path, api, capsys, "--run-name", "first")
        other_folder = plan(tmp_path, api, capsys, "--run-name", "second")
    assert f"expected output {done:,} tokens an item, the mean of 3 earlier answers in the run folder" in same_folder
    assert f"{3 * done:,}" in same_folder  # 3 items left to send, each expected to take what the 3 took
    assert "the mean of 3 earlier answers in the response cache" in other_folder  # the same model, cached


def test_reasoning_tokens_are_spent_from_the_token_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeAPI() as api:
        code = main([
            "run", "--no-progress", "--limit", "6", "--out", str(tmp_path), "--run-name", "r", "--concurrency", "1",
            "--token-budget", "2000", "-m", f"openai:gpt-5@{api.base_url_openai}",
        ])  # fmt: skip
    # Each answer takes ~300 input and ~600 reasoning tokens: the budget is spent after 3, not 6.
    assert code == EXIT_STOPPED
    assert len(read_records(tmp_path / "r/records.jsonl")) == 3
    printed = capsys.readouterr()
    assert "token budget of 2,000 is spent" in " ".join((printed.out + printed.err).split())
