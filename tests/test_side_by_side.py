"""One command, three kinds of backend, one comparison table; and the LLM judge.

An API model (the real OpenAI SDK against ``FakeAPI``, which knows every answer), a model behind a
real Triton server (``echo``: always the first option letter) and a local transformers model (a
tiny random Llava) are evaluated side by side on the bundled sample through the command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("aiohttp")

from gmai_client.cli import EXIT_STOPPED, main
from gmai_client.data.dataset import iter_items, open_dataset
from gmai_client.data.splits import sample_path
from gmai_client.protocol.reference import REFUSAL_PHRASES, judge_prompt
from gmai_client.results.records import read_records
from gmai_client.testing.fake_api import FakeAPI, item_key, oracle
from gmai_client.types import Item
from tests.conftest import Server

N_ITEMS = 24


def sample_items(n: int) -> list[Item]:
    return [e for e in iter_items(open_dataset([sample_path()])) if isinstance(e, Item)][:n]


def test_api_triton_and_torch_models_in_one_command(
    tmp_path: Path, triton_server: Server, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("tritonclient")
    from gmai_client.testing.tiny_models import build_tiny_llava

    tiny = build_tiny_llava(tmp_path / "tiny-llava")
    items = sample_items(N_ITEMS)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-side-by-side-0123456789")
    with FakeAPI(answers=oracle(items)) as api:
        code = main(
            [
                "run", "--no-progress", "--limit", str(N_ITEMS), "--out", str(tmp_path / "runs"), "--run-name", "mix",
                "--model", f"openai:gpt-4o@{api.base_url_openai}", "-B", "label=gpt-4o",
                "--model", f"triton:echo@{triton_server.endpoint('grpc')}", "-B", "label=triton-echo",
                "--model", f"torch:{tiny}", "-B", "label=tiny-llava", "-B", "max_batch_size=4",
            ]
        )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    metrics = json.loads((tmp_path / "runs/mix/metrics.json").read_text())
    models = metrics["models"]
    assert list(models) == ["gpt-4o", "triton-echo", "tiny-llava"]
    assert models["gpt-4o"]["overall"]["accuracy"] == 1.0
    records = read_records(tmp_path / "runs/mix/records.jsonl")
    echo = [r for r in records if r.model == "triton-echo"]
    # echo answers the first option's letter: right exactly where the key is "A".
    assert len(echo) == N_ITEMS and all(r.status == "ok" and r.correct == (r.answer == ("A",)) for r in echo)
    tiny_records = [r for r in records if r.model == "tiny-llava"]
    assert len(tiny_records) == N_ITEMS and not any(r.status == "error" for r in tiny_records)
    # The comparison: deltas against the first model, on the items all three answered.
    comparison = metrics["comparison"]
    assert comparison["reference"] == "gpt-4o"
    expected_echo = sum(r.correct for r in echo) / N_ITEMS
    assert comparison["overall_deltas"]["triton-echo"] == pytest.approx(expected_echo - 1.0)
    assert "Δ triton-echo" in printed and "Δ tiny-llava" in printed


def test_judge_maps_unreadable_answers_and_never_guesses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("anthropic")
    items = [item for item in sample_items(40) if not item.is_multi_answer][:12]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-judge-0123456789")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-judge-0123456789")
    rambling = "Hard to say; it resembles the second finding I described earlier, more or less."
    answers = {key: rambling for key in oracle(items)}
    # The judge (Claude via the fake) maps the first 8 to the key and answers Z for the rest.
    for number, item in enumerate(items):
        verdict = (item.answer or ("A",))[0] if number < 8 else "Z"
        answers[item_key(judge_prompt(item.question, item.options, rambling), [])] = verdict
    cache = str(tmp_path / "cache.sqlite")
    with FakeAPI(answers=answers) as api:
        args = [
            "run", "--no-progress", "--out", str(tmp_path / "runs"), "--cache-path", cache,
            "--data", str(tmp_path / "d.tsv"),
            "--model", f"openai:gpt-4o@{api.base_url_openai}", "-B", "label=gpt",
            "--judge", f"anthropic:claude-judge@{api.base_url_anthropic}",
        ]  # fmt: skip
        _write_subset(items, tmp_path / "d.tsv")
        assert main(args) == 0
        judged_requests = [r for r in api.requests if r.api == "anthropic"]
        assert main([*args, "--run-name", "again"]) == 0  # a second run: model and judge from the cache
        assert len([r for r in api.requests if r.api == "anthropic"]) == len(judged_requests) == 12
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.name != "again"]
    records = {r.index: r for r in read_records(run_dir / "records.jsonl")}
    for number, item in enumerate(items):
        record = records[item.index]
        if number < 8:
            assert record.status == "ok" and record.correct and record.rule.startswith("judge")
        else:  # Z: no option matches, wrong (VLMEvalKit records Z too)
            assert record.status == "refused" and record.letters == ("Z",) and "no option matches" in record.rule
            assert record.correct is False
    judge = json.loads((run_dir / "metrics.json").read_text())["run"]["judge"]
    assert judge["asked"] == 12 and judge["rescued"] == 8 and judge["no_match"] == 4 and judge["requests"] == 12
    again = json.loads((tmp_path / "runs/again/metrics.json").read_text())["run"]["judge"]
    assert again["cache_hits"] == 12 and again["requests"] == 0


def test_a_failing_judge_leaves_the_item_unparsed_after_three_tries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [item for item in sample_items(20) if not item.is_multi_answer][:3]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-judge-0123456789")
    _write_subset(items, tmp_path / "d.tsv")
    with FakeAPI(answers={key: "no idea at all" for key in oracle(items)}) as api:
        for item in items:  # every judge call is refused (a 400: no retry within a try)
            api.inject(
                "status",
                key=item_key(judge_prompt(item.question, item.options, "no idea at all"), []),
                status=400,
                times=3,
            )
        code = main(
            [
                "run", "--no-progress", "--no-cache", "--out", str(tmp_path / "runs"),
                "--data", str(tmp_path / "d.tsv"),
                "--model", f"openai:gpt-4o@{api.base_url_openai}", "--judge", f"openai:judge@{api.base_url_openai}",
            ]
        )  # fmt: skip
        judge_calls = [r for r in api.requests if r.model == "judge"]
    # VLMEvalKit's three tries per item; three items in a row whose every call failed stop the judge (exit 3).
    assert code == EXIT_STOPPED and len(judge_calls) == 3 * 3
    (run_dir,) = (tmp_path / "runs").iterdir()
    records = read_records(run_dir / "records.jsonl")
    assert len(records) == 3
    # Where VLMEvalKit would draw a random letter, the item stays unparsed, and the count is shown.
    assert all(r.status == "unparsed" and r.letters == () and r.correct is False for r in records)
    assert all("every call failed" in r.rule or "stopped (every call failed" in r.rule for r in records)
    judge = json.loads((run_dir / "metrics.json").read_text())["run"]["judge"]
    assert judge["fallback"] == 3 and judge["requests"] == 9 and judge["failed_calls"] == 9
    assert judge["failed_items"] == 3 and judge["stopped"].startswith("every call failed for 3 items in a row")


def test_a_judge_with_a_bad_key_is_stopped_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    items = [item for item in sample_items(20) if not item.is_multi_answer][:4]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-judge-0123456789")
    _write_subset(items, tmp_path / "d.tsv")
    with FakeAPI(answers={key: "no idea at all" for key in oracle(items)}) as api:
        for item in items:
            api.inject(
                "status", key=item_key(judge_prompt(item.question, item.options, "no idea at all"), []), status=401
            )
        code = main(
            [
                "run", "--no-progress", "--no-cache", "--out", str(tmp_path / "runs"), "-c", "1",
                "--data", str(tmp_path / "d.tsv"),
                "--model", f"openai:gpt-4o@{api.base_url_openai}", "--judge", f"openai:judge@{api.base_url_openai}",
            ]
        )  # fmt: skip
        judge_calls = [r for r in api.requests if r.model == "judge"]
    assert code == EXIT_STOPPED and len(judge_calls) == 1  # a 401 stops the judge: no further calls, exit 3
    (run_dir,) = (tmp_path / "runs").iterdir()
    judge = json.loads((run_dir / "metrics.json").read_text())["run"]["judge"]
    assert judge["requests"] == 1 and judge["fallback"] == 4 and judge["stopped"]
    assert all("stopped" in r.rule for r in read_records(run_dir / "records.jsonl"))


def test_the_judge_is_never_asked_about_an_answer_the_rules_read_as_a_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # VLMEvalKit asks its judge only where its rules find no letter; a refusal (Z) is a finding.
    items = [item for item in sample_items(20) if not item.is_multi_answer][:4]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-judge-0123456789")
    _write_subset(items, tmp_path / "d.tsv")
    said = [REFUSAL_PHRASES[0], "I would say Z.", "Hard to say, more or less.", REFUSAL_PHRASES[3]]
    answers = {key: said[number] for number, key in enumerate(oracle(items))}
    for item in items:
        answers[item_key(judge_prompt(item.question, item.options, said[2]), [])] = item.options[0][0]
    with FakeAPI(answers=answers) as api:
        code = main(
            [
                "run", "--no-progress", "--no-cache", "--out", str(tmp_path / "runs"),
                "--data", str(tmp_path / "d.tsv"),
                "--model", f"openai:gpt-4o@{api.base_url_openai}", "--judge", f"openai:judge@{api.base_url_openai}",
            ]
        )  # fmt: skip
        judge_calls = [r for r in api.requests if r.model == "judge"]
    assert code == 0
    assert len(judge_calls) == 1  # the one answer no rule could read
    (run_dir,) = (tmp_path / "runs").iterdir()
    records = {r.prediction: r for r in read_records(run_dir / "records.jsonl")}
    for refusal in (said[0], said[1], said[3]):
        assert records[refusal].status == "refused" and not records[refusal].rule.startswith("judge")
    assert records[said[2]].rule.startswith("judge")
    judge = json.loads((run_dir / "metrics.json").read_text())["run"]["judge"]
    assert judge["asked"] == 1


def _write_subset(items: list[Item], path: Path) -> None:
    """The chosen sample rows as their own TSV (so a run has exactly these items)."""
    wanted = {item.index for item in items}
    lines = sample_path().read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    index_col = header.split("\t").index("index")
    kept = [row for row in rows if row.split("\t")[index_col] in wanted]
    path.write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")
