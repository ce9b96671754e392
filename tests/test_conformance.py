"""Conformance with VLMEvalKit, the toolkit behind GMAI-MMBench's published figures, in each rule era.

A generated corpus (``gmai_client.testing.answer_corpus``: 4,200 items, every answer style, the
prediction file's round-trip styles, the adversarial cells) and a second, all-numeric answer set
are run through ``python -m gmai_client run --model replay:...`` under ``vlmevalkit-2024``, and
the run folder is rescored with ``report --rules`` under the other two sets (nothing is sent).
The same answers go through each era's own VLMEvalKit code (``tests/vlmeval_oracle.py``): its
dataset, its prediction file written by its own ``dump`` and read back by its ``load``, its
matching and its ``GMAIMMBenchDataset.evaluate``:

- vlmevalkit-2024: ``ms-vlmeval`` 0.0.18 from PyPI (c6bdffd3's matching, 69268c70's evaluation);
- vlmevalkit-2025: ``ms-vlmeval`` 0.0.20 from PyPI;
- vlmevalkit-2026: no release carries it: the letters, hits and tables that VLMEvalKit at e8e78f05
  gives on this corpus were computed once and are kept as data (``tests/data``, naming the commit).

Per era: letters, hits, the judge's placement, the headline and every grouped table identical.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gmai_client.data.dataset import iter_items, open_dataset
from gmai_client.protocol import reference
from gmai_client.protocol.prompt import render_prompt
from gmai_client.protocol.readback import read_back
from gmai_client.protocol.rulesets import VLMEVALKIT_2025
from gmai_client.results.records import read_records
from gmai_client.testing import answer_corpus
from gmai_client.types import Item, Record
from tests import vlmeval_oracle

N_ITEMS = 4200
SEED = 7
DATASET = vlmeval_oracle.DATASET
ERAS = ("vlmevalkit-2024", "vlmevalkit-2025", "vlmevalkit-2026")
ANSWER_SETS = {"main": "corpus", "numbers": "numbers"}  # oracle's name -> our model label
#: VLMEvalKit at e8e78f05 on this corpus (no PyPI release carries the 2026 rules).
FROZEN_2026 = Path(__file__).parent / "data" / "vlmevalkit-e8e78f05-corpus.json"

pytest.importorskip("pandas")


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "gmai_client", *args], capture_output=True, text=True, env=env, timeout=900
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def corpus_digest(tsv: Path, *answer_sets: Path) -> str:
    """What the frozen 2026 letters were computed on: the TSV's cells but the image (a PNG's bytes
    depend on the zlib that wrote it, and no letter depends on them), and the answer sets' bytes."""
    digest = hashlib.sha256()
    with tsv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    image = rows[0].index("image")
    for row in rows:
        digest.update("\t".join(row[:image] + row[image + 1 :]).encode() + b"\n")
    for path in answer_sets:
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("corpus")
    tsv, answers, items = answer_corpus.write(folder, N_ITEMS, seed=SEED)
    numbers = answer_corpus.write_answers(folder / "numbers.jsonl", items, answer_corpus.numeric_answers(items, SEED))
    env = {**os.environ, "GMAI_CLIENT_CACHE_DIR": str(folder / "cache")}
    out = folder / "runs"
    first = _run(
        "run", "--data", str(tsv), "--model", f"replay:{answers}", "-B", "label=corpus",
        "--model", f"replay:{numbers}", "-B", "label=numbers",
        "--no-progress", "--no-cache", "--out", str(out), "--run-name", ERAS[0], env=env,
    )  # fmt: skip
    runs = {ERAS[0]: out / ERAS[0]}
    for era in ERAS[1:]:  # the same answers rescored under the other sets: nothing is sent
        shutil.copytree(runs[ERAS[0]], out / era)
        _run("report", str(out / era), "--rules", era, env=env)
        runs[era] = out / era
    by_era = {}
    for era, run_dir in runs.items():
        records = {(r.model, r.index): r for r in read_records(run_dir / "records.jsonl")}
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        by_era[era] = {"records": records, "metrics": metrics, "run_dir": run_dir}
    return {
        "folder": folder,
        "tsv": tsv,
        "answers": answers,
        "numbers": numbers,
        "items": items,
        "eras": by_era,
        "stdout": first.stdout,
        "digest": corpus_digest(tsv, answers, numbers),
    }


