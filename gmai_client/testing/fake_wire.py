"""The fake API's wire formats: OpenAI Chat Completions and Anthropic Messages, requests in, answers out.

Owns what the fake server reads from a request body (``parse_request``: the model, roles, system
text, the last user message's text and images, every other parameter) and from its headers (which
credentials were sent, the headers safe to record), the oracle's key for an item (``item_key``),
and the body of a successful answer in each vendor's format (``success_body``). Error bodies are
in ``fake_errors``; the server that uses all this is ``fake_api.FakeAPI``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from PIL import Image as PILImage

from gmai_client.testing import fake_reasoning

# Headers never recorded: credentials, and anything else that looks like one.
_SECRET_HEADER_WORDS = ("authorization", "api-key", "token", "secret", "cookie")
_REFUSAL_TEXT = "I'm sorry, but I can't help with that."


def item_key(text: str, image_bytes: Iterable[bytes]) -> str:
    """The oracle's key for a request: sha256 over the text's sha256 and each image's, in order."""
    h = hashlib.sha256(b"gmai-fake-api/1\n")
    h.update(hashlib.sha256(text.encode("utf-8")).hexdigest().encode("ascii"))
    for data in image_bytes:
        h.update(b"\n" + hashlib.sha256(data).hexdigest().encode("ascii"))
    return h.hexdigest()


def request_key(request: Any) -> str:
    """``item_key`` of a ``gmai_client.types.Request`` as it would be sent (images unresized)."""
    return item_key(request.text, [image.data for image in request.images])


