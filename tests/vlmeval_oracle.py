"""VLMEvalKit's own code, loaded as an oracle for the conformance tests.

VLMEvalKit is on PyPI as ``ms-vlmeval``; ``.ci/run`` installs it with ``--no-deps`` (its declared
dependencies are a whole model zoo), once into site-packages (0.0.20, loaded in-process by ``load``)
and once per rule era into a folder of its own (``--target build/oracles/ms-vlmeval-<version>``,
run in a subprocess by ``run_pipeline``, so two versions never share ``sys.modules``). Its package
``__init__`` files import that zoo, so the loader registers empty package modules for ``vlmeval``,
``vlmeval.utils``, ``vlmeval.dataset`` and ``vlmeval.dataset.utils`` (with their real ``__path__``)
and imports only the modules the GMAI-MMBench evaluation needs: ``smp`` (file I/O),
``utils.matching_util`` (``can_infer``), ``dataset.utils.multiple_choice``
(``extract_answer_from_item``, ``report_acc``) and ``dataset.image_mcq`` (``GMAIMMBenchDataset``).
Nothing of VLMEvalKit is copied into the project.

``python tests/vlmeval_oracle.py ROOT TSV WORKDIR NAME=ANSWERS.jsonl ... [--freeze OUT COMMIT SHA256]``
runs VLMEvalKit's whole
path for each answer set, as its ``run.py`` does after inference: the dataset as its
``GMAIMMBenchDataset`` loads it, the answers put in its ``prediction`` column, the prediction file
written with its ``dump`` (xlsx), and that file scored by its ``GMAIMMBenchDataset.evaluate`` (exact
matching); it writes, per answer set, each item's letter, hit and whether the judge would be asked,
and the accuracy tables (``WORKDIR/oracle.json``). With ``--freeze``, it also writes them as data to
commit (``freeze``), for an era no PyPI release carries: ``tests/data/vlmevalkit-e8e78f05-corpus.json``
was made so, with ROOT a checkout of VLMEvalKit at e8e78f05 in a temporary folder (its ``vlmeval``
folder only), over the corpus of ``tests/test_conformance.py`` (``answer_corpus.write(folder, 4200,
seed=7)`` and ``numeric_answers``), SHA256 being ``test_conformance.corpus_digest`` of those files.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import os
import string
import subprocess
import sys
import types
import warnings
from pathlib import Path
from typing import Any

_STUB_PACKAGES = ("vlmeval", "vlmeval.utils", "vlmeval.dataset", "vlmeval.dataset.utils")
DATASET = "GMAI-MMBench_VAL"
#: Where ``.ci/run`` installs one oracle per rule era (``--target``), unless GMAI_VLMEVAL_ORACLES says.
ORACLES = Path(os.environ.get("GMAI_VLMEVAL_ORACLES", Path(__file__).resolve().parents[1] / "build" / "oracles"))
#: The PyPI release installed per rule era, where one carries that era's rules.
RELEASES = {"vlmevalkit-2024": "0.0.18", "vlmevalkit-2025": "0.0.20"}


def _missing(message: str) -> None:
    import pytest

    if os.environ.get("GMAI_REQUIRE_VLMEVAL"):
        pytest.fail(message)  # in CI the oracle is required: never a silent skip
    pytest.skip(message)


def oracle_root(rules: str) -> Path:
    """The folder holding the ``vlmeval`` package of ``rules``' PyPI release (skips when absent)."""
    version = RELEASES[rules]
    root = ORACLES / f"ms-vlmeval-{version}"
    if not (root / "vlmeval" / "utils" / "matching_util.py").is_file():
        _missing(f"ms-vlmeval {version} is not installed in {root} (.ci/run installs it: "
                 f"pip install --no-deps --target {root} ms-vlmeval=={version})")  # fmt: skip
    return root


