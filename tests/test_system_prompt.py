"""A system prompt: none by default (VLMEvalKit sends none), ``--system-prompt TEXT|@FILE`` for
every model, ``-B system=`` for one; part of the run's identity and of the cache key, so a run with
another system prompt is another run and its answers are asked again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")

from gmai_client.cli import main
from gmai_client.testing.fake_api import FakeAPI

PROMPT = "You are a radiologist. Answer with the option letter."


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-system-0123456789")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-system-0123456789")


def run(tmp_path: Path, api: FakeAPI, *extra: str, gpt: tuple[str, ...] = (), claude: tuple[str, ...] = ()) -> int:
    argv = ["run", "--no-progress", "--limit", "3", "--out", str(tmp_path / "runs"), *extra]
    argv += ["-m", f"openai:gpt-4o@{api.base_url_openai}", *(a for o in gpt for a in ("-B", o))]
    argv += ["-m", f"anthropic:claude-sonnet-4-5@{api.base_url_anthropic}", *(a for o in claude for a in ("-B", o))]
    return main(argv)


def systems(api: FakeAPI) -> dict[str, set[tuple[tuple[str, ...], str]]]:
    seen: dict[str, set[tuple[tuple[str, ...], str]]] = {}
    for request in api.requests:
        seen.setdefault(request.api, set()).add((request.roles, request.system))
    return seen


def test_no_system_prompt_by_default(tmp_path: Path) -> None:
    with FakeAPI() as api:
        assert run(tmp_path, api) == 0
        assert systems(api) == {"openai": {(("user",), "")}, "anthropic": {(("user",), "")}}


def test_one_system_prompt_for_every_model_is_its_own_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with FakeAPI() as api:
        assert run(tmp_path, api) == 0
        api.reset()
        assert run(tmp_path, api, "--system-prompt", PROMPT) == 0
        assert systems(api) == {"openai": {(("system", "user"), PROMPT)}, "anthropic": {(("user",), PROMPT)}}
        assert len(api.requests) == 6  # the cache held the answers without it: these are asked again
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2  # another system prompt, another run
    saved = [json.loads((f / "config.json").read_text())["config"]["protocol"]["system_prompt"] for f in folders]
    assert sorted(saved) == ["", PROMPT]


def test_a_system_prompt_from_a_file_and_one_model_s_own(tmp_path: Path) -> None:
    prompt_file = tmp_path / "system.txt"
    prompt_file.write_text("Think step by step.\n", encoding="utf-8")
    with FakeAPI() as api:
        code = run(tmp_path, api, "--system-prompt", f"@{prompt_file}", gpt=(f"system={PROMPT}",), claude=("system=",))
        assert code == 0
        assert systems(api) == {"openai": {(("system", "user"), PROMPT)}, "anthropic": {(("user",), "")}}


def test_an_unreadable_system_prompt_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with FakeAPI() as api:
        assert run(tmp_path, api, "--system-prompt", f"@{tmp_path / 'missing.txt'}") == 2
        assert run(tmp_path, api, gpt=(f"system=@{tmp_path / 'gone.txt'}",)) == 2
        assert api.requests == []
    err = capsys.readouterr().err
    assert "--system-prompt @" in err and "missing.txt" in err and "-B system @" in err and "gone.txt" in err


def test_a_system_prompt_saved_redacted_is_never_sent_again_by_resume_or_run_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A prompt holding something shaped like a key is saved with it redacted: resuming from the saved
    # text would send other words under the same folder. Refused; the original command resumes.
    prompt = "Context sk-proj-" + "A" * 60 + " end"
    def run(limit: str) -> list[str]:
        return ["run", "--no-progress", "--limit", limit, "--out", str(tmp_path), "--run-name", "r"]

    assert main([*run("3"), "--system-prompt", prompt]) == 0
    config = tmp_path / "r" / "config.json"
    assert "[REDACTED]" in config.read_text(encoding="utf-8") and prompt not in config.read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["run", "--resume", str(tmp_path / "r"), "--limit", "5", "--no-progress"]) == 2
    assert "rerun the original command" in capsys.readouterr().err
    assert main(["run", "--config", str(config), "--limit", "5", "--no-progress"]) == 2
    assert "system prompt held text shaped like a key" in capsys.readouterr().err
    assert main([*run("5"), "--system-prompt", prompt]) == 0  # the same folder, grown
    assert len((tmp_path / "r" / "records.jsonl").read_text(encoding="utf-8").splitlines()) == 5