def oracle(items: Iterable[Any], *, template: str | None = None, params: Any = None) -> dict[str, str]:
    """Correct answers for ``items`` (``gmai_client.types.Item``), keyed as the server will see
    their requests: ``FakeAPI(answers=oracle(items))`` answers every one of them right."""
    from gmai_client.protocol.prompt import build_request
    from gmai_client.types import SamplingParams

    answers = {}
    for item in items:
        request = build_request(item, template=template, params=params or SamplingParams())
        letters = ", ".join(item.answer or ("A",))
        answers[request_key(request)] = f"The answer is ({letters})."
    return answers


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the server saw it (credentials never kept)."""

    api: str  # "openai" or "anthropic"
    model: str
    roles: tuple[str, ...]  # every message's role, in order ("system" included for OpenAI)
    system: str
    text: str  # the text parts of the last user message, joined by newlines
    content_types: tuple[str, ...]  # that message's parts in order, e.g. ("image", "image", "text")
    image_sha256: tuple[str, ...]  # decoded image bytes, in order
    image_mimes: tuple[str, ...]
    image_details: tuple[str | None, ...]  # OpenAI's "detail" per image (None for Anthropic)
    image_sizes: tuple[tuple[int, int] | None, ...]  # (width, height) per image, None when unreadable
    key: str  # item_key(text, images)
    attempt: int  # 1 for this model's first request with this key, 2 for its next, ...
    params: Mapping[str, Any]  # every other body field: max_tokens, temperature, seed, ...
    headers: Mapping[str, str]  # lower-cased names, credentials removed
    auth_schemes: tuple[str, ...]  # "bearer", "x-api-key", "api-key" (Azure); () when no key was sent
    timestamp: float  # time.time() on arrival
    outcome: str = "ok"  # "ok", a fault kind, "status:<code>", "quota", "refusal", "rate_limit", ...

    @property
    def max_tokens(self) -> int | None:
        value = self.params.get("max_tokens", self.params.get("max_completion_tokens"))
        return None if value is None else int(value)


class BadInput(Exception):
    """The request body is not what the vendor API accepts: answered with a 400."""


# -------------------------------------------------------------------- requests


@dataclass(frozen=True)
class _Image:
    data: bytes
    mime: str
    detail: str | None


@dataclass(frozen=True)
class _Dialect:
    """How one vendor lays a request out: where the user message and the system text are, what an
    image part is called and holds, and which body fields are not parameters."""

    messages: Callable[[dict[str, Any]], tuple[list[str], str, Any]]  # -> (roles, system, user parts)
    image_part: str
    image: Callable[[dict[str, Any]], _Image]
    unsupported: str  # the refusal of any other part type, formatted with ``kind``
    not_params: tuple[str, ...]


def parse_request(api: str, body: Any) -> ReceivedRequest:
    """``body`` as the ``api`` endpoint ("openai" or "anthropic") reads it, keyed and timed now; its
    arrival facts (attempt, headers, credentials) are the caller's to fill in. ``BadInput`` (or a
    TypeError / AttributeError from a body of the wrong shape) for a body the vendor refuses."""
    if not isinstance(body, dict):
        raise BadInput("the request body must be a JSON object")
    dialect = _DIALECTS[api]
    roles, system, parts = dialect.messages(body)
    texts, types, images = [], [], []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            types.append("text")
            texts.append(str(part.get("text", "")))
        elif kind == dialect.image_part:
            types.append("image")
            images.append(dialect.image(part))
        else:
            raise BadInput(dialect.unsupported.format(kind=kind))
    text = "\n".join(texts)
    try:
        fake_reasoning.check(api, body)
    except fake_reasoning.Refused as exc:
        raise BadInput(str(exc)) from None
    return ReceivedRequest(
        api=api,
        model=str(body.get("model", "")),
        roles=tuple(roles),
        system=system,
        text=text,
        content_types=tuple(types),
        image_sha256=tuple(hashlib.sha256(image.data).hexdigest() for image in images),
        image_mimes=tuple(image.mime for image in images),
        image_details=tuple(image.detail for image in images),
        image_sizes=tuple(_size(image.data) for image in images),
        key=item_key(text, [image.data for image in images]),
        attempt=0,
        params=MappingProxyType({k: v for k, v in body.items() if k not in dialect.not_params}),
        headers=MappingProxyType({}),
        auth_schemes=(),
        timestamp=time.time(),
    )


def _openai_messages(body: dict[str, Any]) -> tuple[list[str], str, Any]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadInput("'messages' must be a non-empty array")
    roles, system_parts = [], []
    user_content: Any = None
    for message in messages:
        if not isinstance(message, dict) or "role" not in message:
            raise BadInput("each message needs a 'role'")
        roles.append(str(message["role"]))
        if message["role"] in ("system", "developer"):
            content = message.get("content")
            system_parts.append(content if isinstance(content, str) else _joined_text(content))
        elif message["role"] == "user":
            user_content = message.get("content")
    if user_content is None:
        raise BadInput("no user message")
    parts = [{"type": "text", "text": user_content}] if isinstance(user_content, str) else user_content
    if not isinstance(parts, list):
        raise BadInput("message content must be a string or an array of parts")
    return roles, "\n".join(system_parts), parts


def _openai_image(part: dict[str, Any]) -> _Image:
    url = str((part.get("image_url") or {}).get("url", ""))
    detail = (part.get("image_url") or {}).get("detail")
    if not url.startswith("data:") or ";base64," not in url:
        raise BadInput("Invalid image: only base64 data URLs are served by this fake.")
    header, _, data = url.partition(";base64,")
    return _Image(_decode_b64(data, "image_url"), header.removeprefix("data:"), detail)


def _anthropic_messages(body: dict[str, Any]) -> tuple[list[str], str, Any]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadInput("messages: at least one message is required")
    if "max_tokens" not in body:
        raise BadInput("max_tokens: Field required")
    roles = []
    user_content: Any = None
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise BadInput("messages: roles must be 'user' or 'assistant'")
        roles.append(message["role"])
        if message["role"] == "user":
            user_content = message.get("content")
    if user_content is None:
        raise BadInput("messages: the first message must use the 'user' role")
    blocks = [{"type": "text", "text": user_content}] if isinstance(user_content, str) else user_content
    system = body.get("system", "")
    return roles, system if isinstance(system, str) else _joined_text(system), blocks


def _anthropic_image(block: dict[str, Any]) -> _Image:
    source = block.get("source") or {}
    if source.get("type") != "base64":
        raise BadInput("Invalid image: only base64 image sources are served by this fake.")
    media_type = str(source.get("media_type", ""))
    return _Image(_decode_b64(str(source.get("data", "")), "image.source.data"), media_type, None)


_DIALECTS = {
    "openai": _Dialect(
        _openai_messages, "image_url", _openai_image, "unsupported content part type {kind!r}", ("messages", "model")
    ),
    "anthropic": _Dialect(
        _anthropic_messages, "image", _anthropic_image, "messages.0.content: unsupported block type {kind!r}",
        ("messages", "model", "system"),
    ),
}  # fmt: skip


def _decode_b64(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"Invalid image: {what} is not valid base64 image data.") from None


def _joined_text(parts: Any) -> str:
    if not isinstance(parts, list):
        return ""
    return "\n".join(str(p.get("text", "")) for p in parts if isinstance(p, dict) and p.get("type") == "text")


#: (schemes present, keys presented), as ``credentials`` reads them from a request's headers.
Credentials = tuple[tuple[str, ...], tuple[str, ...]]


def credentials(headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> Credentials:
    """(schemes present, keys presented); the keys are compared, never stored. A gateway's key in
    the URL's query (``?api-key=``, ``?key=``) comes first, as scheme "query"."""
    schemes, keys = [], []
    for name in ("api-key", "key"):
        if query and name in query:
            schemes.append("query")
            keys.append(query[name].strip())
    authorization = headers.get("Authorization", "")
    if authorization.lower().startswith("bearer "):
        schemes.append("bearer")
        keys.append(authorization[7:].strip())
    if "x-api-key" in headers:
        schemes.append("x-api-key")
        keys.append(headers["x-api-key"].strip())
    if "api-key" in headers:  # Azure OpenAI's header
        schemes.append("api-key")
        keys.append(headers["api-key"].strip())
    return tuple(schemes), tuple(keys)


