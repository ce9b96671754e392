"""The shared vocabulary: frozen dataclasses that flow between modules (the backend contract is ``backend``).

One item's path through the client:

    Item (dataset) -> Request (prompt) -> Response (backend) -> Extraction (normalize) -> Record (scoring)

Nothing here does I/O or imports an optional dependency.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

#: The four views of the lexical tree an item is grouped by (and the TSV column each comes from).
VIEWS: tuple[str, ...] = ("clinical VQA task", "department", "perceptual granularity", "modality")

#: The department bucket of items that belong to no department (the tree calls it N/A).
NO_DEPARTMENT = "N/A"

#: How an item ended. ``error``: no answer came back (wrong in the headline, as in VLMEvalKit; counted).
#: ``thinking_length``: the model spent its whole output bound thinking and never answered (wrong in
#: the headline, counted apart: a larger bound, not a better model, would change it).
Status = Literal["ok", "unparsed", "refused", "error", "thinking_length"]

#: Error kinds of an item whose row or image the data file holds wrong (``BadRow``, a ``DataError``
#: from the prompt): sending it again cannot help, correcting the file does (a changed row is read
#: and sent again).
DATA_ERROR_KINDS = frozenset({"bad_row", "DataError"})

#: Why a backend stopped generating, normalised across vendors.
FinishReason = Literal["stop", "length", "refused", "filtered", "other"]

#: The letter the reference protocol uses for "refused / none of the options".
REFUSED_LETTER = "Z"

#: pandas' default missing-value strings (``read_csv`` / ``read_excel`` ``na_values``): VLMEvalKit
#: reads the benchmark's files with pandas, so a cell is missing exactly when its whole text is one.
PANDAS_NA_STRINGS: frozenset[str] = frozenset(
    {
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
        "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
    }
)  # fmt: skip


_LONGEST_NA = max(len(text) for text in PANDAS_NA_STRINGS)


def is_missing(cell: str) -> bool:
    """Whether pandas reads ``cell`` as a missing value (NaN): no stripping, ``"none"`` is a value."""
    # The length first: hashing a 2 MB image cell for a set lookup costs 0.3 ms.
    return len(cell) <= _LONGEST_NA and cell in PANDAS_NA_STRINGS


def _frozen_mapping(values: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True)
class SourceRef:
    """Where an item came from, so that every error about it can name the file, row and index."""

    file: str
    row: int  # 1-based data row (the header is row 0)
    index: str = ""
    offset: int = field(default=-1, compare=False)  # byte offset of the row in the file (-1: unknown)

    def __str__(self) -> str:
        where = f"{self.file}, row {self.row}"
        return f"{where}, index {self.index}" if self.index else where


@dataclass(frozen=True)
class Item:
    """One benchmark question as read from the TSV. Images stay base64 text until a backend needs them."""

    index: str
    question: str  # as pandas reads it: surrounding whitespace kept (it is in the reference prompt)
    options: tuple[tuple[str, str], ...]  # (letter, text) in letter order, missing options dropped
    answer: tuple[str, ...] | None  # correct letters; None when the split has no key (TEST)
    images_b64: tuple[str, ...]
    category: str = ""  # the leaf label
    task: str = ""
    department: str = NO_DEPARTMENT
    granularity: str = ""
    modality: str = ""
    hint: str = ""
    source: SourceRef = SourceRef("", 0)
    extra: Mapping[str, str] = field(default_factory=_frozen_mapping)
    # The answer cell exactly as written (None when missing): the reference scores a hit only when
    # its letter equals this text, so " A" or "A,C" are never hit there.
    answer_cell: str | None = None
    # Every cell but the image, (header as written, cell as written): the prediction file's columns.
    row: tuple[tuple[str, str], ...] = ()

    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(letter for letter, _ in self.options)

    @property
    def is_multi_answer(self) -> bool:
        return self.answer is not None and len(self.answer) > 1

    def group(self, view: str) -> str:
        """The item's category in one of ``VIEWS`` (or ``category`` for the leaf label)."""
        return {
            "clinical VQA task": self.task,
            "department": self.department,
            "perceptual granularity": self.granularity,
            "modality": self.modality,
            "category": self.category,
        }[view]


