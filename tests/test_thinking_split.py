"""Thinking kept apart from the answer: VLMEvalKit's own ``SPLIT_THINK`` handling is the oracle.

VLMEvalKit splits a thinking model's answer in ``vlmeval/inference.py`` (``split_thinking``, nested
in ``infer_data_job``, used when ``SPLIT_THINK`` is set). Its source is read from the installed
``ms-vlmeval`` and run as it is, so the answer, the thinking and the letter read here are checked
against what VLMEvalKit's own handling gives, never against a copy of it.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from gmai_client.protocol.normalize import extract
from gmai_client.protocol.scoring import rescore, score_answer, split_thinking
from gmai_client.types import Item, Response, Usage

OPTIONS = (("A", "Pneumonia"), ("B", "Fracture"), ("C", "Normal"), ("D", "Effusion"))
ITEM = Item("7", "What does the image show?", OPTIONS, ("B",), (), answer_cell="B")

ANSWERS = [
    "<think>\nOption A looks likely, then C.\n</think>\n\nThe answer is B.",
    "Option A? No: C.\n</think>\n\nB",  # the chat template opened <think> itself
    "<think>A</think>first</think>B",  # two closes: VLMEvalKit keeps everything before the last
    "preamble <think>A or C</think> B. Fracture",
    "<think>\n</think>\n\nB",  # an empty thinking block (thinking switched off)
    "The answer is B.",  # no thinking at all: untouched
    "<think>A, then C; no close",  # stopped without closing, not cut: VLMEvalKit keeps it all as the answer
    "  <think>A</think>  ",  # thinking and an empty answer
]


def vlmevalkit_split() -> Callable[[str], tuple[str, str]]:
    """VLMEvalKit's ``split_thinking``, compiled from the installed ``vlmeval/inference.py``."""
    spec = importlib.util.find_spec("vlmeval")
    if spec is None or not spec.submodule_search_locations:
        message = "ms-vlmeval is not installed (.ci/run installs it: pip install --no-deps ms-vlmeval==0.0.20)"
        if os.environ.get("GMAI_REQUIRE_VLMEVAL"):
            pytest.fail(message)
        pytest.skip(message)
    source = Path(next(iter(spec.submodule_search_locations)), "inference.py").read_text(encoding="utf-8")
    found = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef) and n.name == "split_thinking"]
    assert found, "VLMEvalKit's inference.py no longer has split_thinking: read its SPLIT_THINK path again"
    namespace: dict = {"warnings": warnings}
    exec(compile(ast.Module(body=found, type_ignores=[]), "vlmeval/inference.py", "exec"), namespace)
    split = namespace["split_thinking"]

    def quiet(text: str) -> tuple[str, str]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return split(text)

    return quiet


@pytest.mark.parametrize("text", ANSWERS)
def test_the_split_and_the_letter_equal_vlmevalkit(text: str) -> None:
    theirs = vlmevalkit_split()(text)
    assert split_thinking(text) == theirs
    record = score_answer(ITEM, "m", Response(text))
    assert (record.prediction, record.thinking) == theirs
    assert record.letters == extract(theirs[0], OPTIONS).letters  # the letter is read from their prediction


def test_the_thinking_is_never_read_for_a_letter() -> None:
    record = score_answer(ITEM, "m", Response("<think>It is A. Definitely A.</think>\n\nB"))
    assert record.letters == ("B",) and record.correct
    separate = score_answer(ITEM, "m", Response("B", thinking="A, surely A"))  # a server's reasoning field
    assert separate.letters == ("B",) and separate.thinking == "A, surely A"


@pytest.mark.parametrize(
    "response",
    [
        Response("<think>A looks right, but C", finish_reason="length"),  # cut before </think>
        Response("", finish_reason="length", thinking="A looks right"),  # a reasoning field, then nothing
        Response("", finish_reason="length", usage=Usage(10, 300, reasoning_tokens=300)),  # OpenAI: the count only
    ],
)
def test_an_answer_cut_while_thinking_has_its_own_status(response: Response) -> None:
    record = score_answer(ITEM, "m", response)
    assert record.status == "thinking_length" and record.correct is False and record.letters == ()
    assert record.prediction == ""
    assert "A looks right" in record.thinking or record.reasoning_tokens == 300
    assert rescore(record) == record  # --rescore never reads the thinking either


def test_an_empty_answer_without_thinking_stays_unparsed() -> None:
    assert score_answer(ITEM, "m", Response("", finish_reason="length")).status == "unparsed"


def test_rescore_splits_records_written_before_thinking_was_kept_apart() -> None:
    old = score_answer(ITEM, "m", Response("B"))
    written_before = replace(old, prediction="<think>A</think>B", letters=(), status="unparsed")
    again = rescore(written_before)
    assert (again.prediction, again.thinking, again.letters) == ("B", "A", ("B",))