def _register(root: Path) -> types.SimpleNamespace:
    """Import the evaluation modules of the ``vlmeval`` package folder ``root``."""
    for name in _STUB_PACKAGES:
        if name not in sys.modules or not getattr(sys.modules[name], "_gmai_stub", False):
            module = types.ModuleType(name)
            module.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
            module._gmai_stub = True  # type: ignore[attr-defined]
            # A spec like an imported package's: a later find_spec("vlmeval") in this process (another
            # test file looking for the installed oracle) reads it instead of raising on a None __spec__.
            module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
            module.__spec__.submodule_search_locations = module.__path__
            sys.modules[name] = module
    # Imported at the top of older releases' modules, never used on the evaluation path.
    for top, names in (("matplotlib", ("matplotlib", "matplotlib.pyplot")), ("portalocker", ("portalocker",))):
        if top not in sys.modules and importlib.util.find_spec(top) is None:
            for name in names:
                sys.modules[name] = types.ModuleType(name)
    smp = importlib.import_module("vlmeval.smp")
    matching = importlib.import_module("vlmeval.utils.matching_util")
    progress = importlib.import_module("vlmeval.utils.mp_util")
    utils = sys.modules["vlmeval.utils"]
    utils.can_infer = matching.can_infer  # type: ignore[attr-defined]
    if hasattr(matching, "can_infer_lego"):
        utils.can_infer_lego = matching.can_infer_lego  # type: ignore[attr-defined]
    utils.track_progress_rich = progress.track_progress_rich  # type: ignore[attr-defined]
    dataset_utils = sys.modules["vlmeval.dataset.utils"]
    dataset_utils.DEBUG_MESSAGE = ""  # type: ignore[attr-defined]
    dataset_utils.build_judge = None  # type: ignore[attr-defined]  # exact matching needs no judge
    multiple_choice = importlib.import_module("vlmeval.dataset.utils.multiple_choice")
    image_mcq = importlib.import_module("vlmeval.dataset.image_mcq")
    return types.SimpleNamespace(
        smp=smp, matching=matching, multiple_choice=multiple_choice, image_mcq=image_mcq, root=root
    )


def load() -> types.SimpleNamespace:
    """The installed oracle's modules (ms-vlmeval 0.0.20), in this process; skips when not installed."""
    spec = importlib.util.find_spec("vlmeval")
    if spec is None or not spec.submodule_search_locations:
        _missing("ms-vlmeval is not installed (.ci/run installs it: pip install --no-deps ms-vlmeval==0.0.20)")
    return _register(Path(next(iter(spec.submodule_search_locations))))  # type: ignore[union-attr]


def gmai_dataset(oracle: types.SimpleNamespace, data_root: Path) -> Any:
    """VLMEvalKit's ``GMAIMMBenchDataset('GMAI-MMBench_VAL')`` over ``data_root/GMAI-MMBench_VAL.tsv``."""
    os.environ["LMUData"] = str(data_root)  # noqa: SIM112 (VLMEvalKit reads this exact name)
    return oracle.image_mcq.GMAIMMBenchDataset(DATASET)


def evaluated_rows(oracle: types.SimpleNamespace, prediction_file: Path) -> Any:
    """The prediction file as VLMEvalKit's evaluation prepares it before matching."""
    data = oracle.smp.load(str(prediction_file)).sort_values(by="index")
    data["prediction"] = [str(x) for x in data["prediction"]]
    for key in list(data.keys()):
        data[key.lower() if key not in list(string.ascii_uppercase) else key] = data.pop(key)
    return data


def prediction_file(oracle: types.SimpleNamespace, dataset: Any, answers: dict[str, str], folder: Path) -> Path:
    """VLMEvalKit's prediction file for ``answers``, as its ``run.py`` writes it after inference: its
    dataset's rows, a str() prediction column, the image column dropped, written by its own dump()."""
    data = dataset.data.copy()
    data["prediction"] = [str(answers[str(index)]) for index in data["index"]]
    data.pop("image")
    path = folder / f"model_{DATASET}.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # xlsxwriter warns of the links it drops and the cells it cuts
        oracle.smp.dump(data, str(path))
    return path


