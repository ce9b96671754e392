"""Long API runs under real failure: faults, rate limits, a SIGKILL mid-run, the cache, budgets, secrets.

The real OpenAI and Anthropic SDKs talk to ``FakeAPI`` on 127.0.0.1, which answers every item of
the bundled sample correctly (its oracle) unless a seeded fault is drawn, and which checks that no
request arrives before the retry hint it gave has expired.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")
pytest.importorskip("aiohttp")

from gmai_client.cli import EXIT_ERRORS, EXIT_STOPPED, main
from gmai_client.data.dataset import iter_items, open_dataset
from gmai_client.data.splits import sample_path
from gmai_client.protocol.prompt import build_request
from gmai_client.results.records import read_records
from gmai_client.testing.fake_api import FakeAPI, Faults, oracle, request_key
from gmai_client.types import Item, SamplingParams

OPENAI_KEY = "sk-test-RELIABILITY-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-RELIABILITY-0123456789"

#: 30% of first attempts fail, in every way the issue lists (and attempts after them too).
FAULT_MIX = {
    "429": 0.04,
    "429-date": 0.03,
    "429-ms": 0.03,
    "429-reset": 0.03,
    "500": 0.03,
    "502": 0.02,
    "503": 0.02,
    "529": 0.02,
    "hang": 0.02,
    "reset": 0.02,
    "cut": 0.01,
    "truncated": 0.01,
    "malformed": 0.01,
    "empty": 0.01,
}


def sample_items(n: int) -> list[Item]:
    items = [e for e in iter_items(open_dataset([sample_path()])) if isinstance(e, Item)]
    return items[:n]


def key_of(item: Item) -> str:
    return request_key(build_request(item, params=SamplingParams()))


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)


def run_cli(*args: str) -> int:
    return main(["run", "--no-progress", *args])


def right(record) -> bool:
    """The oracle's answer was read as right. A multi-answer key ("A,C") is never a hit of the
    headline (VLMEvalKit's reading, by its design): for those items the lenient reading decides."""
    return bool(record.lenient_correct if record.is_multi_answer else record.correct)


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["models"]


def only_run_dir(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def test_thirty_percent_faults_every_item_answered_and_correct(tmp_path: Path, keys: None) -> None:
    items = sample_items(80)
    faults = Faults(FAULT_MIX, seed=11, retry_after=0.3, hang_seconds=5)
    with FakeAPI(answers=oracle(items), faults=faults) as api:
        started = time.monotonic()
        code = run_cli(
            "--limit", str(len(items)), "--no-cache", "--attempt-timeout", "1", "--out", str(tmp_path),
            "-m", f"openai:gpt-4o@{api.base_url_openai}", "-B", "label=gpt",
            "-m", f"anthropic:claude@{api.base_url_anthropic}", "-B", "label=claude",
        )  # fmt: skip
        wall = time.monotonic() - started
        stats = api.stats()
    assert code == 0
    faults_met = sum(n for outcome, n in stats["outcomes"].items() if outcome != "ok")
    assert faults_met >= 0.25 * 2 * len(items)  # the mix really was ~30% of first attempts
    assert stats["violations"] == []  # no request before its Retry-After expired
    records = read_records(only_run_dir(tmp_path) / "records.jsonl")
    assert len(records) == 2 * len(items)
    assert all(r.status != "error" and right(r) for r in records)
    retried = [r for r in records if r.attempts > 1]
    assert retried and all(len(r.retries) == r.attempts - 1 for r in retried)
    assert sum(r.attempts for r in records) == stats["requests"]  # every request is accounted for
    for label in ("gpt", "claude"):
        assert metrics_of(only_run_dir(tmp_path))[label]["overall"]["lenient_accuracy"] == 1.0
    kinds = ", ".join(f"{outcome} {n}" for outcome, n in sorted(stats["outcomes"].items()) if outcome != "ok")
    print(
        f"\nfault mix: {2 * len(items)} items, {stats['requests']} requests, {faults_met} faults ({kinds}), "
        f"{sum(len(r.retries) for r in records)} retries, 0 sent before Retry-After, {wall:.1f} s"
    )


def test_server_rate_limit_is_respected_with_rpm_and_survived_without(tmp_path: Path, keys: None) -> None:
    items = sample_items(24)
    with FakeAPI(answers=oracle(items), rate_limit=10, rate_window=1.0) as api:
        spec = f"openai:gpt-4o@{api.base_url_openai}"
        # 4 per second (bursts of at most 4) stays under the server's 10 in any second: no 429 at all.
        assert run_cli("--limit", "12", "--no-cache", "--rpm", "240", "--out", str(tmp_path / "a"), "-m", spec) == 0
        assert api.stats()["outcomes"] == {"ok": 12}
        api.reset()
        # No client limit: 429s come back with Retry-After, are honoured, and every item is answered.
        assert run_cli("--limit", "24", "--no-cache", "-c", "16", "--out", str(tmp_path / "b"), "-m", spec) == 0
        stats = api.stats()
    assert stats["outcomes"].get("rate_limit", 0) > 0 and stats["violations"] == []
    records = read_records(only_run_dir(tmp_path / "b") / "records.jsonl")
    assert len(records) == 24 and all(right(r) for r in records)


def test_sigkill_mid_run_then_rerun_loses_and_resends_nothing(tmp_path: Path, keys: None) -> None:
    items = sample_items(120)
    key_by_index = {item.index: key_of(item) for item in items}
    with FakeAPI(answers=oracle(items), latency=0.05) as api:
        command = [
            sys.executable, "-m", "gmai_client", "run", "--no-progress", "--no-cache", "--limit", "120",
            "-c", "4", "--out", str(tmp_path / "runs"), "-m", f"openai:gpt-4o@{api.base_url_openai}",
        ]  # fmt: skip
        env = {**os.environ, "OPENAI_API_KEY": OPENAI_KEY}
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        journal = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = tmp_path / "runs"
            if journal is None and runs.exists() and any(runs.iterdir()):
                journal = only_run_dir(runs) / "records.jsonl"
            if journal is not None and journal.exists() and journal.read_text().count("\n") >= 30:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert journal is not None
        finished_before = {r.index for r in read_records(journal)}  # readable even if the kill tore a line
        assert 30 <= len(finished_before) < 120
        sent_before = api.counts

        resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        counts = api.counts
        api.reset()
        clean = subprocess.run(
            [*command[:-3], str(tmp_path / "clean"), *command[-2:]], env=env, capture_output=True, timeout=120
        )
        assert clean.returncode == 0

    for index in finished_before:
        assert counts[key_by_index[index]] == 1, f"item {index} finished before the kill but was sent again"
    in_flight = [i for i in key_by_index if i not in finished_before and sent_before[key_by_index[i]]]
    assert len(in_flight) <= 4  # at most the requests in flight at the kill were lost
    assert sum(counts.values()) == 120 + len(in_flight)
    records = read_records(journal)
    assert sorted(r.index for r in records) == sorted(key_by_index)
    resumed_metrics, clean_metrics = metrics_of(journal.parent), metrics_of(only_run_dir(tmp_path / "clean"))
    for model, figures in clean_metrics.items():
        figures.pop("mean_latency_s")  # wall-clock, the only figure allowed to differ
        resumed_metrics[model].pop("mean_latency_s")
    assert resumed_metrics == clean_metrics
    print(f"\nkill/resume: {len(finished_before)} finished before SIGKILL, {len(in_flight)} in flight re-sent")


def test_rerun_with_the_cache_sends_nothing(tmp_path: Path, keys: None) -> None:
    items = sample_items(40)
    cache = tmp_path / "cache.sqlite"
    with FakeAPI(answers=oracle(items)) as api:
        spec = f"anthropic:claude@{api.base_url_anthropic}"
        common = ("--limit", "40", "--cache-path", str(cache), "-m", spec)
        assert run_cli("--out", str(tmp_path / "first"), *common) == 0
        assert api.stats()["requests"] == 40
        # A new run folder (nothing to resume) answered from the cache alone.
        assert run_cli("--out", str(tmp_path / "second"), *common) == 0
        assert api.stats()["requests"] == 40
        # A different temperature is a different question: all misses.
        assert run_cli("--out", str(tmp_path / "third"), "--temperature", "0.7", *common) == 0
        assert api.stats()["requests"] == 80
    second = read_records(only_run_dir(tmp_path / "second") / "records.jsonl")
    assert all(r.cached and r.attempts == 0 and right(r) for r in second)
    assert metrics_of(only_run_dir(tmp_path / "second"))["claude"]["cached"] == 40


def test_errors_are_not_cached(tmp_path: Path, keys: None) -> None:
    items = sample_items(6)
    cache = tmp_path / "cache.sqlite"
    with FakeAPI(answers=oracle(items)) as api:
        spec = f"openai:gpt-4o@{api.base_url_openai}"
        api.inject("status", times=6, status=400, message="bad request")
        common = ("--limit", "6", "--cache-path", str(cache), "-c", "1", "-m", spec)
        assert run_cli("--out", str(tmp_path / "first"), *common) == EXIT_ERRORS  # every item failed: not 0
        failed = read_records(only_run_dir(tmp_path / "first") / "records.jsonl")
        assert all(r.status == "error" and r.error_kind == "bad_request" and r.attempts == 1 for r in failed)
        assert run_cli("--out", str(tmp_path / "second"), *common) == 0
    second = read_records(only_run_dir(tmp_path / "second") / "records.jsonl")
    assert all(r.status == "ok" and not r.cached for r in second)


def test_quota_exhaustion_stops_the_model_at_once(tmp_path: Path, keys: None, capsys) -> None:
    items = sample_items(50)
    with FakeAPI(answers=oracle(items)) as api:
        api.inject("quota", times=50)
        code = run_cli(
            "--limit",
            "50",
            "--no-cache",
            "-c",
            "2",
            "--out",
            str(tmp_path),
            "-m",
            f"openai:gpt-4o@{api.base_url_openai}",
        )
        sent = api.stats()["requests"]
    assert code == EXIT_STOPPED  # a CI job sees the failure
    assert sent <= 2  # not thousands of failing calls: the first answer stops the model
    assert "stopped early" in capsys.readouterr().out
    records = read_records(only_run_dir(tmp_path) / "records.jsonl")
    assert records == []  # nothing recorded: a rerun after topping up sends every item


def test_max_errors_ends_a_failing_run(tmp_path: Path, keys: None) -> None:
    items = sample_items(60)
    with FakeAPI(answers=oracle(items)) as api:
        api.inject("status", times=60, status=400, message="unsupported parameter")
        code = run_cli(
            "--limit", "60", "--no-cache", "-c", "1", "--max-errors", "5", "--out", str(tmp_path),
            "-m", f"openai:gpt-4o@{api.base_url_openai}",
        )  # fmt: skip
        sent = api.stats()["requests"]
    assert code == EXIT_STOPPED and sent == 5
    metrics = json.loads((only_run_dir(tmp_path) / "metrics.json").read_text())
    assert "5 of 5 items failed" in metrics["run"]["models"]["gpt-4o"]["stopped"]


def test_token_budget_stops_cleanly_with_partial_results(tmp_path: Path, keys: None) -> None:
    items = sample_items(40)
    with FakeAPI(answers=oracle(items)) as api:
        spec = f"openai:gpt-4o@{api.base_url_openai}"
        code = run_cli(
            "--limit", "40", "--no-cache", "-c", "1", "--token-budget", "1500", "--out", str(tmp_path), "-m", spec
        )
        sent = api.stats()["requests"]
    assert code == EXIT_STOPPED and 0 < sent < 40
    records = read_records(only_run_dir(tmp_path) / "records.jsonl")
    assert len(records) == sent and all(right(r) for r in records)
    assert sum((r.input_tokens or 0) + (r.output_tokens or 0) for r in records[:-1]) < 1500


def test_api_keys_reach_no_output_of_a_run(tmp_path: Path, keys: None, capsys) -> None:
    items = sample_items(30)
    cache = tmp_path / "cache.sqlite"
    faults = Faults({"500": 0.2, "429": 0.2}, seed=3, retry_after=0.1)
    with FakeAPI(answers=oracle(items), faults=faults, require_key=OPENAI_KEY) as api:
        code = run_cli(
            "--limit", "30", "--cache-path", str(cache), "--max-attempts", "2", "--out", str(tmp_path / "runs"),
            "-m", f"openai:gpt-4o@{api.base_url_openai}", "-m", f"anthropic:claude@{api.base_url_anthropic}",
        )  # fmt: skip
    assert code == EXIT_STOPPED  # the Anthropic key is refused: that model stops
    printed = capsys.readouterr()
    records = read_records(only_run_dir(tmp_path / "runs") / "records.jsonl")
    assert any(r.status == "error" and "401" in r.error for r in records) or any(
        "401" in line for line in printed.out.splitlines()
    )  # the Anthropic key is refused by the server, so its errors went through the output
    outputs = [printed.out, printed.err]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            outputs.append(path.read_bytes().decode("utf-8", "replace"))
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, OPENAI_KEY[8:24], ANTHROPIC_KEY[12:28]):
        assert not any(secret in text for text in outputs), f"a key fragment leaked: {secret[:6]}..."


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("index\tquestion\tA\tB\tanswer\timage\n1\tq?\ta\tb\tA\t!!notbase64!!\n", "index 1"),
        ("index\tquestion\tanswer\timage\n1\tq?\tA\tAAAA\n", "missing required column(s) a, b"),
        ("index\tquestion\tA\tB\tanswer\timage\n1\tq?\ta\tb\tE\tAAAA\n", "answer"),
    ],
    ids=["empty-file", "bad-base64", "no-option-columns", "answer-outside-options"],
)
def test_bad_input_is_named_and_nothing_is_lost(tmp_path: Path, content: str, message: str, capsys) -> None:
    data = tmp_path / "bad.tsv"
    data.write_text(content, encoding="utf-8")
    code = main(["run", "--no-progress", "--data", str(data), "--out", str(tmp_path / "runs")])
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert "Traceback" not in text
    assert str(data.name) in text or code == 0
    assert message in text or any(message in r.error for r in _records(tmp_path / "runs"))


