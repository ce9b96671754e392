"""Request bodies of the HTTP API backends: JSON with the images' base64 spliced in, not scanned.

A body is JSON-encoded with a placeholder for each large string (``Holes``), then the strings are
put back as they are: ``encode_body`` for a body kept whole (a batch line), ``StreamedBody`` for
one sent live, encoded 64 kB at a time as it goes out, so a request in flight holds its image's
text once (the item's) rather than a data URL, a body and a socket buffer made of copies of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gmai_client.types import Image

#: ``request_body``'s hook for the large strings of a body (image data): the identity for a body
#: built to be kept (a batch line), a placeholder-maker for a body about to be encoded and sent.
Embed = Callable[[str], str]

_HOLE = re.compile(r"\\u0000(\d+)\\u0000")
#: The pieces a body is sent in: small enough that no piece is a second copy of an image worth
#: counting, large enough that a 2 MB body is 32 writes.
BODY_CHUNK = 1 << 16


class Holes:
    """Stands in for the large strings of a body while it is JSON-encoded; ``body_parts`` splices
    them back in. Base64 image data needs no JSON escaping, and ``json.dumps`` scanning 2 MB of it
    for characters to escape costs 5 ms per request (the splice: 0.06 ms). A hole may stand for
    several strings sent one after the other (``joined``): a data URL's prefix and the image's own
    base64 text, never joined into a copy of it."""

    def __init__(self) -> None:
        self.pieces: list[tuple[str, ...]] = []

    def __call__(self, text: str) -> str:
        return self.joined(text)

    def joined(self, *texts: str) -> str:
        self.pieces.append(texts)
        return f"\x00{len(self.pieces) - 1}\x00"


def data_url(embed: Embed, image: Image) -> str:
    """``image`` as a data URL in a body: through ``Holes``, its prefix and its base64 text as two
    pieces (the URL, a 2 MB copy of the text, is never made); else ``embed`` of the whole URL."""
    if isinstance(embed, Holes):
        return embed.joined(f"data:{image.mime};base64,", image.b64)
    return embed(image.data_url())


def body_parts(body: Mapping[str, Any], pieces: Sequence[Sequence[str] | str] = ()) -> list[str]:
    """``body`` as compact JSON, in order: its own text between the placeholders ``Holes`` made,
    and the strings each stands for."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    if not pieces:
        return [text]
    parts: list[str] = []
    for i, part in enumerate(_HOLE.split(text)):
        if i % 2 == 0:
            parts.append(part)
        else:
            piece = pieces[int(part)]
            parts.extend((piece,) if isinstance(piece, str) else piece)
    return parts


def encode_body(body: Mapping[str, Any], pieces: Sequence[Sequence[str] | str] = ()) -> bytes:
    """``body`` as compact JSON bytes, each placeholder ``Holes`` made replaced by its text (a body
    that is kept whole: a batch line)."""
    return b"".join(part.encode() for part in body_parts(body, pieces))


@dataclass(frozen=True)
class StreamedBody:
    """A JSON body sent as it is encoded, ``BODY_CHUNK`` bytes at a time: a request in flight holds
    its image's text once (the item's), not a body made of a copy of it, nor a socket buffer holding
    another (the transport copies whatever one write could not send at once)."""

    parts: tuple[str, ...]

    @property
    def size(self) -> int:
        """Its length in bytes (the Content-Length header: the body is not sent chunked)."""
        return sum(len(part) if part.isascii() else len(part.encode()) for part in self.parts)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()  # a fresh pass each time: the body can be sent again

    def __deepcopy__(self, memo: dict[int, Any]) -> StreamedBody:
        return self  # immutable; SDKs deep-copy a request's options (a generator cannot be copied)

    async def _chunks(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            for start in range(0, len(part), BODY_CHUNK):  # a slice of characters: never half a UTF-8 one
                yield part[start : start + BODY_CHUNK].encode()
