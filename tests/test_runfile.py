"""Run files (``run --config FILE``): a TOML file, or any run's config.json, holds what the command
line holds; the options given beside it override it; every mistake is one line naming the file and
the key, and exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gmai_client import ConfigError, load_run_file
from gmai_client.cli import EXIT_USAGE, main
from gmai_client.runfile import read_run_file


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def only_run(cwd: Path) -> Path:
    (run_dir,) = (cwd / "runs").iterdir()
    return run_dir


def saved(run_dir: Path) -> dict:
    return json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["config"]


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a refused command says (after asserting it exits 2)."""
    capsys.readouterr()
    assert main(argv) == EXIT_USAGE
    return " ".join(capsys.readouterr().err.split())


def test_a_runs_config_json_replays_it_into_the_same_folder_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # --out is relative: the saved config replays from where it ran
    first = ["run", "--select", "department=Ophthalmology", "--limit", "5", "--model", "random", "-B", "seed=3"]
    first += ["--seed", "4", "--temperature", "0.5", "--max-tokens", "64", "--system-prompt", "Answer briefly."]
    assert main([*first, "--no-progress"]) == 0
    run_dir = only_run(tmp_path)
    records = (run_dir / "records.jsonl").read_bytes()

    assert main(["run", "--config", str(run_dir / "config.json"), "--no-progress"]) == 0

    assert only_run(tmp_path) == run_dir  # every non-default option came back: the same identity
    assert (run_dir / "records.jsonl").read_bytes() == records
    figures = json.loads((run_dir / "metrics.json").read_text())["run"]["models"]["random"]
    assert (figures["skipped"], figures["done"], figures["requests_sent"]) == (5, 0, 0)


def test_a_toml_file_with_two_models_runs_them_side_by_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path / "pair.toml",
        """
        select = ["granularity=Box Level"]
        limit = 4

        [[models]]
        spec = "random"
        label = "r0"

        [[models]]
        spec = "random"
        label = "r7"
        seed = 7   # a -B option, as a key of the model's table
        """,
    )
    assert main(["run", "--config", "pair.toml", "--no-progress"]) == 0
    run_dir = only_run(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())["models"]
    assert set(metrics) == {"r0", "r7"} and metrics["r7"]["overall"]["n"] == 4
    assert list(metrics["r0"]["groups"]["perceptual granularity"]) == ["Box Level"]
    assert [m["options"] for m in saved(run_dir)["models"]] == [{}, {"seed": "7"}]


def test_options_given_beside_the_file_override_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path / "base.toml",
        """
        select = ["department=Ophthalmology"]
        limit = 10
        rules = "vlmevalkit-2025"
        max_tokens = 64
        temperature = 0.2

        [[models]]
        spec = "random"
        label = "from-the-file"
        """,
    )
    argv = ["run", "--config", "base.toml", "--limit", "3", "--rules", "latest", "--temperature", "0.7"]
    assert main([*argv, "--model", "random", "-B", "label=given", "--no-progress"]) == 0
    config = saved(only_run(tmp_path))
    assert config["data"] == {"files": ["sample"], "select": ["department=Ophthalmology"], "limit": 3, "data_dir": None}
    assert config["protocol"]["rules"] == "vlmevalkit-2026"  # `latest` resolved, as --rules resolves it
    assert config["protocol"]["params"]["temperature"] == 0.7 and config["protocol"]["params"]["max_tokens"] == 64
    assert [m["label"] for m in config["models"]] == ["given"]  # --model replaces the file's whole list


def test_an_unknown_key_names_the_closest_valid_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "runs.toml", "concurency = 4\n")
    said = usage_error(["run", "--config", str(path)], capsys)
    assert f"{path}: unknown key 'concurency' (did you mean 'concurrency'?)" in said
    path = write(tmp_path / "runs.toml", "[data]\nlimit = 3\n[policy]\nselect = ['x']\n")
    said = usage_error(["run", "--config", str(path)], capsys)
    assert "unknown key 'select' in [policy] (it belongs in [data])" in said
    path = write(tmp_path / "runs.toml", "[protocol.params]\ntemprature = 0.5\n")
    with pytest.raises(ConfigError) as raised:
        read_run_file(path)
    assert "unknown key 'temprature' in protocol.params (did you mean 'temperature'?)" in str(raised.value)


def test_the_sections_of_config_json_are_a_run_file_form_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "system.txt", "You are a radiologist.")
    write(
        tmp_path / "sections.toml",
        """
        system_prompt = "@system.txt"
        [data]
        files = ["sample"]
        limit = 3
        [policy]
        concurrency = 2
        rpm = 60
        [protocol.params]
        temperature = 0.25
        [execution]
        seed = 9
        [[models]]
        backend = "random"
        options = {seed = 5}
        """,
    )
    config = load_run_file("sections.toml", token_budget=1000)
    assert (config.data.files, config.data.limit, config.policy.concurrency) == (("sample",), 3, 2)
    assert config.policy.rpm == 60.0 and config.policy.token_budget == 1000
    assert (config.protocol.params.temperature, config.protocol.params.seed) == (0.25, 9)  # the run's seed
    assert config.protocol.system_prompt == "You are a radiologist."
    (model,) = config.models
    assert (model.backend, model.label, dict(model.options)) == ("random", "random", {"seed": "5"})
    # As config.json holds it (the sampling seed written out): a new seed is the sampling seed too.
    write(tmp_path / "config.json", json.dumps({"config": config.as_dict(), "identity": {}, "schema": 2}))
    assert load_run_file("config.json") == config
    assert load_run_file("config.json", seed=2).protocol.params.seed == 2


