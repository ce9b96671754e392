"""Conformance with VLMEvalKit, the toolkit behind GMAI-MMBench's published figures.

A generated corpus (``gmai_client.testing.answer_corpus``: 2,100 items, every answer style, the
adversarial cells) is run through ``python -m gmai_client run --model replay:answers.jsonl``, and
the same answers through VLMEvalKit's own code (``tests/vlmeval_oracle.py``): its prompt builder,
its answer matching, and its ``GMAIMMBenchDataset.evaluate`` fed with the prediction file this
client exports. Letters, hits, the headline and every grouped table must be identical.
"""

from __future__ import annotations

import json
import os
import shutil
import string
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gmai_client import reference
from gmai_client.dataset import iter_items, open_dataset
from gmai_client.prompt import render_prompt
from gmai_client.records import read_records
from gmai_client.testing import answer_corpus
from gmai_client.types import Item, Record
from tests import vlmeval_oracle

N_ITEMS = 2100
DATASET = "GMAI-MMBench_VAL"

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def oracle() -> Any:
    return vlmeval_oracle.load()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("corpus")
    tsv, answers, items = answer_corpus.write(folder, N_ITEMS, seed=7)
    out = folder / "runs"
    env = {**os.environ, "GMAI_CLIENT_CACHE_DIR": str(folder / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "gmai_client", "run", "--data", str(tsv), "--model", f"replay:{answers}",
         "--no-progress", "--no-cache", "--out", str(out), "--run-name", "corpus"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    run_dir = out / "corpus"
    records = {r.index: r for r in read_records(run_dir / "records.jsonl")}
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    (label,) = metrics["models"]
    xlsx = next((run_dir / "predictions").glob("*.xlsx"))
    data_root = folder / "LMUData"
    data_root.mkdir()
    shutil.copy(tsv, data_root / f"{DATASET}.tsv")
    return {
        "tsv": tsv,
        "items": items,
        "records": records,
        "metrics": metrics["models"][label],
        "xlsx": xlsx,
        "tsv_export": xlsx.with_suffix(".tsv"),
        "data_root": data_root,
        "stdout": done.stdout,
    }


def _vlmeval_rows(oracle: Any, prediction_file: Path) -> Any:
    """The prediction file as VLMEvalKit's evaluation prepares it before matching."""
    data = oracle.image_mcq.load(str(prediction_file)).sort_values(by="index")
    data["prediction"] = [str(x) for x in data["prediction"]]
    for key in list(data.keys()):
        data[key.lower() if key not in list(string.ascii_uppercase) else key] = data.pop(key)
    return data


def _our_letter(record: Record) -> str:
    return record.letters[0] if record.letters else reference.NO_LETTER


def test_corpus_covers_every_style_and_the_adversarial_cells(corpus: dict[str, Any]) -> None:
    styles = Counter(item.style for item in corpus["items"])
    assert len(styles) >= 25 and min(styles.values()) >= 40, styles
    options = [text for item in corpus["items"] for _, text in item.options]
    assert "none" in options and any(text != text.strip() for text in options)
    assert any("E" in dict(item.options) for item in corpus["items"])
    assert sum(len(item.key) > 1 for item in corpus["items"]) >= 30  # multi-answer keys


def test_every_letter_equals_vlmevalkit(oracle: Any, corpus: dict[str, Any]) -> None:
    data = _vlmeval_rows(oracle, corpus["xlsx"])
    assert len(data) == N_ITEMS  # every item was sent and exported, "none" answers included
    differ = []
    by_style: Counter[str] = Counter()
    styles = {item.index: item.style for item in corpus["items"]}
    for i in range(len(data)):
        row = data.iloc[i]
        theirs = oracle.multiple_choice.extract_answer_from_item(None, row, DATASET)["opt"]
        mine = corpus["records"][str(row["index"])]
        by_style[styles[int(row["index"])]] += 1
        if _our_letter(mine) != theirs:
            differ.append((row["index"], styles[int(row["index"])], row["prediction"], theirs, mine.letters))
    print(f"\n{N_ITEMS} answers in {len(by_style)} styles: {len(differ)} letters differ")
    assert differ == []


def test_headline_and_grouped_tables_equal_vlmevalkit_evaluate(
    oracle: Any, corpus: dict[str, Any], tmp_path: Path
) -> None:
    dataset = vlmeval_oracle.gmai_dataset(oracle, corpus["data_root"])
    eval_file = tmp_path / "model_GMAI-MMBench_VAL.xlsx"
    shutil.copy(corpus["xlsx"], eval_file)
    acc = dataset.evaluate(str(eval_file), model="exact_matching", nproc=2)
    ours = corpus["metrics"]

    theirs_overall = float(acc["Overall"][0])
    assert ours["overall"]["correct"] == round(theirs_overall * N_ITEMS)
    assert ours["overall"]["accuracy"] == pytest.approx(theirs_overall, abs=1e-12)

    # Per-item hits.
    result = oracle.image_mcq.load(str(tmp_path / "model_GMAI-MMBench_VAL_exact_matching_result.xlsx"))
    hits = {str(index): bool(hit) for index, hit in zip(result["index"], result["hit"], strict=True)}
    assert hits == {index: bool(record.correct) for index, record in corpus["records"].items()}

    # Per leaf label (report_acc's category columns) and per view (the *_acc.csv files).
    compared = 0
    for name, stats in ours["groups"]["category"].items():
        assert stats["accuracy"] == pytest.approx(float(acc[name][0]), abs=1e-12), name
        compared += 1
    for view, column in (("clinical VQA task", "clinical vqa task"), ("department", "department"),
                         ("perceptual granularity", "perceptual granularity")):  # fmt: skip
        table = pd.read_csv(tmp_path / f"model_GMAI-MMBench_VAL_{column}_acc.csv")
        assert float(table["Overall"][0]) == pytest.approx(ours["overall"]["accuracy"], abs=1e-12)
        for name in table.columns:
            if name in ("split", "Overall"):
                continue
            if name == "None":  # VLMEvalKit's empty group for items of no department (NaN there)
                assert pd.isna(table[name][0])
                assert ours["groups"]["department"]["N/A"]["n"] > 0
                continue
            assert ours["groups"][view][name]["accuracy"] == pytest.approx(float(table[name][0]), abs=1e-12)
            compared += 1
    assert compared >= 15  # 7 leaf labels, 4 tasks, 4 departments (+ N/A), 4 granularities


def test_the_tsv_twin_evaluates_the_same(oracle: Any, corpus: dict[str, Any], tmp_path: Path) -> None:
    dataset = vlmeval_oracle.gmai_dataset(oracle, corpus["data_root"])
    eval_file = tmp_path / "model_GMAI-MMBench_VAL.tsv"
    shutil.copy(corpus["tsv_export"], eval_file)
    acc = dataset.evaluate(str(eval_file), model="exact_matching", nproc=2)
    assert float(acc["Overall"][0]) == pytest.approx(corpus["metrics"]["overall"]["accuracy"], abs=1e-12)


def test_prompts_equal_vlmevalkit_build_prompt(oracle: Any, corpus: dict[str, Any]) -> None:
    dataset = vlmeval_oracle.gmai_dataset(oracle, corpus["data_root"])
    ours = {e.index: e for e in iter_items(open_dataset([corpus["tsv"]])) if isinstance(e, Item)}
    assert len(ours) == N_ITEMS
    differ = []
    for position in range(0, N_ITEMS, 7):  # every 7th: build_prompt writes each image to disk
        messages = dataset.build_prompt(position)
        text = next(m["value"] for m in messages if m["type"] == "text")
        index = str(dataset.data.iloc[position]["index"])
        if render_prompt(ours[index]) != text:
            differ.append(index)
    assert differ == []


def test_judge_is_asked_where_vlmevalkit_asks_it_with_its_prompt(oracle: Any, corpus: dict[str, Any]) -> None:
    data = _vlmeval_rows(oracle, corpus["xlsx"])
    mc = oracle.multiple_choice
    asked = 0
    for i in range(len(data)):
        row = data.iloc[i]
        record = corpus["records"][str(row["index"])]
        choices = mc.build_choices(row)
        theirs_asks = not oracle.matching.can_infer(row["prediction"], dict(choices))
        assert (record.status == "unparsed") == theirs_asks, row["index"]
        if theirs_asks:
            asked += 1
            expected = mc.build_prompt(row["question"], mc.build_option_str(choices), row["prediction"])
            ours = reference.judge_prompt(row["question"], record.options, reference.answer_as_read_back(
                record.prediction or ""))  # fmt: skip
            assert ours == expected
    assert asked > 50
