"""Answer normalization: a model's free text -> option letter(s). Pure functions, no I/O.

Two extractions, kept apart:

``extract`` is the **reference** (the headline): VLMEvalKit's ``can_infer`` exactly, as restated in
``reference``. The same answers give the same letters as VLMEvalKit's exact-matching evaluation.
Rules: ``refusal`` (a refusal phrase -> Z), ``option_token`` (one option letter among the last four
tokens), ``z_token`` (a bare Z), ``option_text`` (exactly one option's text occurs), else ``none``.

``extract_lenient`` is a second, named extraction (the ``lenient`` columns of every report): the
reference first, and only where it finds nothing, rules that read answers VLMEvalKit leaves
unread. It is never mixed into the headline. Its extra rules, each conservative (a wrong letter
is worse than "unparsed"), on the stripped answer:

- ``answer_is``        the first "(correct) answer is X" (A-D), as some VLMEvalKit versions read it.
- ``answer_is_e``      the same for option E, unless the E starts a word ("the answer is either").
- ``final_answer``     the LAST "final answer: X" / "answer: (x)" / "correct option: X" marker; the
                       letter must be closed by ")", "]" or "**", or be followed by punctuation, the
                       end of a line, or that option's text.
- ``article_a``        a sentence-initial "A" followed by a lower-case noun-like word ("A lesion is
                       visible ...") is an article, not option A: drop those and apply the letter rule.
- ``option_text``      the text rule on the stripped answer (the reference does not strip).
- ``option_text_span`` several option texts occur but all but one lie inside a longer option's text
                       ("abnormal" contains "normal").
- ``lone_lowercase``   the whole answer is one lower-case option letter: "b", "(b)", "b)", "b.".

Multi-answer items (a key with several letters) have no reference to agree with (VLMEvalKit scores
them as single answers, always wrong), so their lenient extraction is our own design:

1. ``refusal``      as above.
2. ``letter_list``  the answer, split as in the letter rule (also on ``/``, ``&`` and quotes), holds
                    only option letters and filler words (the, answer(s), is, are, and, correct,
                    option(s), choice(s), final, both): "A,C", "**A**, **C**", "The answers are B
                    and D." -> the sorted distinct letters. ``z_token``: the only letter is Z.
   ``letter_run``   one glued run of distinct upper-case letters in increasing order ("AC").
3. ``answer_list``  the LAST "answer(s) is/are: <list>" marker followed by a list of upper-case
                    letters that ends the line or a sentence.
4. ``option_text``  only when no option letter occurs as a token: every option whose text occurs
                    (with the length guard and longer-text shadowing).

A multi-answer prediction is a set: metrics compute ACC_mcq and Recall_mcq from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from gmai_client.protocol import reference
from gmai_client.protocol.rulesets import DEFAULT_RULES, VLMEVALKIT_2025, RuleSet
from gmai_client.types import REFUSED_LETTER, Extraction

#: The reference reading the lenient extraction starts from, whatever the headline's rule set: it
#: is our own named extraction and stays as it was (2025 matching; of the prediction file's round
#: trip only the missing-value reading, so "=> A" still reads as A).
LENIENT_BASE = replace(VLMEVALKIT_2025, name="lenient", xlsx_formulas=False)

Options = Sequence[tuple[str, str]]

# Multi-answer lists also come as "A/C", "A & C" or "'A', 'C'": split on those too.
_MULTI_TABLE = str.maketrans(dict.fromkeys(reference.PUNCTUATION + "/&\"'`", " "))

# "answer is X" as some VLMEvalKit versions read it (A-D only, first match, case-insensitive).
_ANSWER_IS = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")
# The same for E, but "the answer is either/evident/..." must not read as E.
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


def extract(
    answer: str, options: Options, rules: RuleSet = DEFAULT_RULES, *, evaluated: str | None = None
) -> Extraction:
    """The reference letter: what VLMEvalKit's exact matching under ``rules`` reads from ``answer``.

    ``options`` are the item's (letter, text) pairs in letter order, texts as pandas reads them
    from the TSV. ``evaluated``: the answer as VLMEvalKit's evaluation reads it back, where the
    caller knows it (a whole answer set's read-back, ``scoring.score_answer_set``); by default the
    answer's own read-back in a textual column.
    """
    text = evaluated if evaluated is not None else reference.answer_as_read_back(answer, rules)
    options = reference.options_as_read_back(options, rules)
    letter, rule = reference.infer_option_by_rule(text, [letter for letter, _ in options], rules)
    if letter == REFUSED_LETTER:
        return Extraction((REFUSED_LETTER,), "refused", rule)
    if letter is not None:
        return Extraction((letter,), "ok", rule)
    letter = reference.infer_text(text, options, rules)
    if letter is not None:
        return Extraction((letter,), "ok", "option_text")
    return Extraction((), "unparsed", "empty" if not answer.strip() else "none")


def extract_lenient(answer: str, options: Options, *, multi: bool = False) -> Extraction:
    """The lenient letter(s): the reference, then the extra rules where it finds nothing.

    ``multi`` selects the multi-answer rules, for items whose key holds several letters.
    """
    text = answer.strip()
    options = tuple((letter, str(option_text)) for letter, option_text in options)
    if multi:
        if not text:
            return Extraction((), "unparsed", "empty")
        if any(phrase in text for phrase in reference.REFUSAL_PHRASES):
            return Extraction((REFUSED_LETTER,), "refused", "refusal")
        return _extract_multi(text, options)
    found = extract(answer, options, LENIENT_BASE, evaluated="nan" if reference.is_missing(answer) else answer)
    if found.status != "unparsed" or not text:
        return found
    better = _improvements(text, options)
    if better is None:
        return Extraction((), "unparsed", "none")
    letter, rule = better
    if letter == REFUSED_LETTER:
        return Extraction((REFUSED_LETTER,), "refused", rule)
    return Extraction((letter,), "ok", rule)


def format_letters(letters: Iterable[str]) -> str:
    """Letters as the benchmark writes a key: ``("A", "C")`` -> ``"A,C"`` (order kept)."""
    return ",".join(letters)


# --------------------------------------------------------------------------- lenient single answer


def _unique_token_letter(tokens: Sequence[str], letters: Sequence[str]) -> str | None:
    """The letter rule's core: the one option letter among ``tokens``, if it is among the last four."""
    present = [letter for letter in letters if letter in tokens]
    if len(present) == 1 and tokens.index(present[0]) > len(tokens) - 5:
        return present[0]
    return None


def _text_candidates(text: str, options: Options) -> list[str] | None:
    """Options whose (non-empty) lower-cased text occurs in the lower-cased answer; None if too long."""
    candidates = reference.text_candidates(text, options, LENIENT_BASE)
    if candidates is None:
        return None
    return [letter for letter in candidates if dict(options)[letter]]


def _improvements(text: str, options: Options) -> tuple[str, str] | None:
    letters = [letter for letter, _ in options]

    # Only the first match counts: if its letter is not an option that reading gives up.
    match = _ANSWER_IS.search(text)
    if match and match.group(1).upper() in letters:
        return match.group(1).upper(), "answer_is"

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
    if candidates is not None and len(candidates) == 1:
        return candidates[0], "option_text"
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
    return _unique_token_letter(reference.tokens("".join(chars)), letters)


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