def test_a_toml_syntax_error_names_the_file_and_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "broken.toml", 'limit = 5\nselect = [\n  "a" "b"]\n')
    said = usage_error(["run", "--config", str(path)], capsys)
    assert f"{path}: not valid TOML" in said and "line 3" in said


def test_a_value_of_the_wrong_type_says_what_the_key_takes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "runs.toml", 'limit = "ten"\n')
    assert f"{path}: limit must be a whole number, got 'ten'" in usage_error(["run", "--config", str(path)], capsys)
    for text, message in (
        ("[policy]\nrpm = true\n", "policy.rpm must be a number, got true"),
        ("cache = 'no'\n", "cache must be true or false, got 'no'"),
        ("select = [1, 2]\n", "select must be text or a list of text, got [1, 2]"),
        ("[[models]]\nlabel = 'x'\n", "models #1 names no model: give spec ="),
        ("[[models]]\nspec = 'random'\ntags = ['a']\n", "models #1: option tags must be text, a number or true/false"),
        ("concurrency = 0\n", "concurrency must be between 1 and"),  # the section's own check, named with the file
    ):
        with pytest.raises(ConfigError) as raised:
            read_run_file(write(path, text))
        assert str(raised.value).startswith(f"{path}: ") and message in str(raised.value), text


def test_config_and_resume_together_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "runs.toml", "limit = 2\n")
    said = usage_error(["run", "--config", str(path), "--resume", str(tmp_path)], capsys)
    assert "--config and --resume cannot go together" in said


def test_a_config_json_whose_secret_option_was_not_saved_is_refused_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--limit", "2", "--no-progress", "--out", str(tmp_path / "runs")]) == 0
    document = json.loads((only_run(tmp_path) / "config.json").read_text())
    document["config"]["models"][0]["options"]["api_key"] = "[REDACTED]"  # as a run given -B api_key= saves it
    path = write(tmp_path / "config.json", json.dumps(document))
    said = usage_error(["run", "--config", str(path)], capsys)
    assert f"{path}: random: option api_key was not saved whole (it looks secret)" in said


def test_a_missing_file_and_a_missing_template_file_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    said = usage_error(["plan", "--config", str(tmp_path / "nope.toml")], capsys)
    assert f"{tmp_path / 'nope.toml'}: no such run file" in said
    path = write(tmp_path / "runs.toml", f'template = "@{tmp_path / "gone.txt"}"\n')
    said = usage_error(["plan", "--config", str(path)], capsys)
    assert f"{path}: template @{tmp_path / 'gone.txt'}: no such file" in said


def test_model_options_read_as_minus_b_would_give_them(tmp_path: Path) -> None:
    path = write(
        tmp_path / "runs.toml",
        """
        judge = "random"
        [[models]]
        spec = "openai:llava@http://gpu-box:8000/v1"
        options = {rpm = 500, batch = false, price_in = 0.5}
        detail = "low"
        """,
    )
    flat = read_run_file(path)
    (model,) = flat["models"]
    assert (model.target, model.endpoint, model.label) == ("llava", "http://gpu-box:8000/v1", "llava")
    assert dict(model.options) == {"rpm": "500", "batch": "false", "price_in": "0.5", "detail": "low"}
    assert flat["judge"].backend == "random" and set(flat) == {"models", "judge"}  # nothing else given


def test_a_json_file_that_is_not_an_object_is_said_to_be_so(tmp_path: Path) -> None:
    path = tmp_path / "runs.json"
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="a run file is a JSON object, not list"):
        read_run_file(path)


def test_runs_option_names_are_keys_and_a_models_bad_option_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "runs.toml"
    path.write_text('data = ["sample"]\nmulti_answer_prompt = true\n[[models]]\nspec = "random"\n', encoding="utf-8")
    assert read_run_file(path)["multi_answer_instruction"] is True  # --multi-answer-prompt, `_` for `-`
    path.write_text('data = ["sample"]\n[[models]]\nspec = "random"\nlabel = "x"\nseed = "abc"\n', encoding="utf-8")
    assert main(["run", "--config", str(path), "--no-progress", "--out", str(tmp_path / "runs")]) == EXIT_USAGE
    assert f"{path}: x: option seed=" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    path.write_text('data = ["sample"]\n[[models]]\nspec = "random"\nlabel = "x"\nrpm = "fast"\n', encoding="utf-8")
    assert main(["run", "--config", str(path), "--no-progress", "--out", str(tmp_path / "runs")]) == EXIT_USAGE
    assert f"{path}: x: option rpm=" in capsys.readouterr().err