@dataclass(frozen=True)
class BadRow:
    """A row the reader could not turn into an Item. The run records it as an error and goes on."""

    source: SourceRef
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: field {self.field!r}: {self.message}"

    @property
    def record_index(self) -> str:
        """The index its error record is filed under: the row's own, else one made from file and row."""
        if self.source.index:
            return self.source.index
        return f"{self.source.file.rsplit('/', 1)[-1]}:row{self.source.row}"


def strict_b64decode(text: str) -> bytes:
    """Base64 that must be nothing but base64: binascii's own strict mode where Python has it
    (3.11+, checked in C), else ``b64decode(validate=True)``."""
    if sys.version_info >= (3, 11):
        return binascii.a2b_base64(text, strict_mode=True)
    return base64.b64decode(text, validate=True)


class Image:
    """An encoded image (PNG for GMAI-MMBench), immutable: its bytes, or the base64 text they are.

    Made from the dataset's base64 text (``encoded=``), the bytes are decoded only when something
    needs them (a local model's pixels, a resize, another process): API backends send the text as
    it is and the cache keys an image by a hash of its text, so the ~2 MB decode per item of the
    released files is never paid on that path. Made from bytes, the text is encoded when asked for.
    Not a dataclass: the decode is done once, lazily, behind an immutable face.
    """

    __slots__ = ("_data", "_encoded", "mime")

    def __init__(self, data: bytes | None = None, mime: str = "image/png", encoded: str | None = None):
        if data is None and encoded is None:
            raise ValueError("an Image needs its bytes or their base64 text")
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_encoded", encoded)
        object.__setattr__(self, "mime", mime)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Image is immutable: cannot set {name}")

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return (Image, (self._data, self.mime, self._encoded))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and (self.mime, self.b64) == (other.mime, other.b64)

    def __hash__(self) -> int:
        return hash((self.mime, self.b64))

    def __repr__(self) -> str:
        size = f"{len(self._data)} bytes" if self._data is not None else f"{len(self._encoded or '')} base64 chars"
        return f"Image({self.mime}, {size})"

    @property
    def data(self) -> bytes:
        """The image's bytes (decoded from the text on first use; ``ValueError`` if it is not base64)."""
        if self._data is None:
            try:
                decoded = strict_b64decode(self._encoded or "")
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"image is not valid base64 ({exc})") from None
            object.__setattr__(self, "_data", decoded)
        return self._data  # type: ignore[return-value]

    @property
    def b64(self) -> str:
        if self._encoded is None:
            object.__setattr__(self, "_encoded", base64.b64encode(self._data or b"").decode("ascii"))
        return self._encoded  # type: ignore[return-value]

    @property
    def encoded(self) -> str | None:
        """The base64 text the image was made from, if it was made from text."""
        return self._encoded

    def head(self, size: int = 64) -> bytes:
        """The first ``size`` bytes (at least), decoding no more of the text than that."""
        if self._data is not None:
            return self._data[:size]
        chars = -(-size // 3) * 4
        return binascii.a2b_base64((self._encoded or "")[:chars])

    def without_text(self) -> Image:
        """The same image as bytes only: for sending to another process."""
        return Image(self.data, self.mime)

    @property
    def sha256(self) -> str:
        """A hash of the image's base64 text (the cache's key for it: no decode needed)."""
        return hashlib.sha256(self.b64.encode("ascii")).hexdigest()

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{self.b64}"


_SEED_STRIDE = 1_000_003  # a prime far above any seed a user types


@dataclass(frozen=True)
class SamplingParams:
    """Every generation parameter that changes output; all of it is part of the cache key."""

    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = None
    repeat: int = 0  # distinguishes repeated samples when temperature > 0

    @property
    def sample_seed(self) -> int | None:
        """The seed a backend gives its sampler: the run's for the first sample, moved for each
        repeated one (``--epochs``): one seed for every sample would make them one answer at any
        temperature. The stride keeps two runs' seeds (``--seed 0``, ``--seed 1``) from sharing samples."""
        if self.seed is None:
            return None
        return self.seed + _SEED_STRIDE * self.repeat

    def as_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "repeat": self.repeat,
        }


