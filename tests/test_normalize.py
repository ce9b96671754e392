"""Tests for gmai_client.protocol.normalize: the reference letter, the lenient extraction, multi-answer, keys."""

from __future__ import annotations

import itertools
import random

import pytest

from gmai_client.data.dataset import parse_key
from gmai_client.protocol.normalize import extract, extract_lenient, format_letters
from gmai_client.protocol.rulesets import VLMEVALKIT_2024, VLMEVALKIT_2025, VLMEVALKIT_2026
from gmai_client.types import Extraction

FOUR = (("A", "pneumonia"), ("B", "healthy bone"), ("C", "tumor"), ("D", "fracture"))
FIVE = (*FOUR, ("E", "cyst"))
TWO = (("A", "benign"), ("B", "malignant"))
NORMAL = (("A", "normal"), ("B", "abnormal"))

COT_D = (
    "Let me think step by step. Option A is unlikely because there is no consolidation. "
    "Option B does not explain the cortical break. Option C would show a mass. "
    "Therefore the answer is D."
)


def ok(*letters: str, rule: str) -> Extraction:
    return Extraction(tuple(letters), "ok", rule)


def refused(rule: str) -> Extraction:
    return Extraction(("Z",), "refused", rule)


def unparsed(rule: str = "none") -> Extraction:
    return Extraction((), "unparsed", rule)


# ------------------------------------------------------------------------------- single answer

# Cases for the lenient extraction: wherever the reference reads a letter, that letter (its rules:
# option_token, z_token, refusal, option_text); elsewhere the lenient rules.
SINGLE_CASES = [
    # --- the reference rules
    ("B", FOUR, ok("B", rule="option_token")),
    ("  D  \n", FOUR, ok("D", rule="option_token")),
    ("The answer is (B).", FOUR, ok("B", rule="option_token")),
    ("B. healthy bone", FOUR, ok("B", rule="option_token")),
    ("**C**", FOUR, ok("C", rule="option_token")),
    ("Option [D]: fracture", FOUR, ok("D", rule="option_token")),
    ("healthy bone", FOUR, ok("B", rule="option_text")),
    ("It is a Tumor.", FOUR, ok("C", rule="option_text")),
    (COT_D, FOUR, ok("D", rule="answer_is")),  # lenient: four letters are tokens, too long for the text rule
    ("A and B are wrong, the correct answer is **C**, a tumor", FOUR, ok("C", rule="option_text")),
    # the letter rule: a single letter must be among the last four tokens, else the text rule decides
    ("C is what the image shows since the mass is large", FOUR, unparsed()),
    ("Answer: A lesion", FOUR, ok("A", rule="option_token")),  # the reference reads "A" here
    # lenient "answer is": case-insensitive as older VLMEvalKit versions read it, quirk included
    ("The answer is based on the image, not on A or C", FOUR, ok("B", rule="answer_is")),
    # ... and it needs the letter to be an option; the first match decides
    ("The answer is C", TWO, unparsed()),
    # the text rule's length guard: too long an answer is not matched on option text
    ("healthy bone " * 10, FOUR, unparsed()),
    ("A or B", FOUR, unparsed()),
    ("Both A and B", FOUR, unparsed()),
    ("pneumonia or tumor", FOUR, unparsed()),
    # refusals
    ("Sorry, I can't help with images of people yet.", FOUR, refused("refusal")),
    ("Hmm. I can't process this file. B", FOUR, refused("refusal")),
    ("I'm sorry, but without the image provided I cannot say.", FOUR, refused("refusal")),
    ("Cannot determine the answer", FOUR, refused("refusal")),
    ("Z", FOUR, refused("z_token")),
    ("The answer is Z.", FOUR, refused("z_token")),
    ("", FOUR, unparsed("empty")),
    ("   ", FOUR, unparsed("empty")),
    # E options
    ("E", FIVE, ok("E", rule="option_token")),
    ("The answer is E.", FIVE, ok("E", rule="option_token")),
    ("cyst", FIVE, ok("E", rule="option_text")),
    # a letter outside the options
    ("C", TWO, unparsed()),
    ("E", FOUR, unparsed()),
    ("The answer is (C).", TWO, unparsed()),
    # --- our improvements (only where the reference finds nothing)
    ("A, B and C are all wrong here, so the answer is E", FIVE, ok("E", rule="answer_is_e")),
    ("A, B and C are wrong; the answer is either D or E", FIVE, unparsed()),
    ("A, B and C are wrong; the answer is e.g. unclear", FIVE, unparsed()),
    ("Option A is wrong. Option C is wrong. Final answer: B", FOUR, ok("B", rule="final_answer")),
    ("Looking at options A and C... Answer: (c)", FOUR, ok("C", rule="final_answer")),
    ("I think the answer is (B) because A and C are unlikely.", FOUR, ok("B", rule="final_answer")),
    ("Answer: C\nExplanation: A and B do not match the findings.", FOUR, ok("C", rule="final_answer")),
    ("Not A, not C. Correct option: **D**", FOUR, ok("D", rule="final_answer")),
    (
        "Option A looks odd and option C is unlikely given the intact cortex. Answer: B healthy bone",
        FOUR,
        ok("B", rule="final_answer"),
    ),
    ("Answer: C. No wait, A and D are out. Final answer: B.", FOUR, ok("B", rule="final_answer")),
    ("Options A and C differ. Answer: a lesion", FOUR, unparsed()),
    ("Options A and C differ. Answer: B is unlikely", FOUR, unparsed()),
    ("Options A and C. Final answer: E", FOUR, unparsed()),  # last marker's letter is not an option
    ("A lesion is visible in the left lung, so C", FOUR, ok("C", rule="article_a")),
    ("A 45-year-old with a cortical break, so the pick is D", FOUR, ok("D", rule="article_a")),
    ("A lesion is visible in the left lung, so A", FOUR, ok("A", rule="article_a")),
    ("A is correct, not C", FOUR, unparsed()),
    ("A seems right, not C", FOUR, unparsed()),
    ("Option A is correct, not C", FOUR, unparsed()),
    ("abnormal", NORMAL, ok("B", rule="option_text_span")),
    ("normal", NORMAL, ok("A", rule="option_text")),
    ("b", FOUR, ok("B", rule="lone_lowercase")),
    ("b)", FOUR, ok("B", rule="lone_lowercase")),
    ("(c)", FOUR, ok("C", rule="lone_lowercase")),
    ("d.", FOUR, ok("D", rule="lone_lowercase")),
    ("e", FOUR, unparsed()),
    ("a lesion", FOUR, unparsed()),
]


