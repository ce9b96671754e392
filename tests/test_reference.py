"""Tests for gmai_client.protocol.reference: pandas' missing cells, VLMEvalKit's reading and judge prompt.

Differential tests against VLMEvalKit's own code are in test_conformance.py; these pin the rules.
"""

from __future__ import annotations

import pytest

from gmai_client.protocol import reference
from gmai_client.protocol.rulesets import VLMEVALKIT_2024, VLMEVALKIT_2025, VLMEVALKIT_2026

ERAS = (VLMEVALKIT_2024, VLMEVALKIT_2025, VLMEVALKIT_2026)

FOUR = (("A", "pneumonia"), ("B", "healthy bone"), ("C", "tumor"), ("D", "fracture"))
FIVE = (*FOUR, ("E", "cyst"))


def test_missing_strings_are_pandas_defaults() -> None:
    parsers = pytest.importorskip("pandas._libs.parsers")
    assert set(parsers.STR_NA_VALUES) == reference.PANDAS_NA_STRINGS


@pytest.mark.parametrize("cell", ["", "N/A", "NA", "n/a", "null", "NULL", "None", "nan", "NaN", "<NA>", "#N/A"])
def test_missing_cells(cell: str) -> None:
    assert reference.is_missing(cell)
    assert reference.answer_as_read_back(cell) == "nan"


@pytest.mark.parametrize("cell", ["none", " NA", "NA ", "na", "-", "0", " "])
def test_cells_pandas_keeps(cell: str) -> None:
    assert not reference.is_missing(cell)
    assert reference.answer_as_read_back(cell) == cell


@pytest.mark.parametrize(
    ("answer", "letters", "expected"),
    [
        ("B", "ABCD", "B"),
        ("A or B", "ABCD", None),  # two letters
        ("B is right because the lesion is large", "ABCD", None),  # not among the last four tokens
        ("I pick B", "ABCD", "B"),
        ("E", "ABCD", None),  # not an option
        ("Z", "ABCD", "Z"),
        ("A, or Z", "ABCD", "A"),  # a letter wins over Z
        ("Sorry, I can't help with images of people yet. B", "ABCD", "Z"),
        ("Failed to obtain answer via API. Z", "ABCD", None),
    ],
)
def test_infer_option_2025(answer: str, letters: str, expected: str | None) -> None:
    assert reference.infer_option(answer, list(letters), VLMEVALKIT_2025) == expected


def test_the_letter_window_and_the_answer_is_fallback_per_era() -> None:
    early = "B is right because the lesion is large"
    assert [reference.infer_option(early, list("ABCD"), rules) for rules in ERAS] == ["B", None, None]
    bold = "The correct answer is **C**, not A or B"
    assert [reference.infer_option(bold, list("ABCD"), rules) for rules in ERAS] == [None, None, "C"]
    # the fallback reads only A-D, and only options
    assert reference.infer_option("A or B; the answer is E", list("ABCDE"), VLMEVALKIT_2026) is None
    assert reference.infer_option("A or B; the answer is D", list("ABC"), VLMEVALKIT_2026) is None


def test_the_text_rule_length_cap_is_from_2025() -> None:
    long = "The scan shows a tumor. " + "Details follow. " * 10
    assert [reference.infer_text(long, FOUR, rules) for rules in ERAS] == ["C", None, None]


def test_hit_is_exact_equality_with_the_answer_cell() -> None:
    assert reference.is_hit("A", "A")
    assert not reference.is_hit("A", " A")
    assert not reference.is_hit("A", "A,C")
    assert reference.is_hit(None, "Z")  # no letter counts as Z
    assert not reference.is_hit("A", None)


JUDGE_EXPECTED = (
    "You are an AI assistant who will help me to match an answer with several options of a "
    "single-choice question. You are provided with a question, several options, and an answer, "
    "and you need to find which option is most similar to the answer. If the meaning of all "
    "options are significantly different from the answer, output Z. Your should output a single "
    "uppercase character in A, B, C, D (if they are valid options), and Z. \n"
    "Example 1: \n"
    "Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
    "Answer: a cute teddy bear\nYour output: A\n"
    "Example 2: \n"
    "Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
    "Answer: Spider\nYour output: Z\n"
    "Example 3: \n"
    "Question: What does the X-ray show?\n"
    "Options: There are several options: \nA. pneumonia\nB. healthy bone\nC. tumor\nD. fracture\n\n"
    "Answer:   It looks like a broken bone\n\nYour output: "
)


def test_judge_prompt_is_the_reference_text_answer_unstripped() -> None:
    assert reference.judge_prompt("What does the X-ray show", FOUR, "  It looks like a broken bone\n") == JUDGE_EXPECTED


def test_judge_prompt_says_a_to_d_even_with_an_option_e() -> None:
    prompt = reference.judge_prompt("Which finding", FIVE, "cyst")
    assert "uppercase character in A, B, C, D (if they are valid options), and Z. \n" in prompt
    assert prompt.endswith("D. fracture\nE. cyst\n\nAnswer: cyst\nYour output: ")


def test_judge_prompt_in_chinese_for_a_chinese_question() -> None:
    prompt = reference.judge_prompt("图中是什么", FOUR, "骨折")
    assert prompt.startswith("你是一个帮助我匹配答案与单选题中多个选项的 AI 助手。")
    assert prompt.endswith(
        "问题: 图中是什么?\n选项: There are several options: \nA. pneumonia\nB. healthy bone\n"
        "C. tumor\nD. fracture\n\n答案: 骨折\n输出: "
    )
