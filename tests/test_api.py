"""Tests for gmai_client.api: the start-up lines say where each model's requests go."""

from __future__ import annotations

from pathlib import Path

import pytest

from gmai_client.cli import main


def test_the_start_line_names_the_endpoint_the_base_url_variable_chose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("openai")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens: the model stops
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-start-line-0123")
    argv = ["run", "--no-progress", "--limit", "2", "--out", str(tmp_path), "-m", "openai:gpt-4o", "-m", "random"]
    main(argv)
    out = capsys.readouterr().out
    assert "gpt-4o: openai gpt-4o -> http://127.0.0.1:9/v1" in out
    assert "random: random" in out and "-> in this process" in out
    assert "sk-test-start-line" not in out