def test_truncated_tsv_keeps_every_complete_row(tmp_path: Path, small_tsv: Path, capsys) -> None:
    raw = small_tsv.read_bytes()
    data = tmp_path / "truncated.tsv"
    data.write_bytes(raw[: int(len(raw) * 0.6)])  # the download stopped mid-row
    code = main(["run", "--no-progress", "--data", str(data), "--out", str(tmp_path / "runs")])
    assert code == EXIT_ERRORS and "Traceback" not in capsys.readouterr().err  # the torn row is an error
    records = _records(tmp_path / "runs")
    errors = [r for r in records if r.status == "error"]
    assert len(errors) == 1 and "truncated.tsv" in errors[0].error  # the torn last row, named
    assert len(records) - 1 >= 30  # every complete row before it was evaluated


def test_a_folder_without_tsv_files_is_a_clear_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code = main(["run", "--no-progress", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "empty" in err and "Traceback" not in err


def _records(out: Path) -> list:
    if not out.exists():
        return []
    return [r for run_dir in out.iterdir() for r in read_records(run_dir / "records.jsonl")]


def test_resume_a_run_folder_and_retry_only_its_errors(tmp_path: Path, keys: None) -> None:
    items = sample_items(20)
    with FakeAPI(answers=oracle(items)) as api:
        api.inject("status", times=5, status=400, message="malformed request")
        spec = f"openai:gpt-4o@{api.base_url_openai}"
        assert run_cli("--limit", "20", "--no-cache", "-c", "1", "--out", str(tmp_path), "-m", spec) == EXIT_ERRORS
        run_dir = only_run_dir(tmp_path)
        assert sum(r.status == "error" for r in read_records(run_dir / "records.jsonl")) == 5
        # Resuming as is: every item is finished, nothing is sent (and the errors are still there).
        assert run_cli("--resume", str(run_dir), "--no-cache") == EXIT_ERRORS
        assert api.stats()["requests"] == 20
        # --retry-errors re-sends exactly the five failed items.
        assert run_cli("--resume", str(run_dir), "--no-cache", "--retry-errors") == 0
        assert api.stats()["requests"] == 25
    records = read_records(run_dir / "records.jsonl")
    assert len(records) == 20 and all(right(r) for r in records)


def test_cache_commands_stats_explain_clear(tmp_path: Path, keys: None, capsys) -> None:
    items = sample_items(5)
    cache = str(tmp_path / "cache.sqlite")
    with FakeAPI(answers=oracle(items)) as api:
        spec = f"openai:gpt-4o@{api.base_url_openai}"
        assert run_cli("--limit", "5", "--cache-path", cache, "--out", str(tmp_path), "-m", spec) == 0
    capsys.readouterr()

    assert main(["cache", "stats", "--cache-path", cache]) == 0
    assert "entries: 5" in capsys.readouterr().out

    index = items[0].index
    assert main(["cache", "explain", "--cache-path", cache, "-m", spec, "--index", index]) == 0
    assert "hit" in capsys.readouterr().out
    other = ["cache", "explain", "--cache-path", cache, "--index", index, "--temperature", "0.5", "--seed", "1"]
    assert main([*other, "-m", spec.replace("gpt-4o", "gpt-4o-mini")]) == 0
    said = capsys.readouterr().out
    assert "miss" in said and "identity.model" in said and "temperature" in said and "seed" in said

    assert main(["cache", "clear", "--cache-path", cache]) == 0
    assert "deleted 5 entries" in capsys.readouterr().out


def test_a_corrupt_cache_file_costs_no_answer_and_the_cache_command_copes(
    tmp_path: Path, keys: None, capsys, caplog
) -> None:
    items = sample_items(12)
    cache = tmp_path / "cache.sqlite"
    cache.write_bytes(b"not a database at all\n" * 100)
    unreadable = {key_of(item) for item in items[::2]}  # half the answers no rule can read: the judge runs

    def answer(received) -> str:
        if received.model == "judge":
            return "B"
        return "Hmm, hard to say." if received.key in unreadable else "A"

    with FakeAPI(answers=answer) as api:
        run_cli(
            "--limit", "12", "--cache-path", str(cache), "--out", str(tmp_path / "runs"),
            "-m", f"openai:gpt-4o@{api.base_url_openai}", "--judge", f"openai:judge@{api.base_url_openai}",
        )  # fmt: skip
    records = read_records(only_run_dir(tmp_path / "runs") / "records.jsonl")
    assert len(records) == 12 and not [r for r in records if r.status == "error"]
    assert sum(r.rule.startswith("judge") for r in records) == 6
    moved = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(moved) == 1 and str(cache) in moved[0]
    capsys.readouterr()

    cache.write_bytes(b"garbage again\n" * 100)
    assert main(["cache", "stats", "--cache-path", str(cache)]) != 0
    said = capsys.readouterr().err
    assert "corrupt" in said and "cache.sqlite" in said and "Traceback" not in said
    # A file that is not provably the response cache is never deleted, not even by `cache clear` (D4).
    assert main(["cache", "clear", "--cache-path", str(cache)]) == 2
    said = capsys.readouterr().err
    assert "cache.sqlite" in said and "Traceback" not in said
    assert cache.read_bytes() == b"garbage again\n" * 100


def test_vendor_base_url_variables_send_every_request_to_the_server_they_name(
    tmp_path: Path, keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    items = sample_items(5)
    cache = tmp_path / "cache.sqlite"
    with FakeAPI(answers=oracle(items)) as api:
        monkeypatch.setenv("OPENAI_BASE_URL", api.base_url_openai)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url_anthropic)
        run_cli(
            "--limit", "5", "--cache-path", str(cache), "--out", str(tmp_path / "runs"),
            "-m", "openai:gpt-4o", "-m", "anthropic:claude-x",
        )  # fmt: skip
        received = sorted({(r.api, r.model) for r in api.requests})
        count = len(api.requests)
    assert received == [("anthropic", "claude-x"), ("openai", "gpt-4o")] and count == 10
    records = read_records(only_run_dir(tmp_path / "runs") / "records.jsonl")
    assert len(records) == 10 and all(right(r) for r in records)
    db = sqlite3.connect(cache)
    try:  # the endpoint the variable named is part of every cache key
        stored = [json.loads(fields) for (fields,) in db.execute("SELECT fields FROM responses")]
    finally:
        db.close()
    endpoints = {fields["identity"]["endpoint"] for fields in stored}
    assert endpoints == {api.base_url_openai, api.base_url_anthropic}


def run_figures(run_dir: Path) -> dict:
    """metrics.json's per-model run figures (done, errors, stopped, ...), there even without records."""
    return json.loads((run_dir / "metrics.json").read_text())["run"]["models"]


def closed_port() -> int:
    import socket

    with socket.socket() as probe:  # bound, then closed: nobody listens there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_endpoint_stops_its_model_with_one_message(tmp_path: Path, keys: None, capsys) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    started = time.monotonic()
    spec = f"openai:gpt-4o@{url}"
    code = run_cli("--limit", "10", "--no-cache", "--out", str(tmp_path), "-m", spec, "-B", "label=gpt")
    took = time.monotonic() - started
    assert code == EXIT_STOPPED
    printed = capsys.readouterr().out

    stopped = run_figures(only_run_dir(tmp_path))["gpt"]["stopped"]
    assert f"{url} is unreachable" in stopped and "failed to connect" in stopped
    assert "gpt stopped early" in printed and printed.count(f"{url} is unreachable") == 1
    # Nothing is recorded as failed: the items were never sent anywhere, a rerun sends them.
    assert read_records(only_run_dir(tmp_path) / "records.jsonl") == []
    print(f"\nunreachable endpoint: model stopped after {took:.1f} s (10 items, 8 attempts allowed each)")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_unreachable_triton_server_stops_its_model_naming_the_url(tmp_path: Path, protocol: str, capsys) -> None:
    pytest.importorskip("tritonclient")
    url = f"{protocol}://127.0.0.1:{closed_port()}"
    spec = f"triton:llava@{url}"
    code = run_cli("--limit", "5", "--no-cache", "--out", str(tmp_path), "-m", spec, "-B", "label=llava")
    assert code == EXIT_STOPPED

    stopped = run_figures(only_run_dir(tmp_path))["llava"]["stopped"]
    assert f"cannot reach Triton at {url}" in stopped
    assert read_records(only_run_dir(tmp_path) / "records.jsonl") == []
    assert "llava stopped early" in capsys.readouterr().out


def test_a_retry_after_of_an_hour_fails_items_by_their_deadline_instead_of_stalling(tmp_path: Path, keys: None) -> None:
    items = sample_items(10)
    with FakeAPI(answers=oracle(items)) as api:
        api.inject("429", retry_after=3600)  # the first request's answer pauses the endpoint for an hour
        command = [
            sys.executable, "-m", "gmai_client", "run", "--no-progress", "--no-cache", "--limit", "10", "-c", "1",
            "--rpm", "600", "--item-deadline", "5", "--out", str(tmp_path),
            "-m", f"openai:gpt-4o@{api.base_url_openai}",
        ]  # fmt: skip
        env = {**os.environ, "OPENAI_API_KEY": OPENAI_KEY}
        started = time.monotonic()
        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)  # a guard: not an hour
        took = time.monotonic() - started
        records = read_records(only_run_dir(tmp_path) / "records.jsonl")
        sent_first = api.stats()["requests"]
        # Later, the pause over: --retry-errors sends exactly the failed items again.
        again = subprocess.run([*command, "--retry-errors"], env=env, capture_output=True, text=True, timeout=120)
        sent_again = api.stats()["requests"] - sent_first

    assert "Traceback" not in first.stderr + again.stderr
    kinds = sorted(r.error_kind for r in records)
    assert kinds == ["deadline"] * 9 + ["rate_limited"], kinds
    assert sent_first == 1  # the 429 itself; no request left while the endpoint was paused
    deadline_errors = [r for r in records if r.error_kind == "deadline"]
    assert all(r.attempts == 0 and "rate-limit pause" in r.error and "deadline" in r.error for r in deadline_errors)
    # The wait each item refused outlasts its 5 s deadline and is the hour's hint (less what already passed:
    # on a loaded machine it reads 3599.9 s, so the bound is checked, not a rounded figure).
    waits = [float(re.search(r"waiting ([\d.]+) s", r.error).group(1)) for r in deadline_errors]  # type: ignore[union-attr]
    assert all(3000 < wait <= 3600 for wait in waits), waits
    assert sent_again == 10
    assert all(r.status != "error" for r in read_records(only_run_dir(tmp_path) / "records.jsonl"))
    print(f"\nRetry-After 3600, --rpm 600, --item-deadline 5: run ended after {took:.1f} s, process start included")