def run_pipeline(root: Path, tsv: Path, workdir: Path, answer_sets: dict[str, Path]) -> dict[str, Any]:
    """VLMEvalKit at ``root`` over ``tsv`` and each answer set, in a subprocess (see the docstring)."""
    args = [f"{name}={path}" for name, path in answer_sets.items()]
    done = subprocess.run(
        [sys.executable, __file__, str(root), str(tsv), str(workdir), *args],
        capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((workdir / "oracle.json").read_text(encoding="utf-8"))


def _pipeline(root: Path, tsv: Path, workdir: Path, answer_sets: dict[str, Path]) -> dict[str, Any]:
    import shutil

    import pandas as pd

    oracle = _register(root.resolve() / "vlmeval")
    data_root = workdir / "LMUData"
    data_root.mkdir(parents=True, exist_ok=True)
    shutil.copy(tsv, data_root / f"{DATASET}.tsv")
    dataset = gmai_dataset(oracle, data_root)
    out: dict[str, Any] = {}
    for name, answers_path in answer_sets.items():
        answers = {}
        for line in answers_path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            answers[str(row["index"])] = row["prediction"]
        eval_file = prediction_file(oracle, dataset, answers, workdir / name)
        rows = evaluated_rows(oracle, eval_file)
        mc = oracle.multiple_choice
        letters, asks = {}, {}
        for i in range(len(rows)):
            row = rows.iloc[i]
            letters[str(row["index"])] = mc.extract_answer_from_item(None, row, DATASET)["opt"]
            asks[str(row["index"])] = not oracle.matching.can_infer(row["prediction"], dict(mc.build_choices(row)))
        acc = dataset.evaluate(str(eval_file), model="exact_matching", nproc=1)
        result = oracle.smp.load(str(eval_file.with_name(f"model_{DATASET}_exact_matching_result.xlsx")))
        views = {}
        for column in ("clinical vqa task", "department", "perceptual granularity"):
            table = pd.read_csv(eval_file.with_name(f"model_{DATASET}_{column}_acc.csv"))
            cells = {k: table[k][0] for k in table.columns if k != "split"}
            views[column] = {k: (None if pd.isna(v) else float(v)) for k, v in cells.items()}
        out[name] = {
            "letters": letters,
            "asks_judge": asks,
            "hits": {str(i): int(h) for i, h in zip(result["index"], result["hit"], strict=True)},
            "overall": float(acc["Overall"][0]),
            "category": {k: float(acc[k][0]) for k in acc.columns if k not in ("split", "Overall")},
            "views": views,
        }
    return out


def freeze(result: dict[str, Any], vlmevalkit: str, digest: str) -> dict[str, Any]:
    """A pipeline result as data to commit: per answer set, the letters, hits and judge placement
    as strings in index order, and the tables; ``vlmevalkit`` names the commit that computed it."""
    sets = {}
    for name, found in result.items():
        order = sorted(found["letters"], key=int)
        assert order == [str(i) for i in range(len(order))], "the corpus's indexes are 0..N-1"
        sets[name] = {
            "items": len(order),
            "letters": "".join(found["letters"][i] for i in order),
            "hits": "".join(str(found["hits"][i]) for i in order),
            "asks_judge": "".join("1" if found["asks_judge"][i] else "0" for i in order),
            "overall": found["overall"],
            "category": found["category"],
            "views": found["views"],
        }
    return {"vlmevalkit": vlmevalkit, "corpus": {"sha256": digest}, "sets": sets}


def thaw(frozen: dict[str, Any]) -> dict[str, Any]:
    """``freeze``'s data back in ``run_pipeline``'s form."""
    out = {}
    for name, found in frozen["sets"].items():
        order = [str(i) for i in range(found["items"])]
        out[name] = {
            "letters": dict(zip(order, found["letters"], strict=True)),
            "hits": {i: int(h) for i, h in zip(order, found["hits"], strict=True)},
            "asks_judge": {i: a == "1" for i, a in zip(order, found["asks_judge"], strict=True)},
            "overall": found["overall"],
            "category": found["category"],
            "views": found["views"],
        }
    return out


if __name__ == "__main__":
    # python tests/vlmeval_oracle.py ROOT TSV WORKDIR NAME=ANSWERS.jsonl ... [--freeze OUT.json COMMIT DIGEST]
    _args = sys.argv[1:]
    _freeze = None
    if "--freeze" in _args:
        _at = _args.index("--freeze")
        _freeze, _args = _args[_at + 1 : _at + 4], _args[:_at]
    _root, _tsv, _workdir = (Path(x) for x in _args[:3])
    _sets = {arg.split("=", 1)[0]: Path(arg.split("=", 1)[1]) for arg in _args[3:]}
    _workdir.mkdir(parents=True, exist_ok=True)
    _result = _pipeline(_root, _tsv, _workdir, _sets)
    (_workdir / "oracle.json").write_text(json.dumps(_result), encoding="utf-8")
    if _freeze:
        _out, _commit, _digest = _freeze
        Path(_out).write_text(json.dumps(freeze(_result, _commit, _digest), indent=1) + "\n", encoding="utf-8")
