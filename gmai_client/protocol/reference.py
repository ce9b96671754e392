"""The reference protocol: what VLMEvalKit, the toolkit behind GMAI-MMBench's published figures, does
to a benchmark row and to a model's answer, restated so that the same answers give the same letters.

Pure functions, no I/O. VLMEvalKit's code (``ms-vlmeval`` on PyPI: ``vlmeval/utils/matching_util.py``,
``vlmeval/dataset/utils/multiple_choice.py``, ``vlmeval/dataset/image_mcq.py``) is the authority:
``tests/test_conformance.py`` scores a generated corpus with both and requires identical letters.

Cells. VLMEvalKit reads the TSV (and its own prediction file) with pandas' defaults, so a cell is
*missing* exactly when its whole text is one of pandas' default missing-value strings
(``PANDAS_NA_STRINGS``, no stripping: ``" NA"`` is a value, ``"none"`` is a value). Anything else is
kept as is, surrounding whitespace included.

Answers. VLMEvalKit evaluates the prediction as read back from the xlsx prediction file it wrote
(``readback``: an empty answer or ``"None"`` is evaluated as the text ``"nan"``, ``"=> A"`` as
``"0"`` in the eras whose writer makes formulas, ``"B\\r"`` as ``"B_x000D_"``, ...). Then
``can_infer``, whose rules depend on the era (``rulesets.RuleSet``):

1. an answer containing ``"Failed to obtain answer via API"`` skips steps 2 and 3;
2. a refusal phrase anywhere gives Z; else each of ``.()[],:;!*#{}`` becomes a space and the answer
   is split on whitespace: if exactly one option letter is a token, that letter (from 2025: only if
   its first occurrence is among the last four tokens); if no option letter is a token but ``Z``
   is, Z;
3. (2026) else the first ``(correct) answer is X`` (any case, X one of A-D, ``**`` around it
   allowed) gives X if X is an option;
4. else, if exactly one option's lower-cased text occurs in the lower-cased answer (not stripped),
   that option (from 2025: only if the answer is at most twice as long as all option texts together).

Otherwise nothing: VLMEvalKit's exact matching then records Z, a wrong answer. An item is a hit
when the letter equals the answer cell exactly (``is_hit``): a multi-answer key such as ``"A,C"``
can never be hit, as in VLMEvalKit.

Not reproduced: the ``VERBOSE`` environment switch that makes VLMEvalKit reject a lone "A" in a
long answer (off by default there), and pandas' column-wide number parsing of the dataset's own
option columns (an option column of the TSV holding only numbers is read as numbers: "5" shown as
"5.0" where the column has gaps); the prediction column's is reproduced (``readback``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gmai_client.protocol.readback import as_text, read_back, read_back_cell
from gmai_client.protocol.rulesets import DEFAULT_RULES, RuleSet
from gmai_client.types import PANDAS_NA_STRINGS, is_missing

__all__ = ["PANDAS_NA_STRINGS", "is_missing"]  # the cell rule lives with the vocabulary: data reads it too

#: Phrases VLMEvalKit treats as a refusal wherever they occur (case-sensitive).
REFUSAL_PHRASES: tuple[str, ...] = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)

#: The text VLMEvalKit's API wrappers return on failure; an answer holding it skips the letter rule.
API_FAILURE_TEXT = "Failed to obtain answer via API"

#: The characters VLMEvalKit turns into spaces before splitting an answer into tokens.
PUNCTUATION = ".()[],:;!*#{}"

#: What VLMEvalKit's exact matching records when no letter can be inferred (scored wrong).
NO_LETTER = "Z"

#: The 2026 fallback: the first "(correct) answer is X", X one of A-D in any case, "**" allowed.
ANSWER_IS = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")

_PUNCTUATION_TABLE = str.maketrans(dict.fromkeys(PUNCTUATION, " "))
_CJK = re.compile("[\u4e00-\u9fff]")

Options = Sequence[tuple[str, str]]


def answer_as_read_back(prediction: str, rules: RuleSet = DEFAULT_RULES) -> str:
    """The answer text VLMEvalKit evaluates: ``str()`` of the cell read back from its prediction file."""
    return read_back(prediction, formulas=rules.xlsx_formulas)


def options_as_read_back(options: Options, rules: RuleSet = DEFAULT_RULES) -> Options:
    """The options VLMEvalKit matches against: each cell read back from its prediction file (a cell
    that reads back as missing is no option there)."""
    read = ((letter, read_back_cell(text, formulas=rules.xlsx_formulas)) for letter, text in options)
    return tuple((letter, as_text(cell)) for letter, cell in read if cell is not None)


def tokens(answer: str) -> list[str]:
    """The answer split as VLMEvalKit splits it for the letter rule."""
    return answer.translate(_PUNCTUATION_TABLE).split()


def infer_option(answer: str, letters: Sequence[str], rules: RuleSet = DEFAULT_RULES) -> str | None:
    """Steps 1-3 (``can_infer_option``): a letter, ``"Z"``, or None."""
    return infer_option_by_rule(answer, letters, rules)[0]


def infer_option_by_rule(answer: str, letters: Sequence[str], rules: RuleSet = DEFAULT_RULES) -> tuple[str | None, str]:
    """Steps 1-3 and the step that decided: ``refusal``, ``option_token``, ``z_token``, ``answer_is``
    or ``none``."""
    if API_FAILURE_TEXT in answer:
        return None, "none"
    if any(phrase in answer for phrase in REFUSAL_PHRASES):
        return NO_LETTER, "refusal"
    split = tokens(answer)
    present = [letter for letter in letters if letter in split]
    if len(present) == 1:
        # From 2025 its first occurrence must be among the last few tokens; otherwise step 3.
        if rules.letter_window is None or split.index(present[0]) > len(split) - 1 - rules.letter_window:
            return present[0], "option_token"
    elif not present and NO_LETTER in split:
        return NO_LETTER, "z_token"
    if rules.answer_is_fallback:
        match = ANSWER_IS.search(answer)
        if match and match.group(1).upper() in letters:
            return match.group(1).upper(), "answer_is"
    return None, "none"


def text_candidates(answer: str, options: Options, rules: RuleSet = DEFAULT_RULES) -> list[str] | None:
    """Options whose lower-cased text occurs in the lower-cased answer; None when the rules refuse
    the answer as too long (from 2025: more than twice the length of all option texts together)."""
    lowered = answer.lower()
    if rules.text_length_cap and len(lowered) > 2 * sum(len(text) for _, text in options):
        return None
    return [letter for letter, text in options if text.lower() in lowered]


def infer_text(answer: str, options: Options, rules: RuleSet = DEFAULT_RULES) -> str | None:
    """Step 4 (``can_infer_text``): the one option whose text the answer contains."""
    candidates = text_candidates(answer, options, rules)
    return candidates[0] if candidates is not None and len(candidates) == 1 else None


def infer(answer: str, options: Options, rules: RuleSet = DEFAULT_RULES) -> str | None:
    """``can_infer``: the letter VLMEvalKit reads from ``answer`` (already read back), ``"Z"``, or None."""
    letter = infer_option(answer, [letter for letter, _ in options], rules)
    return letter if letter is not None else infer_text(answer, options, rules)


def is_hit(letter: str | None, answer_cell: str | None) -> bool:
    """VLMEvalKit's hit: the letter (None counts as Z) equals the answer cell exactly."""
    return answer_cell is not None and (letter or NO_LETTER) == answer_cell


