"""Today's frontier models out of the box: whole runs of reasoning models through the command line,
the real ``openai`` / ``anthropic`` SDKs and the fake API, which enforces what the vendors enforce
for these families (``testing/fake_reasoning``) and answers every item right after thinking about
the wrong letters. A run succeeds with no option beyond the model's own; the thinking lands in the
record's own field and never in the letter; an answer cut while thinking is counted apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")

from gmai_client.backends.families import FAMILIES_ENV
from gmai_client.cli import main
from gmai_client.data.dataset import iter_items, open_dataset
from gmai_client.data.splits import sample_path
from gmai_client.results.records import read_records
from gmai_client.testing.fake_api import FakeAPI, oracle
from gmai_client.testing.fake_reasoning import OPENAI_REASONING_TOKENS
from gmai_client.types import Item

N_ITEMS = 6
QWEN = "Qwen/Qwen3-VL-8B-Thinking"


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-reasoning-0123456789")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-reasoning-0123456789")
    monkeypatch.delenv(FAMILIES_ENV, raising=False)


def sample_items() -> list[Item]:
    return [e for e in iter_items(open_dataset([sample_path()])) if isinstance(e, Item)][:N_ITEMS]


def run(tmp_path: Path, api: FakeAPI, *models: tuple[str, str, list[str]]) -> int:
    argv = ["run", "--no-progress", "--limit", str(N_ITEMS), "--out", str(tmp_path / "runs"), "--run-name", "r"]
    for label, spec, options in models:
        url = api.base_url_anthropic if spec.startswith("anthropic:") else api.base_url_openai
        argv += ["--model", f"{spec}@{url}", "-B", f"label={label}"]
        for option in options:
            argv += ["-B", option]
    return main(argv)


def test_four_reasoning_models_run_with_no_other_option(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with FakeAPI(answers=oracle(sample_items())) as api:
        code = run(
            tmp_path, api,
            ("gpt-5", "openai:gpt-5", []),
            ("o4-mini", "openai:o4-mini", []),
            ("claude", "anthropic:claude-sonnet-4-5", ["thinking_budget=2048"]),
            ("qwen3-vl", f"openai:{QWEN}", []),
        )  # fmt: skip
        sent = {r.model: dict(r.params) for r in api.requests}
    printed = capsys.readouterr().out
    assert code == 0, printed
    models = json.loads((tmp_path / "runs/r/metrics.json").read_text())["models"]
    assert {label: m["overall"]["accuracy"] for label, m in models.items()} == dict.fromkeys(models, 1.0)
    assert "temperature" not in sent["gpt-5"] and sent["gpt-5"]["max_completion_tokens"] >= 25000
    assert sent["claude-sonnet-4-5"]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["claude-sonnet-4-5"]["max_tokens"] > 2048 and "temperature" not in sent["claude-sonnet-4-5"]
    records = {(r.model, r.index): r for r in read_records(tmp_path / "runs/r/records.jsonl")}
    for (label, _), record in records.items():
        assert record.status == "ok" and record.prediction.startswith("The answer is (")
        assert "Option A looks plausible" in record.thinking or label in ("gpt-5", "o4-mini")
        assert "<think>" not in record.prediction and "</think>" not in record.prediction
    medium = OPENAI_REASONING_TOKENS["medium"]  # the fake's default effort
    assert models["gpt-5"]["reasoning_tokens"] == N_ITEMS * medium
    assert models["gpt-5"]["output_tokens"] > N_ITEMS * medium  # the reasoning is part of the output billed
    assert f"{N_ITEMS * medium:,} of its" in printed and "were reasoning" in printed


def test_a_server_with_a_reasoning_parser_and_redacted_thinking(tmp_path: Path) -> None:
    with FakeAPI(answers=oracle(sample_items())) as api:
        api.reasoning_field, api.redact_thinking = "reasoning_content", True
        code = run(
            tmp_path, api,
            ("qwen3-vl", f"openai:{QWEN}", []),
            ("opus", "anthropic:claude-opus-4-7", ["thinking=adaptive", "reasoning_effort=low"]),
        )  # fmt: skip
    assert code == 0
    records = read_records(tmp_path / "runs/r/records.jsonl")
    assert all(r.correct and r.thinking.startswith("Option A") for r in records)
    assert all("[redacted thinking]" in r.thinking for r in records if r.model == "opus")


def test_an_answer_cut_while_thinking_is_counted_apart(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with FakeAPI(answers=oracle(sample_items())) as api:
        code = run(
            tmp_path, api,
            ("qwen3-vl", f"openai:{QWEN}", ["max_tokens=512"]),  # its thinking takes more than 512 tokens
            ("gpt-5", "openai:gpt-5", ["max_tokens=300", "reasoning_effort=high"]),
        )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    records = read_records(tmp_path / "runs/r/records.jsonl")
    assert {r.status for r in records} == {"thinking_length"}
    assert all(r.correct is False and r.letters == () and r.prediction == "" for r in records)
    assert all(r.thinking.startswith("Option A") for r in records if r.model == "qwen3-vl")  # never read for a letter
    models = json.loads((tmp_path / "runs/r/metrics.json").read_text())["models"]
    assert models["qwen3-vl"]["thinking_cut"] == N_ITEMS and models["qwen3-vl"]["overall"]["accuracy"] == 0.0
    assert f"{N_ITEMS} answers ran out of tokens while thinking" in printed
    report = (tmp_path / "runs/r/report.html").read_text()
    assert "the output bound ran out while the model was thinking" in report
    assert '<details class="thinking">' in report and "not scored" in report


def test_a_refused_setting_fails_before_anything_is_sent(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with FakeAPI() as api:
        code = run(tmp_path, api, ("gpt-4o", "openai:gpt-4o", ["reasoning_effort=high"]))
        assert api.requests == []
    assert code == 2
    assert "takes no reasoning_effort" in capsys.readouterr().err
