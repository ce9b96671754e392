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

The body is encoded here and posted through the SDK's own ``post`` (``ApiBackend.send``), so
fields the SDK version does not model (``temperature`` in SDK 2.x, ``output_config``) travel as
they are. Models that refuse sampling parameters answer 400; ``temperature=omit`` leaves it out
(the model family table says so for the models known to refuse it).

Thinking (``_reasoning`` has the options every reasoning model shares):

    -B thinking_budget=N     thinking: {type: enabled, budget_tokens: N} (N >= 1,024), the form of
                             Claude Sonnet/Opus 4.5 and earlier; the output bound becomes N plus
                             the run's --max-tokens unless -B max_tokens= says otherwise (it must
                             be above N)
    -B thinking=adaptive     thinking: {type: adaptive}, the newer form (Opus/Sonnet 4.6 and
                             later; the only one Opus 4.7 takes), steered by
    -B reasoning_effort=E    output_config: {effort: E} (low, medium, high, and per model xhigh, max)
    -B thinking=off          thinking: {type: disabled}

With thinking on, no temperature is sent (the API takes only its default then). Which model
takes which form is in the model families table; a form it refuses is a ConfigError before
anything is sent. ``thinking`` and ``redacted_thinking`` blocks go to ``Response.thinking``
(a redacted block as ``[redacted thinking]``), never into the answer's text.

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
from gmai_client.backends._api import (
    ApiBackend,
    ApiOptions,
    Embed,
    VendorError,
    client_url,
    key_variable,
    short,
    url_credentials,
)
from gmai_client.backends._reasoning import ReasoningControls, ReasoningOptions, field_of, usage_of
from gmai_client.backends.token_rules import anthropic_image_tokens
from gmai_client.batch_api import BatchOptions
from gmai_client.options import option
from gmai_client.types import FinishReason, Image, Request, Response

# Account-level exhaustion: no amount of waiting within a run brings these back.
_QUOTA_CODES = frozenset({"contract_spend_limit_reached", "enforced_spend_limit_reached"})
_QUOTA_MESSAGE = re.compile(r"credit balance is too low|spend limit", re.IGNORECASE)
#: The output bound of adaptive thinking when the family table names none (Anthropic's examples).
ADAPTIVE_BOUND = 16_000
REDACTED_THINKING = "[redacted thinking]"
_FINISH: Mapping[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "refused",
}


@dataclass(frozen=True)
class AnthropicMessagesOptions(ApiOptions, ReasoningOptions):
    """The Messages API options; the Bedrock and Vertex backends take them too."""

    base_url: str = option(
        "", "API root without /v1, same as @URL in the spec", default_text="$ANTHROPIC_BASE_URL, else the public API"
    )
    api_key_env: str = key_variable("ANTHROPIC_API_KEY")
    thinking_budget: int | None = option(
        None, "extended thinking with this budget (thinking: enabled, budget_tokens), below the output bound",
        minimum=1024, default_text="no thinking",
    )  # fmt: skip
    thinking: Literal["adaptive", "off"] | None = option(
        None, "adaptive: the model decides how much to think (steer it with reasoning_effort); off: disabled",
        default_text="not sent: the model's default",
    )  # fmt: skip


@dataclass(frozen=True)
class AnthropicOptions(AnthropicMessagesOptions, BatchOptions):
    pass