def recordable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with lower-cased names, less every credential and anything that looks like one."""
    return {k.lower(): v for k, v in headers.items() if not any(w in k.lower() for w in _SECRET_HEADER_WORDS)}


# -------------------------------------------------------------------- answers


def tokens(text: str) -> int:
    # Roughly four characters a token: good enough for usage numbers that only need to be plausible.
    return len(text) // 4 + 1 if text else 0


def image_tokens(received: ReceivedRequest) -> int:
    """What the vendor documents an image costs (gpt-4o's tiles, Claude's pixels): the usage this
    server reports, written here apart from the client's estimator so that a test can compare them."""
    total = 0
    for size, detail in zip(received.image_sizes, received.image_details, strict=True):
        if size is None:
            total += 85
        elif received.api == "anthropic":
            width, height = size
            shrink = min(1.0, 1568 / max(width, height), (1092 * 1092 / (width * height)) ** 0.5)
            total += math.ceil(width * shrink * height * shrink / 750)
        elif detail == "low":
            total += 85
        else:
            width, height = size
            fit = min(1.0, 2048 / max(width, height))
            width, height = width * fit, height * fit
            fit = min(1.0, 768 / min(width, height))
            total += 85 + 170 * math.ceil(width * fit / 512) * math.ceil(height * fit / 512)
    return total


def _size(data: bytes) -> tuple[int, int] | None:
    try:
        with PILImage.open(io.BytesIO(data)) as image:  # the header only: no pixel is decoded
            return image.size
    except Exception:
        return None


