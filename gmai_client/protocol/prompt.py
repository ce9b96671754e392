"""Prompt building: an ``Item`` -> a backend-neutral ``Request`` (prompt text + image bytes + params).

This module owns the prompt text (the reference VLMEvalKit multiple-choice prompt, or a user's
template) and the cheap image pass-through: the dataset's base64 text is checked (length, alphabet
hazards, first and last blocks) and the format sniffed from its first bytes, but neither the whole
text nor the pixels are decoded here: backends receive the dataset's text unchanged and decode it
only if they need bytes (``types.Image``).

The reference prompt (VLMEvalKit's ``ImageMCQDataset.build_prompt``), images first and then this
text, character for character: cells as pandas reads them, surrounding whitespace kept::

    Hint: {hint}                      (only when the item has a hint)
    Question: {question}
    Options:
    A. {A}
    B. {B}
    ...
    Please select the correct answer from the options above. ⏎   (note the space before the newline)

VLMEvalKit sends that prompt for every item, multi-answer keys included, and so does this module
by default. ``multi_answer_instruction=True`` switches items whose key has several letters to the
paper's multi-answer instruction (``MULTI_ANSWER_SUFFIX`` and a newline, *in place of* the
single-answer sentence); TEST items (no key) always get the single-answer prompt.
"""

from __future__ import annotations

import binascii
import re
import string
from functools import lru_cache

from gmai_client.errors import ConfigError, DataError
from gmai_client.types import Image, Item, Request, SamplingParams, strict_b64decode

#: The reference instruction for single-answer items (trailing space kept: it is in the reference).
SINGLE_ANSWER_INSTRUCTION = "Please select the correct answer from the options above. \n"

#: The paper's instruction for multi-answer items (used, plus a newline, instead of the one above).
MULTI_ANSWER_SUFFIX = (
    "Please select all correct answers from the options above. Note that there is more than one "
    "correct answer. Please output the answer options directly, separated by commas. For example: A,B"
)

#: The reference prompt. Fields are pre-rendered pieces: ``hint`` is the whole "Hint: ...\n" line
#: (empty without a hint), ``options`` the "A. x\nB. y\n" block, ``instruction`` the closing line.
DEFAULT_TEMPLATE = "{hint}Question: {question}\nOptions:\n{options}{instruction}"

#: The fields a template may use.
TEMPLATE_FIELDS: frozenset[str] = frozenset({"hint", "question", "options", "instruction"})
#: The fields a template must use: without them the model cannot see what it is asked.
REQUIRED_FIELDS: frozenset[str] = frozenset({"question", "options"})

# Magic bytes of the formats vision APIs accept. WebP is RIFF....WEBP: checked separately.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)
_WHITESPACE = re.compile(r"\s+")
_DEFAULT_PARAMS = SamplingParams()
_HEAD_CHARS = 64  # the first 48 bytes: every format's magic number and more
# How a complete PNG ends (its IEND chunk): the last bytes tell a truncated one without a decode.
# (JPEGs are not checked so: some carry bytes after their end marker.)
_END_MARKS = {"image/png": b"IEND\xaeB`\x82"}  # frozen: one shared default is safe


def render_prompt(item: Item, template: str | None = None, *, multi_answer_instruction: bool = False) -> str:
    """The prompt text for ``item``: the reference prompt, or ``template`` filled in."""
    multi = multi_answer_instruction and item.is_multi_answer
    fields = {
        "hint": f"Hint: {item.hint}\n" if item.hint else "",
        "question": item.question,
        "options": "".join(f"{letter}. {text}\n" for letter, text in item.options),
        "instruction": MULTI_ANSWER_SUFFIX + "\n" if multi else SINGLE_ANSWER_INSTRUCTION,
    }
    if template is None:
        return DEFAULT_TEMPLATE.format(**fields)
    validate_template(template)
    return template.format(**fields)


