"""``python -m gmai_client cache stats|explain|clear``: reading a cache never creates one, and a path
that is not a cache file is one clear line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from gmai_client.cli import main
from gmai_client.testing.fake_api import FakeAPI
from gmai_client.testing.fake_wire import oracle
from tests.batch_kit import keys, sample_items

__all__ = ["keys"]  # the vendors' keys, for the fake API


@pytest.mark.parametrize("action", ["stats", "clear"])
def test_a_missing_cache_is_reported_and_not_created(
    action: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "no" / "such" / "folder" / "responses.sqlite"
    assert main(["cache", action, "--cache-path", str(path)]) == 0
    printed = capsys.readouterr()
    assert "no response cache" in " ".join(printed.out.split()) and "Traceback" not in printed.err
    assert list(tmp_path.iterdir()) == []  # neither the folders nor a database


def test_explaining_an_item_of_a_missing_cache_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "none" / "responses.sqlite"
    assert main(["cache", "explain", "--cache-path", str(path), "-m", "random", "--index", "1"]) == 0
    assert "no response cache" in " ".join(capsys.readouterr().out.split())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("action", ["stats", "clear"])
def test_a_folder_as_the_cache_path_is_one_line_and_untouched(
    action: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `cache clear --cache-path /` printed a traceback; a folder is never a cache and is never deleted.
    for folder in (Path("/"), tmp_path):
        status = main(["cache", action, "--cache-path", str(folder)])
        printed = capsys.readouterr()
        assert status == 2 and "Traceback" not in printed.err
        assert printed.err.count("error:") == 1
    assert tmp_path.is_dir()


def test_explain_takes_the_runs_system_prompt_and_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = sample_items(2)
    cache = str(tmp_path / "cache.sqlite")
    with FakeAPI(answers=oracle(items)) as api:
        spec = f"openai:gpt-4o@{api.base_url_openai}"
        run = ["run", "--no-progress", "--limit", "2", "--cache-path", cache, "--out", str(tmp_path), "-m", spec]
        assert main([*run, "--system-prompt", "Answer briefly.", "--epochs", "2"]) == 0
    capsys.readouterr()
    explain = ["cache", "explain", "--cache-path", cache, "-m", spec, "--index", items[0].index]

    assert main(explain) == 0
    said = capsys.readouterr().out
    assert "miss" in said and "system" in said  # the run had a system prompt: this key has none
    for sample in ("1", "2"):
        assert main([*explain, "--system-prompt", "Answer briefly.", "--sample", sample]) == 0
        assert "hit" in capsys.readouterr().out
    assert main([*explain, "--system-prompt", "Answer briefly.", "--sample", "3"]) == 0
    said = capsys.readouterr().out
    assert "miss" in said and "repeat" in said  # no third sample was asked for


def test_explain_refuses_a_sample_no_run_can_have(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["cache", "explain", "-m", "random", "--index", "1", "--sample", "1000"])
    assert exit_.value.code == 2 and "between 1 and 100" in capsys.readouterr().err


def test_a_key_shaped_string_in_a_system_prompt_is_not_kept_in_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = sample_items(2)
    cache = tmp_path / "cache.sqlite"
    prompt = "Use sk-proj-" + "Q" * 60 + " nowhere."
    with FakeAPI(answers=oracle(items)) as api:
        spec = f"openai:gpt-4o@{api.base_url_openai}"
        run = ["run", "--no-progress", "--limit", "2", "--cache-path", str(cache), "--out", str(tmp_path), "-m", spec]
        assert main([*run, "--system-prompt", prompt]) == 0
        assert main([*run, "--system-prompt", prompt, "--run-name", "again"]) == 0
        assert len(api.requests) == 2  # the second run was answered from the cache
    assert all(b"Q" * 60 not in path.read_bytes() for path in tmp_path.glob("cache.sqlite*"))  # -wal too
    capsys.readouterr()
    explain = ["cache", "explain", "--cache-path", str(cache), "-m", spec, "--index", items[0].index]
    assert main([*explain, "--system-prompt", prompt]) == 0
    assert "hit" in capsys.readouterr().out