class AnthropicMessages(ReasoningControls, ApiBackend):
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
    family_backend = "anthropic"  # Claude's rules, whichever cloud serves it

    @classmethod
    def check_endpoint(cls, endpoint: str, source: str) -> None:
        if endpoint.endswith("/v1"):
            where = f"{cls.endpoint_env}={endpoint}" if source == cls.endpoint_env else f"base URL {endpoint}"
            raise ConfigError(f"anthropic: {where} must not end in /v1 (the SDK adds /v1/messages)")

    @property
    def thinks(self) -> bool:
        return self.options.thinking_budget is not None or self.options.thinking == "adaptive"

    @property
    def send_temperature(self) -> bool:
        return not (self.omits_temperature or self.thinks)  # with thinking the API takes only its default

    def family_bound(self) -> int | None:
        if self.options.thinking == "adaptive":
            return self.family.thinking_max_tokens or ADAPTIVE_BOUND
        return self.family.max_tokens

    def output_bound(self, request: Request) -> int:
        budget = self.options.thinking_budget
        if budget is not None and self.options.max_tokens is None:
            return budget + request.params.max_tokens  # the thinking's room, then the answer's
        return super().output_bound(request)

    def identity(self) -> Mapping[str, str]:
        identity = {**super().identity(), **self.reasoning_identity()}
        if self.options.thinking_budget is not None:
            identity["thinking"] = f"budget {self.options.thinking_budget}"
        elif self.options.thinking is not None:
            identity["thinking"] = self.options.thinking
        if self.thinks:
            identity["temperature"] = "omitted"
        return identity

    def check_options(self) -> None:
        self.check_reasoning()
        options, form, model = self.options, self.family.thinking, f"{self.name}:{self.model}"
        if options.thinking_budget is not None and options.thinking is not None:
            raise ConfigError(f"{model}: give -B thinking_budget=N or -B thinking={options.thinking}, not both")
        if options.thinking_budget is not None and form == "adaptive_only":
            raise ConfigError(
                f"{model} takes thinking only in its adaptive form ({self.family.source}): "
                "use -B thinking=adaptive (and -B reasoning_effort=...) instead of thinking_budget"
            )
        if options.thinking == "adaptive" and form == "budget":
            raise ConfigError(
                f"{model} takes thinking as a budget, not adaptive ({self.family.source}): use -B thinking_budget=N"
            )
        if options.thinking == "off" and form == "adaptive_only":
            raise ConfigError(f"{model} cannot have thinking disabled ({self.family.source}): drop -B thinking=off")
        budget, bound = options.thinking_budget, options.max_tokens
        if budget is not None and bound is not None and bound <= budget:
            raise ConfigError(
                f"{model}: thinking_budget={budget} must be below max_tokens={bound} (thinking counts in the output)"
            )

    def thinking_field(self) -> dict[str, Any] | None:
        if self.options.thinking_budget is not None:
            return {"type": "enabled", "budget_tokens": self.options.thinking_budget}
        if self.options.thinking is not None:
            return {"type": "adaptive" if self.options.thinking == "adaptive" else "disabled"}
        return None

    def image_tokens(self, width: int, height: int) -> int:
        return anthropic_image_tokens(width, height)

    def make_client(self, key: str) -> anthropic.AsyncAnthropic:
        # An explicit key and base_url keep the SDK from reading ANTHROPIC_* variables or profiles.
        base_url, query = client_url(self.endpoint)
        base_url, basic = url_credentials(base_url)  # user:password@ in the URL: sent as Basic auth
        return anthropic.AsyncAnthropic(
            api_key=key,
            base_url=base_url,
            default_headers=basic or None,
            default_query=query or None,
            max_retries=0,
            timeout=self.timeout,
            http_client=self.http_client(),
        )

    def request_body(self, request: Request, images: tuple[Image, ...], embed: Embed = str) -> dict[str, Any]:
        content: list[dict[str, Any]] = [
            {"type": "image", "source": {"type": "base64", "media_type": image.mime, "data": embed(image.b64)}}
            for image in images
        ]
        content.append({"type": "text", "text": request.text})
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.output_bound(request),
            "messages": [{"role": "user", "content": content}],
        }
        if self.send_temperature:
            body["temperature"] = request.params.temperature
        thinking = self.thinking_field()
        if thinking is not None:
            body["thinking"] = thinking
        if self.reasoning_effort:
            body["output_config"] = {"effort": self.reasoning_effort}
        system = self.system_prompt(request)
        if system:
            body["system"] = system
        return body

    def read_reply(self, reply: Any) -> Response:
        blocks, stop_reason = reply.content, reply.stop_reason
        text = "".join(str(b.text) for b in blocks if getattr(b, "type", None) == "text")
        thinking = "\n\n".join(_thinking_text(b) for b in blocks if getattr(b, "type", None) in _THINKING_BLOCKS)
        usage = getattr(reply, "usage", None)
        tokens = None
        if usage is not None:
            thought = field_of(usage, "output_tokens_details", "thinking_tokens")
            tokens = usage_of(usage.input_tokens, usage.output_tokens, thought)
        model = str(getattr(reply, "model", "") or self.model)
        if stop_reason == "refusal":
            return Response(text, finish_reason="refused", usage=tokens, model=model, thinking=thinking)
        if not blocks:
            # No block at all (not even an empty text block) is a broken answer, not an empty one.
            where = f"{self.name}: {self.endpoint}"
            raise ServerError(f"{where} answered with no content blocks (stop_reason {stop_reason!r})")
        finish = _FINISH.get(str(stop_reason), "other")
        return Response(text, finish_reason=finish, usage=tokens, model=model, thinking=thinking)

    def vendor_error(self, exc: anthropic.APIStatusError) -> VendorError:
        if exc.api_message is not None:
            message = short(exc.api_message)
        else:  # not the vendor's error JSON: a gateway's HTML page, a proxy's text
            message = short(exc.body if isinstance(exc.body, str) else "", 200)
        code = exc.error_code
        quota = exc.status_code == 402 or code in _QUOTA_CODES or bool(_QUOTA_MESSAGE.search(message))
        return VendorError(message, exc.type if isinstance(exc.type, str) else None, code, quota)

    def advice(self, status: int, message: str) -> str:
        if status != 400:
            return ""
        lowered = message.lower()
        if "temperature" in lowered and self.send_temperature:
            return " (if this model takes no temperature, set -B temperature=omit)"
        if ("budget_tokens" in lowered or "thinking.type.enabled" in lowered) and self.options.thinking_budget:
            return " (this model takes thinking in its adaptive form: -B thinking=adaptive instead of thinking_budget)"
        if "adaptive" in lowered and self.options.thinking == "adaptive":
            return " (this model takes thinking as a budget: -B thinking_budget=N instead of thinking=adaptive)"
        if "effort" in lowered and self.reasoning_effort:
            return " (this model takes no reasoning_effort, or not this value: change or drop -B reasoning_effort)"
        return ""


_THINKING_BLOCKS = ("thinking", "redacted_thinking")


def _thinking_text(block: Any) -> str:
    """A thinking block's text; a redacted block (encrypted by the vendor) as a marker."""
    if getattr(block, "type", None) == "redacted_thinking":
        return REDACTED_THINKING
    return str(getattr(block, "thinking", "") or "")


class AnthropicBackend(AnthropicMessages, AnthropicBatches):
    """Anthropic Messages API (Claude) or a server speaking its wire format."""

    name = "anthropic"
    Options = AnthropicOptions