@dataclass(frozen=True)
class Request:
    """A backend-neutral request: images first, then the text prompt, plus sampling parameters."""

    item_index: str
    text: str
    images: tuple[Image, ...] = ()
    params: SamplingParams = SamplingParams()
    options: tuple[tuple[str, str], ...] = ()  # the item's options, for backends that choose among them
    multi_answer: bool = False  # the item has several correct letters
    system: str = ""


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0  # everything generated and billed as output, thinking included
    reasoning_tokens: int | None = None  # the part of output_tokens spent thinking, where reported


@dataclass(frozen=True)
class Response:
    """What a backend answered. A refusal or content filter is a Response, not an exception."""

    text: str
    finish_reason: FinishReason = "stop"
    usage: Usage | None = None
    model: str = ""  # the model name the server reports, when it reports one
    thinking: str = ""  # reasoning text the server sent apart from the answer (never scored)


@dataclass(frozen=True)
class Extraction:
    """The option letter(s) read from a free-text answer by ``normalize``."""

    letters: tuple[str, ...]  # empty when unparsed; ("Z",) when refused
    status: Literal["ok", "unparsed", "refused"]
    rule: str  # which rule decided, for auditing against the reference


@dataclass(frozen=True)
class Record:
    """One item answered (or failed) by one model: a line of records.jsonl, the input to metrics.

    ``letters``/``status``/``rule``/``correct`` are the reference (VLMEvalKit's reading, the headline);
    the ``lenient_*`` fields are the second, lenient extraction, reported beside it, never in it.
    """

    index: str
    model: str
    status: Status
    prediction: str | None  # the model's answer (its thinking apart); None when no answer came back
    letters: tuple[str, ...] = ()
    answer: tuple[str, ...] | None = None
    correct: bool | None = None  # None when there is no key or the item errored
    answer_cell: str | None = None  # the key cell as written (the reference's hit compares with it)
    lenient_letters: tuple[str, ...] = ()
    lenient_status: str = ""
    lenient_rule: str = ""
    lenient_correct: bool | None = None
    options: tuple[tuple[str, str], ...] = ()  # kept so a record can be re-scored without the TSV
    task: str = ""
    department: str = NO_DEPARTMENT
    granularity: str = ""
    modality: str = ""
    category: str = ""
    rule: str = ""
    error: str = ""
    error_kind: str = ""
    latency_s: float = 0.0
    input_tokens: int | None = None
    output_tokens: int | None = None
    estimated_input_tokens: int | None = None  # the backend's estimate before sending (plan's rules)
    reasoning_tokens: int | None = None  # the part of output_tokens spent thinking, where reported
    thinking: str = ""  # the reasoning text, apart from the answer: shown, never matched or scored
    attempts: int = 0
    retries: tuple[str, ...] = ()  # the error kind of every failed attempt, in order
    cached: bool = False
    source: str = ""
    source_offset: int = -1  # byte offset of the item's row in its file: the report seeks, not scans
    row: tuple[tuple[str, str], ...] = ()  # the item's cells but the image (for the prediction file)
    item_digest: str = ""  # a hash of what was read for the item (``rundir.items``): a changed row is seen

    @property
    def is_multi_answer(self) -> bool:
        return self.answer is not None and len(self.answer) > 1

    @property
    def never_judged(self) -> bool:
        """An answer no rule could read that the run's judge never gave a verdict on: every call for
        it failed, or the judge had stopped (``judge``). A rerun with a working judge judges it."""
        return (
            self.status == "unparsed"
            and self.rule.startswith("judge ")
            and (": every call failed" in self.rule or ": stopped (" in self.rule)
        )

    @property
    def is_data_error(self) -> bool:
        """No answer because the data file holds the item's row or image wrong (``DATA_ERROR_KINDS``)."""
        return self.status == "error" and self.error_kind in DATA_ERROR_KINDS