def judge_prompt_as_read_back(question: str, options: Options, prediction: str, rules: RuleSet = DEFAULT_RULES) -> str:
    """The judge's prompt for an item as the dataset gives it: VLMEvalKit shows its judge the
    question, options and answer read back from its prediction file (``rules``' writer)."""
    shown = options_as_read_back(options, rules)
    return judge_prompt(answer_as_read_back(question, rules), shown, answer_as_read_back(prediction, rules))


def judge_prompt(question: str, options: Options, prediction: str) -> str:
    """The prompt VLMEvalKit sends its judge for an answer ``infer`` could not read.

    ``prediction`` is the answer as read back; the Chinese prompt is used when the question holds a
    CJK character, as there. The wording, quirks included ("Your should", the "?" after the
    question, "A, B, C, D" even with an option E), is the reference's: the judge's letters depend on it.
    """
    option_block = "There are several options: \n" + "".join(f"{letter}. {text}\n" for letter, text in options)
    if _CJK.search(question):
        return (
            "你是一个帮助我匹配答案与单选题中多个选项的 AI 助手。"
            "你会被提供：一个问题，多个选项，一个答案。你的任务是找到与答案意义最相近的选项。"
            "如果所有选项的意义都与答案显著不同，则输出 Z。"
            "你应该输出一个单个的大写字母，例如 A, B, C, D（如果它们是有效选项），或 Z。"
            "例 1:"
            "问题: 图中最主要的物体是什么?\n选项: A. 泰迪熊 B. 兔子 C. 猫 D. 狗\n答案: 一只可爱的泰迪熊\n输出: A\n"
            "例 2: \n"
            "问题: 图中最主要的物体是什么?\n选项: A. 泰迪熊 B. 兔子 C. 猫 D. 狗\n答案: 蜘蛛\n输出: Z\n"
            "例 3: \n"
            f"问题: {question}?\n选项: {option_block}\n答案: {prediction}\n输出: "
        )
    example_options = "A. teddy bear B. rabbit C. cat D. dog"
    return (
        "You are an AI assistant who will help me to match an answer with several options of a "
        "single-choice question. You are provided with a question, several options, and an answer, "
        "and you need to find which option is most similar to the answer. If the meaning of all "
        "options are significantly different from the answer, output Z. Your should output a single "
        "uppercase character in A, B, C, D (if they are valid options), and Z. \n"
        "Example 1: \n"
        f"Question: What is the main object in image?\nOptions: {example_options}\n"
        "Answer: a cute teddy bear\nYour output: A\n"
        "Example 2: \n"
        f"Question: What is the main object in image?\nOptions: {example_options}\n"
        "Answer: Spider\nYour output: Z\n"
        "Example 3: \n"
        f"Question: {question}?\nOptions: {option_block}\nAnswer: {prediction}\nYour output: "
    )
