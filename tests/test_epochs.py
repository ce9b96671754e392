"""Tests for repeated samples (``--epochs N``): each sample its own request and cache entry, the headline
the first sample's, the spread, majority vote and agreement beside it; resume, batch mode and plan
count samples. Through the real OpenAI SDK against the fake API on loopback."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from gmai_client import RunConfig
from gmai_client.api import run
from gmai_client.cli import EXIT_OK, EXIT_USAGE, main
from gmai_client.config import ModelSpec
from gmai_client.errors import ConfigError
from gmai_client.protocol.prompt import build_request
from gmai_client.results.records import read_records
from gmai_client.testing.fake_api import FakeAPI
from gmai_client.testing.fake_wire import ReceivedRequest, request_key
from gmai_client.types import Item, SamplingParams
from tests.batch_kit import keys, sample_items, serve, spec

__all__ = ["keys"]  # the vendors' keys, for the fake API


def two_right_then_wrong(items: list[Item], params: SamplingParams) -> object:
    """The server's answers: right the first two times an item is asked, wrong the third (whichever
    sample's request comes first)."""
    right, wrong = {}, {}
    for item in items:
        key = request_key(build_request(item, params=params))
        right[key] = f"The answer is ({', '.join(item.answer or ('A',))})."
        other = next(letter for letter, _ in item.options if letter not in (item.answer or ()))
        wrong[key] = f"The answer is ({other})."

    def answer(request: ReceivedRequest) -> str:
        return right[request.key] if request.attempt <= 2 else wrong[request.key]

    return answer


def _config(api: FakeAPI, out: Path, name: str, epochs: int, **more: object) -> RunConfig:
    return RunConfig.build(
        [spec(api, "openai")], limit=6, epochs=epochs, params=SamplingParams(temperature=0.7), out=str(out),
        run_name=name,
        progress=False, **more,
    )  # fmt: skip


def test_every_sample_is_asked_the_headline_is_the_first_and_the_spread_is_beside_it(tmp_path: Path) -> None:
    items = sample_items(6)
    params = SamplingParams(temperature=0.7, seed=0)
    with FakeAPI(answers=two_right_then_wrong(items, params)) as api:  # type: ignore[arg-type]
        result = asyncio.run(run(_config(api, tmp_path, "three", 3)))
        assert len(api.requests) == 18 and set(Counter(r.key for r in api.requests).values()) == {3}
        # Each sample its own seed: one seed for all would make them one answer at any temperature.
        assert Counter(r.params.get("seed") for r in api.requests) == {0: 6, 1_000_003: 6, 2_000_006: 6}

        metrics = json.loads((result.run_dir / "metrics.json").read_text(encoding="utf-8"))
        records = read_records(result.run_dir / "records.jsonl")
        assert Counter(r.model for r in records) == {"gpt-4o": 6, "gpt-4o#2": 6, "gpt-4o#3": 6}
        first = [r for r in records if r.model == "gpt-4o"]
        assert list(metrics["models"]) == ["gpt-4o"]  # the samples are no columns of their own
        assert metrics["models"]["gpt-4o"]["overall"]["correct"] == sum(bool(r.correct) for r in first)
        summed = metrics["epochs"]["gpt-4o"]
        assert summed["samples"] == 3 and summed["items"] == 6
        assert summed["mean"] == pytest.approx(2 / 3)  # 12 right answers of 18, however they fell
        assert summed["majority"] == 1.0  # two of three right on every item
        assert summed["agreement"] == pytest.approx(2 / 3) and summed["unanimous"] == 0.0
        assert "3 samples per item" in (result.run_dir / "report.md").read_text(encoding="utf-8")
        page = (result.run_dir / "report.html").read_text(encoding="utf-8")
        assert "3 samples per item" in page and "Incomplete" not in page and "Finish the run" not in page

        # Each sample has its own cache entry: the same run in a new folder sends nothing, and a run
        # of one sample is served the first sample's answers.
        again = asyncio.run(run(_config(api, tmp_path, "again", 3)))
        assert len(api.requests) == 18 and len(again.records) == 18 and all(r.cached for r in again.records)
        single = asyncio.run(run(_config(api, tmp_path, "single", 1)))
        assert len(api.requests) == 18
        assert {r.index: r.prediction for r in single.records} == {r.index: r.prediction for r in first}


def test_resume_and_plan_count_samples_not_items(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = sample_items(6)
    with FakeAPI(answers=two_right_then_wrong(items, SamplingParams(temperature=0.7, seed=0))) as api:  # type: ignore[arg-type]
        base = ["--limit", "6", "--epochs", "2", "--temperature", "0.7", "-m", spec(api, "openai"), "--no-cache"]
        assert main(["plan", *base, "--out", str(tmp_path)]) == EXIT_OK
        planned = capsys.readouterr().out
        assert "gpt-4o#2" in planned and api.requests == []
        assert main(["run", *base, "--no-progress", "--out", str(tmp_path), "--run-name", "r"]) == EXIT_OK
        run_dir = tmp_path / "r"
        lines = (run_dir / "records.jsonl").read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if json.loads(line)["model"] != "gpt-4o#2"][:4] + [
            line for line in lines if json.loads(line)["model"] == "gpt-4o#2"
        ][:2]
        (run_dir / "records.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")  # as if killed
        sent = len(api.requests)
        assert main(["run", "--resume", str(run_dir), "--no-progress"]) == EXIT_OK
        assert len(api.requests) - sent == 6  # 2 of the first sample, 4 of the second
        assert Counter(r.model for r in read_records(run_dir / "records.jsonl")) == {"gpt-4o": 6, "gpt-4o#2": 6}
        # A different number of samples is another run: never resumed as this one.
        assert main(["run", "--resume", str(run_dir), "--epochs", "3", "--no-progress"]) == EXIT_USAGE


def test_batch_mode_sends_a_batch_per_sample(tmp_path: Path) -> None:
    items = sample_items(6)
    api, batches = serve(items, processing_polls=1)
    with api:
        config = _config(api, tmp_path, "batched", 2, batch=True, cache=False)
        config = config.updated(models=tuple(replace(m, options={"batch_poll": "0.02"}) for m in config.models))
        result = asyncio.run(run(config))
    assert len(batches.batch_ids()) == 2
    assert Counter(r.model for r in result.records) == {"gpt-4o": 6, "gpt-4o#2": 6}
    assert all(r.status == "ok" for r in result.records)


def test_a_label_that_names_another_models_sample_is_refused() -> None:
    config = RunConfig.build(["random"], epochs=2)
    with pytest.raises(ConfigError, match="names a sample"):
        config.updated(models=(*config.models, ModelSpec("random", label="random#2")))
    with pytest.raises(ConfigError, match="epochs"):
        RunConfig.build(["random"], epochs=0)
