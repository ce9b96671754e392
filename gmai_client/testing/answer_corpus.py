"""A generated corpus of GMAI-format items and free-text answers for conformance tests.

Every item is written as a TSV row the way the released files are (tab-separated, pandas' reading)
and gets one answer in one of ``STYLES``: the forms real models answer in (markdown bold,
``\boxed{B}``, ``Option B:``, ``(B)``, Chinese, JSON, chain-of-thought ending "Therefore, the answer
is D.", answers echoing the option list, multi-line answers), the corner cases of VLMEvalKit's
reading in each era (letters inside prose, lower-case letters, "the answer is **B**" among other
letters, ``none`` and ``N/A`` option cells, option texts contained in each other, E options, answers
at the text rule's length limit, leading and trailing whitespace, refusals, several letters, empty
answers, multi-answer keys), and what its prediction file's round trip does to an answer (a leading
``=``, a carriage return, a leading link over 2,079 characters, an answer over 32,767 characters,
control characters). ``numeric_answers`` is a second answer set whose every answer is a number or
empty: the one case where pandas converts the whole prediction column.

The corpus is deterministic for a seed. It is test data: nothing here is medical, and the answers
are not scored here (the conformance test scores them with gmai_client and with VLMEvalKit).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

COLUMNS = (
    "index", "question", "A", "B", "C", "D", "E", "answer", "image",
    "category", "clinical VQA task", "department", "perceptual granularity", "modality",
)  # fmt: skip

# Option texts, with pairs where one text contains another ("normal" / "abnormal").
_TERMS = (
    "normal", "abnormal", "cyst", "cystic lesion", "lesion", "mass", "benign mass", "malignant",
    "malignant tumor", "edema", "myocardial edema", "fracture", "no fracture", "polyp", "adenoma",
    "glaucoma", "cataract", "retina", "optic disc", "liver", "kidney", "left kidney", "lung",
    "upper lobe", "nodule", "pneumonia", "effusion", "pleural effusion", "stage 1", "stage 2",
    "grade II", "grade III", "2", "3", "12", "none", "None of the above", "a", "B cells",
    "T cells", "E. coli", "C. difficile", "Z line", "an", "API", "nan", "mild", "moderate",
)  # fmt: skip
# Cells pandas reads as missing, and look-alikes it keeps.
_MISSING_CELLS = ("", "N/A", "NA", "n/a", "null", "NULL", "None", "nan", "NaN", "#N/A", "<NA>")
_KEPT_CELLS = ("none", " NA", "Na", "-")
_GROUPS = {
    "category": ("glaucoma", "cataract", "pneumonia", "fracture", "polyp", "edema", "lesion"),
    "clinical VQA task": ("Disease Diagnosis", "Organ Recognition - Abdomen", "Counting", "Severity Grading"),
    "department": ("Ophthalmology", "Radiology", "Orthopedic Surgery", "", "Cardiology"),
    "perceptual granularity": ("Image Level", "Box Level", "Mask Level", "Contour Level"),
    "modality": ("Fundus Photography", "CT", "X-ray", "Endoscopy", "MRI"),
}


@dataclass(frozen=True)
class CorpusItem:
    index: int
    options: tuple[tuple[str, str], ...]  # letters with a present option, as they will be read
    key: str  # the answer cell
    style: str
    answer: str


def _png_b64() -> str:
    buffer = io.BytesIO()
    Image.new("L", (4, 4), 200).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _letter_styles() -> dict[str, Callable[[random.Random, str, str, list[tuple[str, str]]], str]]:
    """style -> f(rng, letter, text, options) giving an answer for option ``letter`` with text ``text``."""

    def other(rng: random.Random, letter: str, options: list[tuple[str, str]]) -> tuple[str, str]:
        rest = [pair for pair in options if pair[0] != letter]
        return rng.choice(rest) if rest else (letter, "")

    def at_limit(rng: random.Random, letter: str, text: str, options: list[tuple[str, str]]) -> str:
        limit = 2 * sum(len(t) for _, t in options)
        filler = "x" * max(0, limit - len(text) - 1 + rng.choice((0, 1)))
        return f"{text} {filler}"[: limit + 1]

    return {
        "bare_letter": lambda r, k, t, o: k,
        "letter_dot": lambda r, k, t, o: f"{k}.",
        "parenthesized": lambda r, k, t, o: f"({k})",
        "answer_is": lambda r, k, t, o: f"The answer is {k}.",
        "answer_colon": lambda r, k, t, o: f"Answer: {k}",
        "bold": lambda r, k, t, o: f"**{k}**",
        "lowercase_letter": lambda r, k, t, o: k.lower(),
        "letter_and_text": lambda r, k, t, o: f"{k}. {t}",
        "text_only": lambda r, k, t, o: t,
        "text_upper": lambda r, k, t, o: t.upper(),
        "text_in_sentence": lambda r, k, t, o: f"The image shows {t}.",
        "letter_early_in_prose": lambda r, k, t, o: (
            f"{k} is my choice because the finding in the highlighted region is consistent with it overall"
        ),
        "final_answer_after_prose": lambda r, k, t, o: (
            f"Option {other(r, k, o)[0]} seems unlikely here. Final answer: {k}"
        ),
        "two_letters": lambda r, k, t, o: f"{k} or {other(r, k, o)[0]}",
        "article_a_prose": lambda r, k, t, o: f"A {t} is visible. So {k}.",
        "near_length_limit": at_limit,
        "api_failure_text": lambda r, k, t, o: f"Failed to obtain answer via API. {t}",
        "leading_trailing_whitespace": lambda r, k, t, o: f"  \n{k}  \t",
        "markdown_heading": lambda r, k, t, o: f"### Answer\n**{k}**: {t}",
        "braces": lambda r, k, t, o: r.choice(("{", "[")) + k + r.choice(("}", "]")),
        "chinese": lambda r, k, t, o: f"答案是 {k}",
        "json": lambda r, k, t, o: json.dumps({"answer": k}),
        "option_word": lambda r, k, t, o: f"Option {k}",
        "listing": lambda r, k, t, o: f"{k}) {t}\n{other(r, k, o)[0]}) {other(r, k, o)[1]}",
        "letter_with_colon_text": lambda r, k, t, o: f"{k}: {t}",
        # Realistic model styles.
        "markdown_bold_sentence": lambda r, k, t, o: f"The answer is **{k}**.",
        "boxed": lambda r, k, t, o: f"\\boxed{{{k}}}",
        "option_colon_text": lambda r, k, t, o: f"Option {k}: {t}",
        "paren_letter_text": lambda r, k, t, o: f"({k}) {t}",
        "chinese_sentence": lambda r, k, t, o: r.choice((f"根据图像，正确答案是{k}。", f"答案：{k}. {t}", f"选{k}")),
        "json_with_reason": lambda r, k, t, o: json.dumps({"reasoning": f"The image shows {t}.", "answer": k}),
        "cot_therefore": lambda r, k, t, o: (
            "Let me look at each option.\n"
            + "".join(f"- {x}. {y}: {'consistent' if x == k else 'not consistent'} with the image.\n" for x, y in o)
            + f"Therefore, the answer is {k}."
        ),
        "correct_answer_bold_cot": lambda r, k, t, o: (
            f"The correct answer is **{k}**. Here's why: option {other(r, k, o)[0]} would show "
            f"{other(r, k, o)[1]}, which is not what the image shows."
        ),
        "echo_options": lambda r, k, t, o: "".join(f"{x}. {y}\n" for x, y in o) + f"Answer: {k}",
        "multi_line": lambda r, k, t, o: f"{k}\n\nExplanation: the {t} is visible in the image.",
        "answer_is_lowercase": lambda r, k, t, o: f"I think the answer is {k.lower()}, given the image.",
        "answer_is_option_text": lambda r, k, t, o: f"The answer is {t}.",
        "final_answer_heading": lambda r, k, t, o: f"Looking at {t} and at {other(r, k, o)[1]}.\n**Final Answer:** {k}",
        # What VLMEvalKit's prediction file does to an answer.
        "formula_arrow": lambda r, k, t, o: f"=> {k}",
        "formula_text": lambda r, k, t, o: f"= {k}. {t}",
        "carriage_return": lambda r, k, t, o: f"Answer: {k}\r\n",
        "crlf_prose": lambda r, k, t, o: f"The image shows {t}.\r\nAnswer: {k}",
        "long_link": lambda r, k, t, o: "https://example.org/case/" + "x" * 2100 + f" The answer is {k}.",
        "short_link": lambda r, k, t, o: f"https://example.org/case/{r.randint(1, 999)} The answer is {k}.",
        "over_cell_limit": lambda r, k, t, o: "The findings are described at length. " * 880 + f"The answer is {k}.",
        "control_character": lambda r, k, t, o: f"{k}\x0b" if r.random() < 0.5 else f"Answer:\x08 {k}",
    }


_FIXED_STYLES: dict[str, Callable[[random.Random, list[tuple[str, str]]], str]] = {
    "refusal_people": lambda r, o: "Sorry, I can't help with images of people yet.",
    "refusal_no_image": lambda r, o: "I'm sorry, but without the image provided I cannot answer.",
    "cannot_determine": lambda r, o: "Cannot determine the answer from this image.",
    "bare_z": lambda r, o: "Z",
    "empty": lambda r, o: "",
    "whitespace_only": lambda r, o: r.choice(("   ", "\n", "\t ")),
    "missing_value_text": lambda r, o: r.choice(("None", "N/A", "nan", "NA", "null")),
    "letter_not_an_option": lambda r, o: r.choice(("F", "G")),
    "several_letters_list": lambda r, o: ",".join(sorted({r.choice(o)[0] for _ in range(3)})),
    "glued_letters": lambda r, o: "".join(sorted({letter for letter, _ in r.sample(o, min(2, len(o)))})),
    "word_none": lambda r, o: "none",
}

#: Every answer style the corpus uses.
STYLES: tuple[str, ...] = (*_letter_styles(), *_FIXED_STYLES)


def _options(rng: random.Random) -> tuple[list[str], list[tuple[str, str]]]:
    """Five option cells as written, and the (letter, text) pairs pandas reads from them."""
    count = rng.choice((2, 3, 4, 4, 5, 5))
    texts = rng.sample(_TERMS, count)
    cells = []
    for position in range(5):
        if position < count:
            text = texts[position]
            if rng.random() < 0.08:
                text = rng.choice((" ", "  ")) + text + rng.choice(("", " "))
            cells.append(text)
        else:
            cells.append(rng.choice(_MISSING_CELLS) if rng.random() < 0.8 else "")
    if rng.random() < 0.1 and count < 5:
        cells[count] = rng.choice(_KEPT_CELLS)  # a cell pandas keeps: a real option
    if rng.random() < 0.05 and count >= 3:
        cells[1] = rng.choice(_MISSING_CELLS)  # a gap: A, C, D
    present = [(letter, cell) for letter, cell in zip("ABCDE", cells, strict=True) if cell not in _MISSING_CELLS]
    return cells, present


def build(n_items: int, seed: int = 0) -> tuple[list[list[str]], list[CorpusItem]]:
    """``n_items`` TSV rows (``COLUMNS``) and their answers; styles cycle so each is well represented."""
    rng = random.Random(f"answer-corpus-{seed}")
    letter_styles = _letter_styles()
    styles = list(STYLES)
    image = _png_b64()
    rows: list[list[str]] = []
    items: list[CorpusItem] = []
    for number in range(n_items):
        cells, present = _options(rng)
        while len(present) < 2:
            cells, present = _options(rng)
        style = styles[number % len(styles)]
        letter, text = rng.choice(present)
        if rng.random() < 0.06 and len(present) >= 3:
            key = ",".join(sorted(x for x, _ in rng.sample(present, 2)))  # a multi-answer key
            key = key.replace(",", "") if rng.random() < 0.3 else key
        else:
            key = letter if rng.random() < 0.55 else rng.choice(present)[0]
        if style in letter_styles:
            answer = letter_styles[style](rng, letter, text.strip(), present)
        else:
            answer = _FIXED_STYLES[style](rng, present)
        question = f"Which finding is shown in image {number}?"
        if rng.random() < 0.05:
            question = rng.choice(("  ", "")) + question + rng.choice((" ", "  "))
        groups = [rng.choice(values) for values in _GROUPS.values()]
        rows.append([str(number), question, *cells, key, image, *groups])
        items.append(CorpusItem(number, tuple(present), key, style, answer))
    return rows, items


def numeric_answers(items: list[CorpusItem], seed: int = 0) -> list[str]:
    """A second answer set for the same items: every answer a number (or empty), so that VLMEvalKit's
    reader converts the whole prediction column ("1" reads back as "1.0" when one is empty)."""
    rng = random.Random(f"numeric-answers-{seed}")
    return [rng.choice(("1", "2", "3", "12", "02", "2.0", "0.5", "")) for _ in items]


def write_answers(path: Path, items: list[CorpusItem], answers: list[str]) -> Path:
    """An answer set in the replay format: one JSON line per item."""
    with path.open("w", encoding="utf-8") as handle:
        for item, answer in zip(items, answers, strict=True):
            handle.write(json.dumps({"index": item.index, "prediction": answer}, ensure_ascii=False) + "\n")
    return path


def write(folder: Path, n_items: int, seed: int = 0) -> tuple[Path, Path, list[CorpusItem]]:
    """Write ``corpus.tsv`` and ``answers.jsonl`` (replay format) under ``folder``."""
    rows, items = build(n_items, seed)
    folder.mkdir(parents=True, exist_ok=True)
    tsv = folder / "corpus.tsv"
    with tsv.open("w", newline="", encoding="utf-8") as handle:
        # Quoting only where a cell needs it, as pandas writes TSVs (no cell here needs it).
        csv.writer(handle, delimiter="\t", lineterminator="\n").writerows([list(COLUMNS), *rows])
    answers = write_answers(folder / "answers.jsonl", items, [item.answer for item in items])
    return tsv, answers, items
