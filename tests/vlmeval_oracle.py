"""VLMEvalKit's own code, loaded as an oracle for the conformance tests.

VLMEvalKit is on PyPI as ``ms-vlmeval``; ``.ci/run`` installs it with ``--no-deps`` (its declared
dependencies are a whole model zoo). Its package ``__init__`` files import that zoo, so this loader
registers empty package modules for ``vlmeval``, ``vlmeval.utils``, ``vlmeval.dataset`` and
``vlmeval.dataset.utils`` (with their real ``__path__``) and imports only the modules the GMAI-MMBench
evaluation needs: ``smp`` (file I/O), ``utils.matching_util`` (``can_infer``),
``dataset.utils.multiple_choice`` (``extract_answer_from_item``, ``report_acc``) and
``dataset.image_mcq`` (``GMAIMMBenchDataset``). Nothing of VLMEvalKit is copied into the project.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest

_STUB_PACKAGES = ("vlmeval", "vlmeval.utils", "vlmeval.dataset", "vlmeval.dataset.utils")


def load() -> types.SimpleNamespace:
    """The oracle's modules; skips the calling test when ms-vlmeval is not installed."""
    spec = importlib.util.find_spec("vlmeval")
    if spec is None or not spec.submodule_search_locations:
        message = "ms-vlmeval is not installed (.ci/run installs it: pip install --no-deps ms-vlmeval==0.0.20)"
        if os.environ.get("GMAI_REQUIRE_VLMEVAL"):
            pytest.fail(message)  # in CI the oracle is required: never a silent skip
        pytest.skip(message)
    root = Path(next(iter(spec.submodule_search_locations)))
    for name in _STUB_PACKAGES:
        if name not in sys.modules or not getattr(sys.modules[name], "_gmai_stub", False):
            module = types.ModuleType(name)
            module.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
            module._gmai_stub = True  # type: ignore[attr-defined]
            sys.modules[name] = module
    importlib.import_module("vlmeval.smp")
    matching = importlib.import_module("vlmeval.utils.matching_util")
    progress = importlib.import_module("vlmeval.utils.mp_util")
    utils = sys.modules["vlmeval.utils"]
    utils.can_infer = matching.can_infer  # type: ignore[attr-defined]
    utils.can_infer_lego = matching.can_infer_lego  # type: ignore[attr-defined]
    utils.track_progress_rich = progress.track_progress_rich  # type: ignore[attr-defined]
    dataset_utils = sys.modules["vlmeval.dataset.utils"]
    dataset_utils.DEBUG_MESSAGE = ""  # type: ignore[attr-defined]
    dataset_utils.build_judge = None  # type: ignore[attr-defined]  # exact matching needs no judge
    multiple_choice = importlib.import_module("vlmeval.dataset.utils.multiple_choice")
    image_mcq = importlib.import_module("vlmeval.dataset.image_mcq")
    return types.SimpleNamespace(matching=matching, multiple_choice=multiple_choice, image_mcq=image_mcq, root=root)


def gmai_dataset(oracle: types.SimpleNamespace, data_root: Path) -> Any:
    """VLMEvalKit's ``GMAIMMBenchDataset('GMAI-MMBench_VAL')`` over ``data_root/GMAI-MMBench_VAL.tsv``."""
    os.environ["LMUData"] = str(data_root)  # noqa: SIM112 (VLMEvalKit reads this exact name)
    return oracle.image_mcq.GMAIMMBenchDataset("GMAI-MMBench_VAL")
