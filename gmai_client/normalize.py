"""Answer normalization: a model's free text -> option letter(s). Pure functions, no I/O.

This module owns the reference extraction protocol (VLMEvalKit's ``can_infer_option`` /
``can_infer_text`` as stated in DESIGN.md), our documented improvements on top of it, the
multi-answer extraction, the answer-key parser, and the LLM-judge prompt.

Single-answer rules, in order. Rules 1-4 are the reference, reproduced exactly so that the same
raw answer gets the same letter as in published runs:

1. ``refusal``      a reference refusal phrase anywhere in the answer -> Z (refused).
2. ``option_token`` replace each of ``.()[],:;!*#{}`` by a space and split on whitespace. If exactly
                    one option letter occurs as a token and its first occurrence is among the last
                    four tokens, that letter. ``z_token``: no option letter but a ``Z`` token -> Z.
3. ``answer_is``    the first match of ``(?i)(?:correct\\s+)?answer\\s+is\\s+\\**([ABCD])\\**``, if its
                    (upper-cased) letter is an option. Faithfully including the reference's quirk
                    that ``(?i)`` also matches a lower-case word start: "the answer is based on ..."
                    reads as B, exactly as the reference reads it.
4. ``option_text``  if the lower-cased answer is at most twice as long as all option texts
                    together, and exactly one option's lower-cased text occurs in it, that option.

The answer is stripped first, as the reference does before matching. The reference's
``"Failed to obtain answer via API"`` check is not reproduced: here an API failure is an error
record and never reaches ``extract``. Neither is the reference's random-letter fallback.

Our improvements run only when rules 1-4 find nothing, so wherever the reference finds a letter
ours is the same one. Each is deliberately conservative (a wrong letter is worse than "unparsed"):

5. ``answer_is_e``      rule 3 extended to option E (the reference regex covers A-D only), with a
                        guard that the E is not the start of a word ("the answer is either ...").
6. ``final_answer``     the LAST "final answer: X" / "answer: (x)" / "answer is (X)" /
                        "correct option: X" marker; the letter must be closed by ")", "]" or "**",
                        or be followed by punctuation, the end of a line, or that option's text.
7. ``article_a``        a sentence-initial "A" followed by a lower-case noun-like word ("A lesion
                        is visible ...") is an article, not option A: drop those tokens and apply
                        rule 2 again. Words that read like a verb or connector after an option
                        letter ("A is", "A seems", "A and", "A correctly ...") keep the "A".
8. ``option_text_span`` rule 4 where several option texts occur but all occurrences but one
                        option's lie inside a longer option's text ("abnormal" contains "normal").
9. ``lone_lowercase``   the whole answer is one lower-case option letter: "b", "(b)", "b)", "b.".

Otherwise ``unparsed`` with rule ``none`` (``empty`` for a blank answer). Never a random letter.

Multi-answer extraction (``multi=True``, items with several correct letters) has no reference to
agree with (VLMEvalKit scores single answers only), so it is our own, conservative design:

1. ``refusal``      as above.
2. ``letter_list``  the answer, split as in rule 2 (also on ``/``, ``&`` and quotes), consists only of
                    option letters and filler words (the, answer(s), is, are, and, correct,
                    option(s), choice(s), final, both): "A,C", "A, C", "**A**, **C**", "The answers
                    are B and D." -> the sorted distinct letters. Lower-case letters are accepted here
                    only because nothing but letters and filler remains ("a, c").
                    ``z_token``: the same, but the only letter is Z -> Z (refused).
   ``letter_run``   the same, with one glued run of distinct upper-case letters in increasing order
                    ("AC", "The answers are ACD") -> those letters.
3. ``answer_list``  the LAST "answer(s) is/are: <list>" marker followed by a list of upper-case
                    letters separated by commas, semicolons, slashes, "&", "and" or spaces, which
                    ends the line or a sentence: "... Therefore the correct answers are A, C and D."
4. ``option_text``  only when no option letter occurs as a token: every option whose text occurs
                    (with rule 4's length guard, and rule 8's longer-text shadowing).

Otherwise ``unparsed``. A multi-answer prediction is a set: scoring computes ACC_mcq and Recall_mcq.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from gmai_client.types import REFUSED_LETTER, Extraction

Options = Sequence[tuple[str, str]]

#: Phrases the reference treats as a refusal wherever they occur (case-sensitive, as there).
REFUSAL_PHRASES: tuple[str, ...] = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)

#: The characters the reference turns into spaces before splitting an answer into tokens.
REFERENCE_PUNCTUATION = ".()[],:;!*#{}"

_REFERENCE_TABLE = str.maketrans(dict.fromkeys(REFERENCE_PUNCTUATION, " "))
# Multi-answer lists also come as "A/C", "A & C" or "'A', 'C'": split on those too.
_MULTI_TABLE = str.maketrans(dict.fromkeys(REFERENCE_PUNCTUATION + "/&\"'`", " "))

# Rule 3, verbatim from the reference (A-D only, first match, case-insensitive).
_ANSWER_IS = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")
# Improvement 5: the same for E, but "the answer is either/evident/..." must not read as E.
_ANSWER_IS_E = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**(E)\**(?![A-Za-z0-9]|\.[A-Za-z])")

# Improvement 6: an explicit answer marker, then one letter, optionally wrapped.
_FINAL_ANSWER = re.compile(
    r"(?i)\b(?:final\s+answer|answer|correct\s+(?:option|choice)|best\s+(?:option|choice|answer))\b"
    r"(?:\s+is\b)?\s*[:：]?\s*"
    r"(?P<open>\*\*|__|[(\[])?\s*(?:option\s+)?(?P<letter>[a-e])(?:[ \t]*(?P<close>\*\*|__|[)\]]))?"
)
# After an unwrapped letter: the end of the text or line, or punctuation that is not "e.g.".
_AFTER_BARE_LETTER = re.compile(r"[ \t]*(?:$|\n|[,;!?]|[.:](?![A-Za-z]))")

# Improvement 7: "A" at the start of the text or of a sentence/line, then a lower-case word or a
# number ("A 45-year-old patient ...").
_SENTENCE_A = re.compile(r"(?:^|(?<=[.!?]\s))[ \t]*(?P<a>A)[ \t]+(?P<word>[a-z0-9][a-z0-9\-]*)\b", re.MULTILINE)
# Words that, after "A", read as talk about option A rather than as a noun phrase. Words ending in
# -s, -ed or -ly (verbs, participles, adverbs: "A seems", "A matched", "A correctly") are checked
# by suffix (``_is_article``); this list holds the rest.
# fmt: off
_NOT_ARTICLE_WORDS = frozenset(
    {
        "is", "was", "are", "were", "be", "been", "being", "and", "or", "but", "nor", "not", "no",
        "vs", "versus", "would", "could", "should", "might", "may", "can", "cannot", "will", "must",
        "shall", "do", "did", "does", "had", "has", "have", "fit", "best", "most", "more", "less",
        "also", "only", "alone", "then", "because", "since", "so", "to", "as", "than", "correct",
        "incorrect", "wrong", "right", "true", "false",
    }
)
# fmt: on

# Improvement 9: the whole answer is a single lower-case letter, optionally wrapped.
_LONE_LOWERCASE = re.compile(r"[(\[]?([a-e])[)\].:]?")

# Multi-answer filler words: what may surround a bare list of letters.
# fmt: off
_MULTI_FILLER = frozenset(
    {"the", "answer", "answers", "is", "are", "and", "correct", "option", "options", "choice", "choices",
     "final", "both"}
)
# fmt: on
_MULTI_LETTER = r"(?:\*\*)?[(\[]?[A-E][)\]]?(?:\*\*)?"
_MULTI_SEP = r"(?:\s*[,;/&]\s*(?:and\s+)?|\s+and\s+|\s+)"
_ANSWER_LIST = re.compile(
    r"(?i:\banswers?\b(?:\s+(?:is|are))?)\s*[:：]?\s*"
    rf"(?P<list>{_MULTI_LETTER}(?:{_MULTI_SEP}{_MULTI_LETTER})*)"
    r"(?=\s*(?:$|\n|[.;!](?:\s|$)))"
)
_UPPER_LETTER = re.compile(r"[A-E]")

_KEY_SEPARATORS = re.compile(r"[\s,;]+")
_KEY_LETTERS = frozenset("ABCDE")


def extract(answer: str, options: Options, *, multi: bool = False) -> Extraction:
    """Map a model's free-text answer to option letter(s) (see the module docstring for the rules).

    ``options`` are the item's (letter, text) pairs in letter order. ``multi`` selects the
    multi-answer rules, for items whose key holds several letters.
    """
    text = answer.strip()
    if not text:
        return Extraction((), "unparsed", "empty")
    if any(phrase in text for phrase in REFUSAL_PHRASES):
        return Extraction((REFUSED_LETTER,), "refused", "refusal")
    options = tuple((letter, str(option_text)) for letter, option_text in options)
    if multi:
        return _extract_multi(text, options)
    found = _reference(text, options) or _improvements(text, options)
    if found is None:
        return Extraction((), "unparsed", "none")
    letter, rule = found
    if letter == REFUSED_LETTER:
        return Extraction((REFUSED_LETTER,), "refused", rule)
    return Extraction((letter,), "ok", rule)


def format_letters(letters: Iterable[str]) -> str:
    """Letters as the benchmark writes a key: ``("A", "C")`` -> ``"A,C"`` (order kept)."""
    return ",".join(letters)


def parse_key(text: str) -> tuple[str, ...]:
    """Parse an answer-key cell into sorted distinct letters: "A", "A,C", "A, C", "A;C", "A C", "AC".

    Only upper-case A-E are accepted; a glued run ("AC") is read letter by letter. Anything else
    (empty, lower case, other letters or words, a repeated letter) raises ``ValueError``: a key
    that cannot be read is a data error, never a guess.
    """
    cell = text.strip()
    parts = [part for part in _KEY_SEPARATORS.split(cell) if part]
    if not parts:
        raise ValueError("empty answer key")
    letters = [letter for part in parts for letter in part]
    bad = [letter for letter in letters if letter not in _KEY_LETTERS]
    if bad:
        raise ValueError(f"answer key {text!r} is not a list of letters A-E (found {bad[0]!r})")
    if len(set(letters)) != len(letters):
        raise ValueError(f"answer key {text!r} repeats a letter")
    return tuple(sorted(letters))


def judge_prompt(question: str, options: Options, answer: str) -> str:
    """The reference LLM-judge prompt (VLMEvalKit ``build_prompt``) for one answer.

    The instruction and the two worked examples are kept word for word, quirks included ("Your
    should", the "?" appended to the question), because the judge's letters depend on them. One
    difference: for an item with an option E the list of valid letters reads "A, B, C, D, E" (the
    reference always says "A, B, C, D"). The judge's reply goes through ``extract`` again.
    """
    letters = [letter for letter, _ in options]
    valid = "A, B, C, D" if set(letters) <= set("ABCD") else ", ".join(sorted(set(letters) | set("ABCD")))
    option_block = "There are several options: \n" + "".join(
        f"{letter}. {option_text}\n" for letter, option_text in options
    )
    example_options = "A. teddy bear B. rabbit C. cat D. dog"
    return (
        "You are an AI assistant who will help me to match an answer with several options of a "
        "single-choice question. You are provided with a question, several options, and an answer, "
        "and you need to find which option is most similar to the answer. If the meaning of all "
        "options are significantly different from the answer, output Z. Your should output a single "
        f"uppercase character in {valid} (if they are valid options), and Z. \n"
        "Example 1: \n"
        f"Question: What is the main object in image?\nOptions: {example_options}\n"
        "Answer: a cute teddy bear\nYour output: A\n"
        "Example 2: \n"
        f"Question: What is the main object in image?\nOptions: {example_options}\n"
        "Answer: Spider\nYour output: Z\n"
        "Example 3: \n"
        f"Question: {question}?\nOptions: {option_block}\nAnswer: {answer.strip()}\nYour output: "
    )


# --------------------------------------------------------------------------- single answer


def _reference_tokens(text: str) -> list[str]:
    return text.translate(_REFERENCE_TABLE).split()


def _unique_token_letter(tokens: Sequence[str], letters: Sequence[str]) -> str | None:
    """Rule 2's core: the one option letter among ``tokens``, if it is among the last four."""
    present = [letter for letter in letters if letter in tokens]
    if len(present) == 1 and tokens.index(present[0]) > len(tokens) - 5:
        return present[0]
    return None


def _reference(text: str, options: Options) -> tuple[str, str] | None:
    """Rules 2-4 (rule 1 is shared with multi-answer extraction and applied by the caller)."""
    letters = [letter for letter, _ in options]
    tokens = _reference_tokens(text)
    letter = _unique_token_letter(tokens, letters)
    if letter is not None:
        return letter, "option_token"
    if not any(letter in tokens for letter in letters) and REFUSED_LETTER in tokens:
        return REFUSED_LETTER, "z_token"
    # Only the first match counts: if its letter is not an option the reference gives up here.
    match = _ANSWER_IS.search(text)
    if match and match.group(1).upper() in letters:
        return match.group(1).upper(), "answer_is"
    candidates = _text_candidates(text, options)
    if candidates is not None and len(candidates) == 1:
        return candidates[0], "option_text"
    return None


def _text_candidates(text: str, options: Options) -> list[str] | None:
    """Options whose lower-cased text occurs in the lower-cased answer; None if the answer is too long.

    The reference compares the length of the lower-cased answer with the summed lengths of the
    option texts as given; both are kept. Empty option texts are skipped (the reference never has
    them: its reader drops empty options, as ours does).
    """
    lowered = text.lower()
    if len(lowered) > 2 * sum(len(option_text) for _, option_text in options):
        return None
    return [letter for letter, option_text in options if option_text and option_text.lower() in lowered]


def _improvements(text: str, options: Options) -> tuple[str, str] | None:
    letters = [letter for letter, _ in options]

    match = _ANSWER_IS_E.search(text)
    if match and "E" in letters:
        return "E", "answer_is_e"

    letter = _final_answer(text, options)
    if letter is not None:
        return letter, "final_answer"

    letter = _without_article_a(text, letters)
    if letter is not None:
        return letter, "article_a"

    candidates = _text_candidates(text, options)
    if candidates is not None and len(candidates) > 1:
        unshadowed = _unshadowed(text.lower(), options, candidates)
        if len(unshadowed) == 1:
            return unshadowed[0], "option_text_span"

    lone = _LONE_LOWERCASE.fullmatch(text)
    if lone and lone.group(1).upper() in letters:
        return lone.group(1).upper(), "lone_lowercase"
    return None


def _final_answer(text: str, options: Options) -> str | None:
    """The letter of the last well-formed answer marker, if it is an option."""
    texts = {letter: option_text.lower() for letter, option_text in options}
    last: str | None = None
    for match in _FINAL_ANSWER.finditer(text):
        letter = match.group("letter").upper()
        if match.group("close") is not None or _AFTER_BARE_LETTER.match(text, match.end()):
            last = letter
            continue
        # A bare letter followed by words counts only when the words are that option's text
        # ("Answer: B healthy bone"); "Answer: A lesion ..." or "answer: C is wrong" do not.
        rest = text[match.end() :].lstrip(" \t").lower()
        if rest != text[match.end() :].lower() and texts.get(letter) and rest.startswith(texts[letter]):
            last = letter
    return last if last in texts else None


def _is_article(word: str) -> bool:
    if word in _NOT_ARTICLE_WORDS or word.endswith(("ed", "ly")):
        return False
    # "-s" reads as a verb ("A seems", "A shows") except in noun endings: mass, stenosis, focus.
    return not word.endswith("s") or word.endswith(("ss", "is", "us"))


def _without_article_a(text: str, letters: Sequence[str]) -> str | None:
    """Rule 2 again, with sentence-initial article "A"s removed from the tokens."""
    if "A" not in letters:
        return None
    articles = [m.start("a") for m in _SENTENCE_A.finditer(text) if _is_article(m.group("word"))]
    if not articles:
        return None
    # Blank out each article "A" in place, then tokenize exactly as the reference does.
    chars = list(text)
    for position in articles:
        chars[position] = " "
    return _unique_token_letter(_reference_tokens("".join(chars)), letters)


def _unshadowed(lowered: str, options: Options, candidates: Sequence[str]) -> list[str]:
    """Candidates with at least one occurrence not inside an occurrence of a longer candidate's text."""
    texts = {letter: option_text.lower() for letter, option_text in options if letter in candidates}
    spans = {letter: _occurrences(lowered, texts[letter]) for letter in candidates}
    kept = []
    for letter in candidates:
        longer = [other for other in candidates if len(texts[other]) > len(texts[letter])]
        for start, end in spans[letter]:
            covered = any(s <= start and end <= e for other in longer for s, e in spans[other])
            if not covered:
                kept.append(letter)
                break
    return kept


def _occurrences(haystack: str, needle: str) -> list[tuple[int, int]]:
    spans = []
    start = haystack.find(needle)
    while start != -1:
        spans.append((start, start + len(needle)))
        start = haystack.find(needle, start + 1)
    return spans


# --------------------------------------------------------------------------- multi answer


def _extract_multi(text: str, options: Options) -> Extraction:
    letters = [letter for letter, _ in options]
    tokens = text.translate(_MULTI_TABLE).split()
    content = [token for token in tokens if token.lower() not in _MULTI_FILLER]

    if content and all(len(token) == 1 and token.upper() in letters for token in content):
        return Extraction(tuple(sorted({token.upper() for token in content})), "ok", "letter_list")
    if content and all(token == REFUSED_LETTER for token in content):
        return Extraction((REFUSED_LETTER,), "refused", "z_token")
    if len(content) == 1:
        run = content[0]
        if 1 < len(run) <= len(letters) and all(letter in letters for letter in run) and list(run) == sorted(set(run)):
            return Extraction(tuple(run), "ok", "letter_run")

    listed: list[str] | None = None
    for match in _ANSWER_LIST.finditer(text):
        listed = _UPPER_LETTER.findall(match.group("list"))
    if listed and all(letter in letters for letter in listed):
        return Extraction(tuple(sorted(set(listed))), "ok", "answer_list")

    if not any(letter in tokens for letter in letters):
        candidates = _text_candidates(text, options)
        if candidates:
            kept = _unshadowed(text.lower(), options, candidates)
            return Extraction(tuple(sorted(kept)), "ok", "option_text")
    return Extraction((), "unparsed", "none")