def success_body(
    received: ReceivedRequest,
    kind: str,
    answer: str,
    sequence: int,
    echo: str = "",
    *,
    reasoning_field: str | None = None,
    redact_thinking: bool = False,
) -> dict[str, Any]:
    """The vendor's JSON answer to ``received``, saying ``answer`` (cut at its max_tokens). ``kind``
    "refusal", "content_filter" or "empty" shapes it as such; ``echo`` is a key to repeat in it.
    A model that thinks (``fake_reasoning.thought``) spends its thinking first, out of the same
    bound; ``reasoning_field`` and ``redact_thinking`` say how a server returns it."""
    answer = _REFUSAL_TEXT if kind == "refusal" else answer
    if echo:
        answer = f"[your key is {echo}] {answer}"
    prompt_tokens = tokens(received.text) + tokens(received.system) + image_tokens(received)
    body = {"model": received.model, **received.params}
    thought = fake_reasoning.thought(received.api, body, reasoning_field) if kind == "ok" else None
    limit = received.max_tokens
    thinking = Thinking(thought, limit, redact_thinking)
    stop = "length" if thinking.cut else "stop"
    room = None if limit is None else limit - thinking.tokens
    if thinking.cut:
        answer = ""
    elif room is not None and tokens(answer) > room:
        answer, stop = answer[: max(room, 1) * 4], "length"
    usage = (prompt_tokens, thinking.tokens + tokens(answer))
    if received.api == "openai":
        return _chat_completion(received.model, kind, answer, stop, usage, sequence, thinking)
    return _message(received.model, kind, answer, stop, usage, sequence, thinking)


class Thinking:
    """A thought as spent within the output bound ``limit``: the tokens and text that fit, and
    whether the bound ran out inside it (then no answer follows)."""

    def __init__(self, thought: fake_reasoning.Thought | None, limit: int | None, redacted: bool = False):
        self.where = thought.where if thought else ""
        full = thought.tokens if thought else 0
        self.tokens = full if limit is None else min(full, limit)
        self.cut = thought is not None and limit is not None and full >= limit
        self.text = thought.text[: self.tokens * 4] if thought else ""
        self.redacted = redacted

    def content(self, answer: str) -> str | None:
        """The message content with the thinking in it, where the server puts it there."""
        if self.where == "tags":
            return f"<think>\n{self.text}" + ("" if self.cut else f"\n</think>\n\n{answer}")
        if self.where == "open":
            return self.text + ("" if self.cut else f"\n</think>\n\n{answer}")
        if self.where not in ("", "hidden", "blocks") and self.cut:
            return None  # a reasoning parser's answer cut inside its thinking has no content
        return answer

    def blocks(self) -> list[dict[str, Any]]:
        """Anthropic's thinking blocks, before the text."""
        if self.where != "blocks":
            return []
        blocks: list[dict[str, Any]] = [{"type": "thinking", "thinking": self.text, "signature": "fake-signature"}]
        if self.redacted:
            blocks.append({"type": "redacted_thinking", "data": "EncryptedThinkingFakeBlob=="})
        return blocks


def _chat_completion(
    model: str, kind: str, answer: str, stop: str, usage: tuple[int, int], sequence: int, thinking: Thinking
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": thinking.content(answer), "refusal": None}
    if thinking.where not in ("", "hidden", "tags", "open"):
        message[thinking.where] = thinking.text  # a reasoning parser's field (vLLM, SGLang)
    if kind == "refusal":
        message = {"role": "assistant", "content": None, "refusal": answer}
    elif kind == "content_filter":
        message, stop = {"role": "assistant", "content": None, "refusal": None}, "content_filter"
    choices = [{"index": 0, "message": message, "logprobs": None, "finish_reason": stop}]
    prompt_tokens, completion_tokens = usage
    body: dict[str, Any] = {
        "id": f"chatcmpl-fake{sequence:012d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [] if kind == "empty" else choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "fp_fake",
    }
    if thinking.where == "hidden":  # OpenAI's reasoning models: the count, never the text
        body["usage"]["completion_tokens_details"] = {"reasoning_tokens": thinking.tokens}
    return body


def _message(
    model: str, kind: str, answer: str, stop: str, usage: tuple[int, int], sequence: int, thinking: Thinking
) -> dict[str, Any]:
    content: list[dict[str, Any]] = thinking.blocks() + ([] if thinking.cut else [{"type": "text", "text": answer}])
    stop_reason = {"stop": "end_turn", "length": "max_tokens"}[stop]
    if kind in ("refusal", "content_filter"):  # Anthropic has one way to decline: a refusal
        content, stop_reason = [], "refusal"
    return {
        "id": f"msg_fake{sequence:016d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [] if kind == "empty" else content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }
