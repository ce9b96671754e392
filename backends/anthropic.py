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

import json
import re
from collections.abc import Mapping
from typing import Any

from gmai_client.errors import (
    BackendError,
    ConfigError,
    ConnectFailed,
    ConnectionLost,
    MissingExtra,
    RequestTimeout,
    ServerError,
    is_connect_failure,
)

try:
    import anthropic
    import pydantic
except ImportError as exc:
    raise MissingExtra("anthropic", "anthropic", "anthropic") from exc

from gmai_client.backends._api import (
    API_MIMES,
    DEFAULT_TIMEOUT,
    check_mimes,
    choice_option,
    common_options,
    endpoint_of,
    float_option,
    int_option,
    prepared_images,
    resolve_key,
    short,
    status_error,
)
from gmai_client.config import ModelSpec
from gmai_client.types import FinishReason, Request, Response, Usage

DEFAULT_ENDPOINT = "https://api.anthropic.com"
ENDPOINT_ENV = "ANTHROPIC_BASE_URL"  # the SDK's own variable, honoured after the spec
_VENDOR_HOSTS = ("api.anthropic.com",)
_MIMES = API_MIMES
# Account-level exhaustion: no amount of waiting within a run brings these back.
_QUOTA_CODES = frozenset({"contract_spend_limit_reached", "enforced_spend_limit_reached"})
_QUOTA_MESSAGE = re.compile(r"credit balance is too low|spend limit", re.IGNORECASE)
_FINISH: Mapping[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "refused",
}


class AnthropicBackend:
    """Anthropic Messages API (Claude) or a server speaking its wire format."""

    name = "anthropic"
    EXTRA = "anthropic"
    OPTIONS: Mapping[str, str] = {
        "base_url": "API root without /v1, same as @URL in the spec "
        f"(default: ${ENDPOINT_ENV}, else {DEFAULT_ENDPOINT})",
        **common_options("ANTHROPIC_API_KEY"),
        "temperature": "send (default) | omit: leave temperature out, for models that refuse it",
    }

    def __init__(
        self,
        model: str,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        api_key_env: str = "ANTHROPIC_API_KEY",
        max_image_side: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        send_temperature: bool = True,
    ):
        self.model = model
        self.send_temperature = send_temperature
        self.endpoint = endpoint.rstrip("/")
        self.api_key_env = api_key_env
        self.max_image_side = max_image_side
        self.timeout = timeout
        self._client: anthropic.AsyncAnthropic | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, seed: int = 0) -> AnthropicBackend:
        if not spec.target:
            raise ConfigError("anthropic needs a model name: anthropic:MODEL[@BASE_URL]")
        endpoint, source = endpoint_of(spec, DEFAULT_ENDPOINT, ENDPOINT_ENV)
        if endpoint.endswith("/v1"):
            where = f"{ENDPOINT_ENV}={endpoint}" if source == ENDPOINT_ENV else f"base URL {endpoint}"
            raise ConfigError(f"anthropic: {where} must not end in /v1 (the SDK adds /v1/messages)")
        return cls(
            spec.target,
            endpoint=endpoint,
            api_key_env=spec.option("api_key_env") or "ANTHROPIC_API_KEY",
            max_image_side=int_option(spec, "max_image_side", None, minimum=1),
            timeout=float_option(spec, "timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT,
            send_temperature=choice_option(spec, "temperature", ("send", "omit"), "send") == "send",
        )

    def identity(self) -> Mapping[str, str]:
        identity = {"backend": self.name, "model": self.model, "endpoint": self.endpoint}
        if self.max_image_side is not None:  # changes what the model sees, so the answer
            identity["max_image_side"] = str(self.max_image_side)
        return identity

    async def start(self) -> None:
        if self._client is not None:
            return
        key = resolve_key(self.api_key_env, self.endpoint, _VENDOR_HOSTS, self.name)
        # An explicit key and base_url keep the SDK from reading ANTHROPIC_* variables or profiles.
        self._client = anthropic.AsyncAnthropic(
            api_key=key, base_url=self.endpoint, max_retries=0, timeout=self.timeout
        )

    async def generate(self, request: Request) -> Response:
        if self._client is None:
            await self.start()
        assert self._client is not None
        images = await prepared_images(request, self.max_image_side)
        check_mimes(images, _MIMES, self.name)
        content: list[dict[str, Any]] = [
            {"type": "image", "source": {"type": "base64", "media_type": image.mime, "data": image.b64}}
            for image in images
        ]
        content.append({"type": "text", "text": request.text})
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.params.max_tokens,
            "messages": [{"role": "user", "content": content}],
        }
        if self.send_temperature:
            kwargs["extra_body"] = {"temperature": request.params.temperature}
        if request.system:
            kwargs["system"] = request.system
        try:
            message = await self._client.messages.create(**kwargs)
        except anthropic.APIError as exc:
            raise self._map_error(exc) from None
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
            # The SDK parses 2xx bodies lazily and lets these escape unwrapped.
            raise ServerError(
                f"anthropic: {self.endpoint} answered with an unreadable body: {short(exc, 120)}"
            ) from None
        return self._response(message)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # ------------------------------------------------------------------ translation

    def _response(self, message: Any) -> Response:
        where = f"anthropic: {self.endpoint}"
        if isinstance(message, str) or message is None:
            raise ServerError(f"{where} answered with a non-JSON body: {short(message or '', 120)}")
        try:
            blocks = message.content
            stop_reason = message.stop_reason
            text = "".join(str(b.text) for b in blocks if getattr(b, "type", None) == "text")
            usage = getattr(message, "usage", None)
            tokens = (
                Usage(input_tokens=int(usage.input_tokens or 0), output_tokens=int(usage.output_tokens or 0))
                if usage is not None
                else None
            )
            model = str(getattr(message, "model", "") or self.model)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ServerError(f"{where} answered with a malformed message ({type(exc).__name__})") from None
        if stop_reason == "refusal":
            return Response(text, finish_reason="refused", usage=tokens, model=model)
        if not blocks:
            # No block at all (not even an empty text block) is a broken answer, not an empty one.
            raise ServerError(f"{where} answered with no content blocks (stop_reason {stop_reason!r})")
        return Response(text, finish_reason=_FINISH.get(str(stop_reason), "other"), usage=tokens, model=model)

    def _map_error(self, exc: anthropic.APIError) -> BackendError:
        if isinstance(exc, anthropic.APITimeoutError):
            return RequestTimeout(f"anthropic: no answer from {self.endpoint} within {self.timeout:g} s")
        if isinstance(exc, anthropic.APIConnectionError):
            cause = exc.__cause__
            reason = type(cause).__name__ if cause is not None else "connection error"
            if cause is not None and str(cause):
                reason += f": {short(cause, 160)}"
            if is_connect_failure(exc):  # nothing reached the server: refused, unknown host, no route
                return ConnectFailed(f"anthropic: cannot connect to {self.endpoint} ({reason})")
            return ConnectionLost(f"anthropic: connection to {self.endpoint} failed ({reason})")
        if isinstance(exc, anthropic.APIResponseValidationError):
            return ServerError(f"anthropic: {self.endpoint} answered with a body that does not fit the schema")
        if isinstance(exc, anthropic.APIStatusError):
            body = exc.body
            if exc.api_message is not None:
                message = short(exc.api_message)
            else:  # not the vendor's error JSON: a gateway's HTML page, a proxy's text
                message = short(body if isinstance(body, str) else "", 200)
            error_type = exc.type if isinstance(exc.type, str) else None
            code = exc.error_code
            status = exc.status_code
            quota = status == 402 or code in _QUOTA_CODES or bool(_QUOTA_MESSAGE.search(message))
            if status == 404:
                message += f" (check the model name, and that {self.endpoint} is the API root, without /v1)"
            elif status == 400 and "temperature" in message and self.send_temperature:
                message += " (if this model takes no temperature, set the option temperature=omit)"
            return status_error(
                backend=self.name,
                status=status,
                message=message,
                headers=exc.response.headers,
                error_type=error_type,
                code=code,
                quota=quota,
            )
        return ServerError(f"anthropic: {type(exc).__name__} from {self.endpoint}")
