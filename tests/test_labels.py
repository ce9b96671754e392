"""Default labels: a model is called by its name in tables, records and folder names, with the host
only where two models would share it; run folders made with the earlier (whole-spec) labels resume."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import gmai_client
from gmai_client.cli import main
from gmai_client.config import RunConfig, parse_model_spec
from gmai_client.results.records import read_records


def labels(*specs: str) -> list[str]:
    return [spec.label for spec in RunConfig.build(list(specs)).models]


def test_a_model_is_labelled_by_its_name() -> None:
    assert labels(
        "openai:gpt-4o",
        "anthropic:claude-sonnet-4-5",
        "triton:llava@gpu-box:8001",
        "torch:/models/Qwen2-VL-7B-Instruct",
        "openai:Qwen/Qwen2.5-VL-72B-Instruct@http://vllm:8000/v1",
        "random",
    ) == ["gpt-4o", "claude-sonnet-4-5", "llava", "Qwen2-VL-7B-Instruct", "Qwen2.5-VL-72B-Instruct", "random"]


def test_the_host_tells_apart_two_models_of_one_name_and_never_a_credential() -> None:
    assert labels("openai:llava@http://user:secret@gpu-a:8000/v1?api-key=k", "triton:llava@gpu-b:8001") == [
        "llava@gpu-a:8000",
        "llava@gpu-b:8001",
    ]
    assert labels("openai:gpt-4o", "openai:gpt-4o@http://proxy:9000/v1") == ["gpt-4o", "gpt-4o@proxy:9000"]
    # Same name, no host to tell them apart: the spec as written.
    assert labels("torch:/a/model", "torch:/b/model") == ["torch:/a/model", "torch:/b/model"]
    # A label the user gave is never changed; the default one beside it gives way.
    given = RunConfig.build([parse_model_spec("random", ["label=gpt-4o"]), "openai:gpt-4o"])
    assert [spec.label for spec in given.models] == ["gpt-4o", "openai:gpt-4o"]


def write_script(tmp_path: Path, small_tsv: Path) -> Path:
    folder = tmp_path / "a" / "long" / "path" / "to" / "some" / "scripts"
    folder.mkdir(parents=True)
    script = folder / "answers.json"
    script.write_text(json.dumps({str(i): "A" for i in range(60)}))
    return script


def test_the_run_folder_and_the_tables_use_the_short_label(tmp_path: Path, small_tsv: Path, capsys) -> None:
    # The whole path used to name the folder (about 100 characters) and fill the model column.
    script = write_script(tmp_path, small_tsv)
    out = tmp_path / "runs"
    assert main(["run", "--no-progress", "--data", str(small_tsv), "-m", f"scripted:{script}", "--out", str(out)]) == 0
    (run_dir,) = out.iterdir()
    assert run_dir.name.startswith("answers.json-") and len(run_dir.name) < 30
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert list(metrics["models"]) == ["answers.json"]
    assert str(script) not in capsys.readouterr().out.split("GMAI-MMBench accuracy")[1]
    # --resume brings the same label back, and the model given again is no conflict.
    assert main(["run", "--no-progress", "--resume", str(run_dir), "-m", f"scripted:{script}"]) == 0
    assert {r.model for r in read_records(run_dir / "records.jsonl")} == {"answers.json"}


def test_a_folder_made_with_whole_spec_labels_is_resumed_by_the_same_command(tmp_path: Path, small_tsv: Path) -> None:
    script = write_script(tmp_path, small_tsv)
    spec = f"scripted:{script}"
    build = {"data": [str(small_tsv)], "out": tmp_path / "runs", "progress": False}
    # What earlier versions wrote: the spec as the label, in config.json, the records and the name.
    earlier = asyncio.run(gmai_client.run(RunConfig.build([parse_model_spec(spec, [f"label={spec}"])], **build)))
    assert {r.model for r in earlier.records} == {spec} and len(earlier.records) == 60

    again = asyncio.run(gmai_client.run(RunConfig.build([spec], **build)))
    assert again.run_dir == earlier.run_dir  # found under its earlier name
    (outcome,) = again.outcomes
    assert outcome.skipped == 60 and outcome.done == 0  # every item was already answered there
    assert {r.model for r in again.records} == {spec} and len(again.records) == 60
    assert list(json.loads((again.run_dir / "metrics.json").read_text())["models"]) == [spec]
