"""Anthropic Messages API (Claude models), or any server that speaks the Messages wire format.

Spec ``anthropic:MODEL[@BASE_URL]``, e.g. ``anthropic:claude-sonnet-4-5``; the base URL is the API
root without ``/v1`` (the SDK appends ``/v1/messages``). The key comes only from an environment
variable (``ANTHROPIC_API_KEY`` or ``api_key_env=NAME``), never from a credentials profile. The
endpoint is the spec's ``@BASE_URL`` (or ``base_url=``), else ``ANTHROPIC_BASE_URL`` as the SDK
itself reads it, else the public API; it is resolved here and handed to the SDK explicitly, so
``identity()`` (hence the cache key and the run's configuration) names what is called.

One user turn: the image blocks first (base64 source), then the text block; the request's system
prompt as the ``system`` parameter. The Messages API has no seed: ``SamplingParams.seed`` is not
sent. The SDK's own retries are off (``max_retries=0``): one ``generate`` is one HTTP request.

Temperature: anthropic SDK 2.x no longer has a ``temperature`` argument, so it travels in
``extra_body`` (which every SDK version merges into the JSON body). Models that refuse sampling
parameters answer 400; ``temperature=omit`` then leaves it out.

Errors (vendor -> ``gmai_client.errors``):

    429 spend-limit codes, 402, 400 "credit balance is too low"   QuotaExhausted
    429 otherwise                     RateLimited(retry_after: retry-after-ms, retry-after,
                                      anthropic-ratelimit-*-reset of the exhausted budget)
    529, 503, overloaded_error        Overloaded(retry_after)
    401, 403                          AuthError
    404                               ModelNotFound
    400, 413, 422 about images        UnsupportedInput
    400, 413, 422, other 4xx          BadRequest
    408                               RequestTimeout
    500, 502, 504, other 5xx          ServerError(retry_after)
    APITimeoutError                   RequestTimeout
    APIConnectionError                ConnectionLost; refused / unknown host: ConnectFailed
    non-JSON / truncated body,        ServerError
    no content blocks at all

``stop_reason`` "refusal" is a Response with finish_reason "refused", not an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gmai_client.errors import ConfigError, MissingExtra, ServerError

try:
    import anthropic
    from anthropic.types import Message
except ImportError as exc:
    raise MissingExtra("anthropic", "anthropic", "anthropic") from exc

from gmai_client.backends._anthropic_batches import AnthropicBatches
from gmai_client.backends._api import ApiBackend, ApiOptions, Embed, VendorError, key_variable, short
from gmai_client.backends.token_rules import anthropic_image_tokens
from gmai_client.batch_api import BatchOptions
from gmai_client.options import option
from gmai_client.types import FinishReason, Image, Request, Response, Usage

# Account-level exhaustion: no amount of waiting within a run brings these back.
_QUOTA_CODES = frozenset({"contract_spend_limit_reached", "enforced_spend_limit_reached"})
_QUOTA_MESSAGE = re.compile(r"credit balance is too low|spend limit", re.IGNORECASE)
_FINISH: Mapping[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "refused",
}


@dataclass(frozen=True)
class AnthropicMessagesOptions(ApiOptions):
    """The Messages API options; the Bedrock and Vertex backends take them too."""

    base_url: str = option(
        "", "API root without /v1, same as @URL in the spec", default_text="$ANTHROPIC_BASE_URL, else the public API"
    )
    api_key_env: str = key_variable("ANTHROPIC_API_KEY")
    temperature: Literal["send", "omit"] = option("send", "omit: leave temperature out, for models that refuse it")


@dataclass(frozen=True)
class AnthropicOptions(AnthropicMessagesOptions, BatchOptions):
    pass


class AnthropicMessages(ApiBackend):
    """The Messages API, live: the wire format and errors ``AnthropicBackend`` adds its batch API
    to, and that the Bedrock and Vertex backends build on (``name`` and the endpoint are theirs)."""

    Options = AnthropicMessagesOptions
    sdk = anthropic
    path = "/v1/messages"
    reply_type = Message
    default_endpoint = "https://api.anthropic.com"
    endpoint_env = "ANTHROPIC_BASE_URL"  # the SDK's own variable, honoured after the spec
    root_hint = "without /v1"
    reply_noun = "message"

    @classmethod
    def check_endpoint(cls, endpoint: str, source: str) -> None:
        if endpoint.endswith("/v1"):
            where = f"{cls.endpoint_env}={endpoint}" if source == cls.endpoint_env else f"base URL {endpoint}"
            raise ConfigError(f"anthropic: {where} must not end in /v1 (the SDK adds /v1/messages)")

    @property
    def send_temperature(self) -> bool:
        return self.options.temperature == "send"

    def image_tokens(self, width: int, height: int) -> int:
        return anthropic_image_tokens(width, height)

    def make_client(self, key: str) -> anthropic.AsyncAnthropic:
        # An explicit key and base_url keep the SDK from reading ANTHROPIC_* variables or profiles.
        return anthropic.AsyncAnthropic(
            api_key=key, base_url=self.endpoint, max_retries=0, timeout=self.timeout, http_client=self.http_client()
        )

    def request_body(self, request: Request, images: tuple[Image, ...], embed: Embed = str) -> dict[str, Any]:
        content: list[dict[str, Any]] = [
            {"type": "image", "source": {"type": "base64", "media_type": image.mime, "data": embed(image.b64)}}
            for image in images
        ]
        content.append({"type": "text", "text": request.text})
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.params.max_tokens,
            "messages": [{"role": "user", "content": content}],
        }
        if self.send_temperature:
            body["temperature"] = request.params.temperature
        if request.system:
            body["system"] = request.system
        return body

    def read_reply(self, reply: Any) -> Response:
        blocks, stop_reason = reply.content, reply.stop_reason
        text = "".join(str(b.text) for b in blocks if getattr(b, "type", None) == "text")
        usage = getattr(reply, "usage", None)
        tokens = None
        if usage is not None:
            tokens = Usage(input_tokens=int(usage.input_tokens or 0), output_tokens=int(usage.output_tokens or 0))
        model = str(getattr(reply, "model", "") or self.model)
        if stop_reason == "refusal":
            return Response(text, finish_reason="refused", usage=tokens, model=model)
        if not blocks:
            # No block at all (not even an empty text block) is a broken answer, not an empty one.
            where = f"{self.name}: {self.endpoint}"
            raise ServerError(f"{where} answered with no content blocks (stop_reason {stop_reason!r})")
        return Response(text, finish_reason=_FINISH.get(str(stop_reason), "other"), usage=tokens, model=model)

    def vendor_error(self, exc: anthropic.APIStatusError) -> VendorError:
        if exc.api_message is not None:
            message = short(exc.api_message)
        else:  # not the vendor's error JSON: a gateway's HTML page, a proxy's text
            message = short(exc.body if isinstance(exc.body, str) else "", 200)
        code = exc.error_code
        quota = exc.status_code == 402 or code in _QUOTA_CODES or bool(_QUOTA_MESSAGE.search(message))
        return VendorError(message, exc.type if isinstance(exc.type, str) else None, code, quota)

    def advice(self, status: int, message: str) -> str:
        if status == 400 and "temperature" in message and self.send_temperature:
            return " (if this model takes no temperature, set the option temperature=omit)"
        return ""


class AnthropicBackend(AnthropicMessages, AnthropicBatches):
    """Anthropic Messages API (Claude) or a server speaking its wire format."""

    name = "anthropic"
    Options = AnthropicOptions