@pytest.mark.parametrize(("answer", "options", "expected"), SINGLE_CASES)
def test_extract_lenient_single(answer: str, options: tuple[tuple[str, str], ...], expected: Extraction) -> None:
    assert extract_lenient(answer, options) == expected


def test_options_may_be_a_list() -> None:
    assert extract_lenient("healthy bone", list(FOUR)) == ok("B", rule="option_text")


REFERENCE_CASES = [
    ("B", FOUR, ok("B", rule="option_token")),
    ("healthy bone", FOUR, ok("B", rule="option_text")),
    (COT_D, FOUR, unparsed()),  # VLMEvalKit reads nothing here: four letters, too long for the text rule
    ("b", FOUR, unparsed()),
    ("Final answer: B", FOUR, ok("B", rule="option_token")),
    ("Option A is wrong. Final answer: B", FOUR, unparsed()),  # two letters among the tokens
    ("Z", FOUR, refused("z_token")),
    ("Cannot determine the answer", FOUR, refused("refusal")),
    # the API failure text skips the letter rule; the text rule still reads the option
    ("Failed to obtain answer via API. B", FOUR, unparsed()),
    ("Failed to obtain answer via API: tumor", FOUR, ok("C", rule="option_text")),
    # an empty answer is evaluated as pandas reads it back: the text "nan", which holds option "an"
    ("", (("A", "an"), ("B", "lesion")), ok("A", rule="option_text")),
    ("None", (("A", "lesion"), ("B", "Nan")), ok("B", rule="option_text")),
    ("", FOUR, unparsed("empty")),
    # not stripped: the length limit counts the whitespace ("tumor" + 64 spaces > 2 x 34 characters)
    ("tumor" + " " * 64, FOUR, unparsed()),
    ("tumor" + " " * 60, FOUR, ok("C", rule="option_text")),
]


@pytest.mark.parametrize(("answer", "options", "expected"), REFERENCE_CASES)
def test_extract_reference(answer: str, options: tuple[tuple[str, str], ...], expected: Extraction) -> None:
    assert extract(answer, options, VLMEVALKIT_2025) == expected


# The same answers under each era's rules (2024: a letter anywhere, no length cap; 2026: "answer is X").
ERA_CASES = [
    # answer, options, (2024, 2025, 2026)
    ("A is my choice because the finding in the highlighted region is consistent with it overall", FOUR,
     (ok("A", rule="option_token"), unparsed(), unparsed())),
    ("The correct answer is **B**. A and C are wrong here.", FOUR,
     (unparsed(), unparsed(), ok("B", rule="answer_is"))),
    ("Option A seems right, but the answer is c", FOUR,
     (ok("A", rule="option_token"), unparsed(), ok("C", rule="answer_is"))),
    ("The answer is E.", FIVE, (ok("E", rule="option_token"),) * 3),  # one letter: the token rule first
    ("A or C, the answer is E", FIVE, (unparsed(), unparsed(), unparsed())),  # the fallback reads A-D only
    ("tumor" + " " * 64, FOUR, (ok("C", rule="option_text"), unparsed(), unparsed())),
    # the prediction file's round trip: a formula (2024 and 2025 writers), a carriage return
    ("=> B", FOUR, (unparsed(), unparsed(), ok("B", rule="option_token"))),
    ("Answer: B\r\n", FOUR, (unparsed(), unparsed(), unparsed())),
]


@pytest.mark.parametrize(("answer", "options", "expected"), ERA_CASES)
def test_extract_under_each_rule_set(
    answer: str, options: tuple[tuple[str, str], ...], expected: tuple[Extraction, ...]
) -> None:
    eras = (VLMEVALKIT_2024, VLMEVALKIT_2025, VLMEVALKIT_2026)
    assert tuple(extract(answer, options, rules) for rules in eras) == expected


def test_the_default_rule_set_is_the_published_tables() -> None:
    early = "A is my choice because the finding in the highlighted region is consistent with it overall"
    assert extract(early, FOUR) == extract(early, FOUR, VLMEVALKIT_2024) == ok("A", rule="option_token")


# --------------------------------------------------------------- agreement with the reference rules


def reference_can_infer(answer: str, options: tuple[tuple[str, str], ...]) -> str | None:
    """An independent, literal restatement of VLMEvalKit's can_infer (see gmai_client.protocol.reference),
    for differential tests; VLMEvalKit's own code is checked in test_conformance.py."""
    if answer in {"", "None", "NA", "N/A", "nan", "NaN", "null", "NULL", "n/a"}:
        answer = "nan"
    choices = dict(options)
    if "Failed to obtain answer via API" not in answer:
        for phrase in (
            "Sorry, I can't help with images of people yet.",
            "I can't process this file.",
            "I'm sorry, but without the image provided",
            "Cannot determine the answer",
        ):
            if phrase in answer:
                return "Z"
        mod = answer
        for c in ".()[],:;!*#{}":
            mod = mod.replace(c, " ")
        splits = [x.strip() for x in mod.split()]
        count = sum(1 for c in choices if c in splits)
        if count == 1:
            for ch in choices:
                if ch in splits and splits.index(ch) > len(splits) - 5:
                    return ch
        elif count == 0 and "Z" in splits:
            return "Z"
    low = answer.lower()
    if len(low) > 2 * sum(len(str(v)) for v in choices.values()):
        return None
    cands = [k for k, v in choices.items() if str(v).lower() in low]
    return cands[0] if len(cands) == 1 else None


def _agrees(answer: str, options: tuple[tuple[str, str], ...]) -> None:
    expected = reference_can_infer(answer, options)
    ours = extract(answer, options, VLMEVALKIT_2025)
    assert ours.letters == (() if expected is None else (expected,)), (answer, ours)
    lenient = extract_lenient(answer, options)
    if expected is not None:  # the lenient extraction never overrules the reference
        assert lenient == ours, (answer, lenient)


@pytest.mark.parametrize(("answer", "options"), [(case[0], case[1]) for case in SINGLE_CASES + REFERENCE_CASES])
def test_agrees_with_reference_on_table(answer: str, options: tuple[tuple[str, str], ...]) -> None:
    _agrees(answer, options)


def test_agrees_with_reference_on_generated_answers() -> None:
    # Short answers built from the pieces models emit: the reference letter equals the restatement's.
    pieces = [
        "A", "B", "C", "D", "E", "Z", "a", "b", "(B)", "**C**", "D.", "answer", "Answer:", "is",
        "the", "correct", "Final", "either", "lesion", "so", "healthy bone", "tumor", "not", "or",
        "\n", "based", "cyst", "abnormal", "normal", "None", "", "  ",
    ]  # fmt: skip
    rng = random.Random(1234)
    for options in (FOUR, FIVE, TWO, NORMAL):
        for length in range(1, 8):
            for _ in range(150):
                _agrees(" ".join(rng.choice(pieces) for _ in range(length)), options)
    for a, b in itertools.product(pieces, repeat=2):
        _agrees(f"{a} {b}", FOUR)
    for piece in pieces:
        _agrees(piece, TWO)


# -------------------------------------------------------------------------------- multi answer

MULTI_CASES = [
    ("A,C", FOUR, ok("A", "C", rule="letter_list")),
    ("A, C", FOUR, ok("A", "C", rule="letter_list")),
    ("C, A", FOUR, ok("A", "C", rule="letter_list")),
    ("A/C", FOUR, ok("A", "C", rule="letter_list")),
    ("The answers are B and D.", FOUR, ok("B", "D", rule="letter_list")),
    ("**A**, **C**", FOUR, ok("A", "C", rule="letter_list")),
    ("(A) (B) (E)", FIVE, ok("A", "B", "E", rule="letter_list")),
    ("a, c", FOUR, ok("A", "C", rule="letter_list")),
    ("B", FOUR, ok("B", rule="letter_list")),
    ("AC", FOUR, ok("A", "C", rule="letter_run")),
    ("The correct answers are ACD", FOUR, ok("A", "C", "D", rule="letter_run")),
    ("CA", FOUR, unparsed()),
    ("AE", FOUR, unparsed()),
    ("A, E", FOUR, unparsed()),
    ("Z", FOUR, refused("z_token")),
    ("I can't process this file.", FOUR, refused("refusal")),
    (
        "A shows consolidation, C shows a mass, B is normal. Therefore the correct answers are A, C and D.",
        FOUR,
        ok("A", "C", "D", rule="answer_list"),
    ),
    ("Looking at the image...\nAnswers: B; D\nB is the main one.", FOUR, ok("B", "D", rule="answer_list")),
    ("pneumonia and tumor", FOUR, ok("A", "C", rule="option_text")),
    ("abnormal", NORMAL, ok("B", rule="option_text")),
    ("A lesion and C", FOUR, unparsed()),
    ("I am not sure", FOUR, unparsed()),
    ("", FOUR, unparsed("empty")),
]


@pytest.mark.parametrize(("answer", "options", "expected"), MULTI_CASES)
def test_extract_multi(answer: str, options: tuple[tuple[str, str], ...], expected: Extraction) -> None:
    assert extract_lenient(answer, options, multi=True) == expected


# ---------------------------------------------------------------------------------- keys, format


@pytest.mark.parametrize(
    ("cell", "letters"),
    [
        ("A", ("A",)),
        (" B\n", ("B",)),
        ("A,C", ("A", "C")),
        ("A, C", ("A", "C")),
        ("C;A", ("A", "C")),
        ("A C E", ("A", "C", "E")),
        ("AC", ("A", "C")),
    ],
)
def test_parse_key(cell: str, letters: tuple[str, ...]) -> None:
    assert parse_key(cell) == letters


@pytest.mark.parametrize("cell", ["", "  ", "a", "F", "Z", "A,A", "A-C", "A|C", "nan", "A.", "Answer: A"])
def test_parse_key_rejects(cell: str) -> None:
    with pytest.raises(ValueError):
        parse_key(cell)


def test_format_letters_round_trips_with_parse_key() -> None:
    assert format_letters(("A", "C")) == "A,C"
    assert format_letters(("B",)) == "B"
    assert format_letters(()) == ""
    assert parse_key(format_letters(("A", "C", "D"))) == ("A", "C", "D")