@pytest.fixture(scope="module")
def oracles(corpus: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each era's VLMEvalKit result on the corpus (computed here, or the frozen 2026 data)."""
    sets = {"main": corpus["answers"], "numbers": corpus["numbers"]}
    results = {}
    for era in ERAS[:2]:
        root = vlmeval_oracle.oracle_root(era)
        results[era] = vlmeval_oracle.run_pipeline(root, corpus["tsv"], tmp_path_factory.mktemp(era), sets)
    frozen = json.loads(FROZEN_2026.read_text(encoding="utf-8"))
    assert frozen["corpus"]["sha256"] == corpus["digest"], (
        f"the corpus changed since {FROZEN_2026.name} was computed: compute it again with "
        "`python tests/vlmeval_oracle.py --freeze ...` (see its docstring)"
    )
    results[ERAS[2]] = vlmeval_oracle.thaw(frozen)
    return results


def _letter(record: Record) -> str:
    return record.letters[0] if record.letters else reference.NO_LETTER


def test_corpus_covers_every_style_and_the_adversarial_cells(corpus: dict[str, Any]) -> None:
    styles = Counter(item.style for item in corpus["items"])
    assert len(styles) >= 55 and min(styles.values()) >= 60, styles
    assert sum(styles.values()) >= 4000
    options = [text for item in corpus["items"] for _, text in item.options]
    assert "none" in options and any(text != text.strip() for text in options)
    assert any("E" in dict(item.options) for item in corpus["items"])
    assert sum(len(item.key) > 1 for item in corpus["items"]) >= 30  # multi-answer keys


@pytest.mark.parametrize("era", ERAS)
def test_every_letter_equals_vlmevalkit(era: str, corpus: dict[str, Any], oracles: dict[str, Any]) -> None:
    records = corpus["eras"][era]["records"]
    styles = {str(item.index): item.style for item in corpus["items"]}
    differ = []
    for name, label in ANSWER_SETS.items():
        theirs = oracles[era][name]["letters"]
        assert len(theirs) == N_ITEMS  # every item was sent and scored, "none" answers included
        for index, letter in theirs.items():
            mine = records[(label, index)]
            if _letter(mine) != letter:
                differ.append((name, index, styles[index], (mine.prediction or "")[:80], letter, mine.letters))
    print(f"\n{era}: {2 * N_ITEMS} answers in {len(set(styles.values()))} styles: {len(differ)} letters differ")
    assert differ == []


@pytest.mark.parametrize("era", ERAS)
def test_headline_and_grouped_tables_equal_vlmevalkit_evaluate(
    era: str, corpus: dict[str, Any], oracles: dict[str, Any]
) -> None:
    ours = corpus["eras"][era]
    assert ours["metrics"]["rule_sets"]["headline"] == era
    compared = 0
    for name, label in ANSWER_SETS.items():
        theirs = oracles[era][name]
        metrics = ours["metrics"]["models"][label]
        assert metrics["overall"]["accuracy"] == pytest.approx(theirs["overall"], abs=1e-12)
        assert metrics["overall"]["correct"] == round(theirs["overall"] * N_ITEMS)
        hits = {index: bool(record.correct) for (model, index), record in ours["records"].items() if model == label}
        assert hits == {index: bool(hit) for index, hit in theirs["hits"].items()}
        for category, accuracy in theirs["category"].items():  # report_acc's columns: the leaf labels
            assert metrics["groups"]["category"][category]["accuracy"] == pytest.approx(accuracy, abs=1e-12)
            compared += 1
        for column, view in (("clinical vqa task", "clinical VQA task"), ("department", "department"),
                             ("perceptual granularity", "perceptual granularity")):  # fmt: skip
            for category, accuracy in theirs["views"][column].items():
                if category == "Overall":
                    assert accuracy == pytest.approx(metrics["overall"]["accuracy"], abs=1e-12)
                elif category == "None":  # VLMEvalKit's empty group for items of no department (NaN)
                    assert accuracy is None and metrics["groups"]["department"]["N/A"]["n"] > 0
                else:
                    assert metrics["groups"][view][category]["accuracy"] == pytest.approx(accuracy, abs=1e-12)
                compared += 1
    assert compared >= 40


@pytest.mark.parametrize("era", ERAS)
def test_judge_is_asked_where_vlmevalkit_asks_it(era: str, corpus: dict[str, Any], oracles: dict[str, Any]) -> None:
    records = corpus["eras"][era]["records"]
    asked = 0
    for name, label in ANSWER_SETS.items():
        for index, asks in oracles[era][name]["asks_judge"].items():
            assert (records[(label, index)].status == "unparsed") == asks, (era, name, index)
            asked += asks
    assert asked > 100


def test_every_report_shows_the_three_rule_sets_side_by_side(corpus: dict[str, Any], oracles: dict[str, Any]) -> None:
    """One run's metrics.json holds the headline under each set: the figures the oracles give."""
    sets = corpus["eras"][ERAS[0]]["metrics"]["rule_sets"]["sets"]
    for era in ERAS:
        figures = sets[era]["models"]["corpus"]
        assert figures["accuracy"] == pytest.approx(oracles[era]["main"]["overall"], abs=1e-12)
    report = (corpus["eras"][ERAS[0]]["run_dir"] / "report.md").read_text(encoding="utf-8")
    assert "Rule set: **vlmevalkit-2024**" in report and "## Under each rule set" in report
    assert "vlmevalkit-2024" in corpus["stdout"] and "vlmevalkit-2026" in corpus["stdout"]


# ------------------------------------------------------------------ in process, ms-vlmeval 0.0.20


@pytest.fixture(scope="module")
def oracle() -> Any:
    return vlmeval_oracle.load()


@pytest.fixture(scope="module")
def data_root(corpus: dict[str, Any]) -> Path:
    root = corpus["folder"] / "LMUData"
    root.mkdir(exist_ok=True)
    shutil.copy(corpus["tsv"], root / f"{DATASET}.tsv")
    return root


def test_the_tsv_twin_reads_back_as_written(oracle: Any, corpus: dict[str, Any], data_root: Path) -> None:
    """The exported TSV holds each answer as the model gave it: VLMEvalKit reads the same letter
    from it wherever its own xlsx round trip leaves the answer as it is."""
    run_dir = corpus["eras"][VLMEVALKIT_2025.name]["run_dir"]
    tsv = next((run_dir / "predictions").glob("corpus*.tsv"))
    rows = vlmeval_oracle.evaluated_rows(oracle, tsv)
    records = corpus["eras"][VLMEVALKIT_2025.name]["records"]
    compared = differ = 0
    for i in range(len(rows)):
        row = rows.iloc[i]
        record = records[("corpus", str(row["index"]))]
        prediction = record.prediction or ""
        if read_back(prediction, formulas=True) != prediction or reference.is_missing(prediction):
            continue
        compared += 1
        differ += oracle.multiple_choice.extract_answer_from_item(None, row, DATASET)["opt"] != _letter(record)
    assert compared > 3500 and differ == 0


def test_prompts_equal_vlmevalkit_build_prompt(oracle: Any, corpus: dict[str, Any], data_root: Path) -> None:
    dataset = vlmeval_oracle.gmai_dataset(oracle, data_root)
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


def test_judge_prompt_equals_vlmevalkits_on_its_own_prediction_file(
    oracle: Any, corpus: dict[str, Any], data_root: Path, tmp_path: Path
) -> None:
    dataset = vlmeval_oracle.gmai_dataset(oracle, data_root)
    answers = {str(item.index): item.answer for item in corpus["items"]}
    rows = vlmeval_oracle.evaluated_rows(oracle, vlmeval_oracle.prediction_file(oracle, dataset, answers, tmp_path))
    records = corpus["eras"][VLMEVALKIT_2025.name]["records"]
    mc = oracle.multiple_choice
    asked = 0
    for i in range(len(rows)):
        row = rows.iloc[i]
        record = records[("corpus", str(row["index"]))]
        if record.status != "unparsed":
            continue
        asked += 1
        expected = mc.build_prompt(row["question"], mc.build_option_str(mc.build_choices(row)), row["prediction"])
        question = dict(record.row)["question"]
        ours = reference.judge_prompt_as_read_back(question, record.options, record.prediction or "", VLMEVALKIT_2025)
        assert ours == expected, row["index"]
    assert asked > 100