@lru_cache(maxsize=32)
def validate_template(template: str) -> None:
    """Raise ``ConfigError`` unless ``template`` is a format string over ``TEMPLATE_FIELDS`` only.

    Cached: a run renders thousands of prompts from one template.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"prompt template is not a valid format string ({exc}): {template!r}") from exc
    allowed = ", ".join("{" + name + "}" for name in sorted(TEMPLATE_FIELDS))
    used = set()
    for _, field_name, format_spec, _ in parsed:
        if field_name is None:
            continue
        if field_name not in TEMPLATE_FIELDS:
            shown = "{" + field_name + "}" if field_name else "{} (a positional field)"
            raise ConfigError(
                f"prompt template uses unknown field {shown}; allowed fields are {allowed} "
                "(write a literal brace as {{ or }})"
            )
        if format_spec and "{" in format_spec:
            raise ConfigError(f"prompt template field {{{field_name}}} has a nested field in its format spec")
        used.add(field_name)
    missing = sorted(REQUIRED_FIELDS - used)
    if missing:
        raise ConfigError("prompt template must contain " + " and ".join("{" + name + "}" for name in missing))


def build_request(
    item: Item,
    *,
    template: str | None = None,
    params: SamplingParams = _DEFAULT_PARAMS,
    system: str = "",
    multi_answer_instruction: bool = False,
) -> Request:
    """Turn ``item`` into a ``Request``: prompt text, decoded image bytes with their MIME types.

    A bad image (not base64, or not PNG/JPEG/GIF/WebP/BMP bytes) raises ``DataError`` naming the
    item's file, row, index and the field ``image``.
    """
    text = render_prompt(item, template, multi_answer_instruction=multi_answer_instruction)
    count = len(item.images_b64)
    images = tuple(_decode_image(item, b64, number, count) for number, b64 in enumerate(item.images_b64, 1))
    return Request(
        item_index=item.index,
        text=text,
        images=images,
        params=params,
        options=item.options,
        multi_answer=item.is_multi_answer,
        system=system,
    )


def sniff_mime(data: bytes) -> str | None:
    """The MIME type of encoded image bytes from their magic number, or None if unrecognised."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            # "BM" is only two bytes: also require room for the 14-byte BMP file header.
            if mime == "image/bmp" and len(data) < 14:
                return None
            return mime
    return None


def _decode_image(item: Item, b64: str, number: int, count: int) -> Image:
    which = f"image {number} of {count}" if count > 1 else "image"

    def fail(message: str) -> DataError:
        return DataError(
            f"{which} {message}", file=item.source.file, row=item.source.row, index=item.index, field="image"
        )

    cleaned = b64.strip()
    # Line-wrapped base64 (76-column MIME style) is still base64; drop its inner line breaks.
    if "\n" in cleaned or "\r" in cleaned or " " in cleaned or "\t" in cleaned:
        cleaned = _WHITESPACE.sub("", cleaned)
    if not cleaned:
        raise fail("is empty")
    # Checked cheaply, not decoded (~2 MB per item): the length, what would break the JSON it is
    # sent in, and the first and last blocks. A damage in between is refused by the server (or by
    # a local model's decoder), and that error names this item's file, row and field too.
    if len(cleaned) % 4:
        raise fail(f"is not valid base64 ({len(cleaned)} characters, not a multiple of 4: cut short?)")
    if not cleaned.isascii() or '"' in cleaned or "\\" in cleaned:
        raise fail("is not valid base64 (it holds characters outside the base64 alphabet)")
    try:
        head = strict_b64decode(cleaned[:_HEAD_CHARS])
        tail = strict_b64decode(cleaned[-16:])
    except (binascii.Error, ValueError) as exc:
        raise fail(f"is not valid base64 ({exc})") from None
    mime = sniff_mime(head)
    if mime is None:
        raise fail(f"is not a PNG, JPEG, GIF, WebP or BMP image (starts with {head[:8]!r})")
    end = _END_MARKS.get(mime)
    if end is not None and not tail.endswith(end):
        raise fail(f"is cut short: a complete {mime.split('/')[1].upper()} file ends with {end!r}")
    return Image(mime=mime, encoded=cleaned)
