"""OpenAI Chat Completions, and any OpenAI-compatible server (vLLM, SGLang, LM Studio, Ollama).

Spec ``openai:MODEL[@BASE_URL]``: ``openai:gpt-4o``, ``openai:llava-hf/llava-1.5-7b-hf@http://gpu:8000/v1``.
The key comes only from an environment variable (``OPENAI_API_KEY`` or ``api_key_env=NAME``); a
self-hosted server given by URL needs none. The endpoint is the spec's ``@BASE_URL`` (or
``base_url=``), else ``OPENAI_BASE_URL`` as the SDK itself reads it, else the public API; it is
resolved here and handed to the SDK explicitly, so ``identity()`` (hence the cache key and the run's
configuration) names exactly what is called, and a medical image never goes elsewhere.

One user message: the images first (base64 PNG data URLs), then the text; the request's system
prompt, if any, as a system message before it. The SDK's own retries are off (``max_retries=0``):
one ``generate`` is one HTTP request, and ``gmai_client.retry`` decides what happens next.

Errors (vendor -> ``gmai_client.errors``):

    429 insufficient_quota (type or code)         QuotaExhausted
    429 otherwise                                 RateLimited(retry_after from the headers)
    401, 403                                      AuthError
    404                                           ModelNotFound
    400, 413, 422 about images                    UnsupportedInput
    400, 413, 422, other 4xx                      BadRequest
    408                                           RequestTimeout
    503, 529                                      Overloaded(retry_after)
    500, 502, 504, other 5xx                      ServerError(retry_after)
    APITimeoutError (no answer within timeout)    RequestTimeout
    APIConnectionError (reset, cut)               ConnectionLost
    APIConnectionError (refused, unknown host)    ConnectFailed (dispatch stops a never-reached endpoint)
    non-JSON / truncated body, no choices,        ServerError
    an answer that does not parse
"""

from __future__ import annotations

import json
import os
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
    import openai
    import pydantic
except ImportError as exc:
    raise MissingExtra("openai", "openai", "openai") from exc

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

DEFAULT_ENDPOINT = "https://api.openai.com/v1"
ENDPOINT_ENV = "OPENAI_BASE_URL"  # the SDK's own variable, honoured after the spec
_VENDOR_HOSTS = ("api.openai.com",)
_MIMES = API_MIMES
# Codes that mean the account, not the request rate, is exhausted: waiting will not help.
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"})
_FINISH: Mapping[str, FinishReason] = {"stop": "stop", "length": "length", "content_filter": "filtered"}


class OpenAIBackend:
    """OpenAI Chat Completions or any OpenAI-compatible server (vLLM, SGLang, Ollama, LM Studio)."""

    name = "openai"
    EXTRA = "openai"
    OPTIONS: Mapping[str, str] = {
        "base_url": "server URL ending in /v1, same as @URL in the spec "
        f"(default: ${ENDPOINT_ENV}, else {DEFAULT_ENDPOINT})",
        **common_options("OPENAI_API_KEY"),
        "organization_env": "environment variable holding an OpenAI organization id (optional)",
        "detail": "image detail for every image: low | high | auto (default: not sent, the server decides)",
        "max_tokens_field": "max_tokens (default) | max_completion_tokens (required by newer OpenAI models)",
    }

    def __init__(
        self,
        model: str,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        api_key_env: str = "OPENAI_API_KEY",
        organization_env: str | None = None,
        detail: str | None = None,
        max_image_side: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_tokens_field: str = "max_tokens",
    ):
        self.model = model
        self.endpoint = endpoint.rstrip("/")
        self.api_key_env = api_key_env
        self.organization_env = organization_env
        self.detail = detail
        self.max_image_side = max_image_side
        self.timeout = timeout
        self.max_tokens_field = max_tokens_field
        self._client: openai.AsyncOpenAI | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, seed: int = 0) -> OpenAIBackend:
        if not spec.target:
            raise ConfigError("openai needs a model name: openai:MODEL[@BASE_URL], e.g. openai:gpt-4o")
        endpoint, _ = endpoint_of(spec, DEFAULT_ENDPOINT, ENDPOINT_ENV)
        return cls(
            spec.target,
            endpoint=endpoint,
            api_key_env=spec.option("api_key_env") or "OPENAI_API_KEY",
            organization_env=spec.option("organization_env") or None,
            detail=choice_option(spec, "detail", ("low", "high", "auto"), None),
            max_image_side=int_option(spec, "max_image_side", None, minimum=1),
            timeout=float_option(spec, "timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT,
            max_tokens_field=choice_option(
                spec, "max_tokens_field", ("max_tokens", "max_completion_tokens"), "max_tokens"
            )
            or "max_tokens",
        )

    def identity(self) -> Mapping[str, str]:
        identity = {"backend": self.name, "model": self.model, "endpoint": self.endpoint}
        # Both change what the model sees, so both change the answer (and the cache key).
        if self.detail is not None:
            identity["detail"] = self.detail
        if self.max_image_side is not None:
            identity["max_image_side"] = str(self.max_image_side)
        return identity

    async def start(self) -> None:
        if self._client is not None:
            return
        key = resolve_key(self.api_key_env, self.endpoint, _VENDOR_HOSTS, self.name)
        organization = os.environ.get(self.organization_env) if self.organization_env else None
        self._client = openai.AsyncOpenAI(
            api_key=key,
            organization=organization or None,
            base_url=self.endpoint,
            max_retries=0,
            timeout=self.timeout,
        )

    async def generate(self, request: Request) -> Response:
        if self._client is None:
            await self.start()
        assert self._client is not None
        images = await prepared_images(request, self.max_image_side)
        check_mimes(images, _MIMES, self.name)
        content: list[dict[str, Any]] = []
        for image in images:
            image_url: dict[str, str] = {"url": image.data_url()}
            if self.detail is not None:
                image_url["detail"] = self.detail
            content.append({"type": "image_url", "image_url": image_url})
        content.append({"type": "text", "text": request.text})
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": content})
        params = request.params
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": params.temperature,
            self.max_tokens_field: params.max_tokens,
        }
        if params.seed is not None:
            kwargs["seed"] = params.seed
        try:
            completion = await self._client.chat.completions.create(**kwargs)
        except openai.APIError as exc:
            raise self._map_error(exc) from None
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
            # The SDK parses 2xx bodies lazily and lets these escape unwrapped.
            raise ServerError(f"openai: {self.endpoint} answered with an unreadable body: {short(exc, 120)}") from None
        return self._response(completion)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # ------------------------------------------------------------------ translation

    def _response(self, completion: Any) -> Response:
        where = f"openai: {self.endpoint}"
        if isinstance(completion, str) or completion is None:
            # A 2xx whose content type is not JSON: the SDK hands back the raw text.
            raise ServerError(f"{where} answered with a non-JSON body: {short(completion or '', 120)}")
        try:
            choices = completion.choices
            if not choices:
                raise ServerError(f"{where} answered with no choices")
            choice = choices[0]
            message = choice.message
            finish = choice.finish_reason
            refusal = getattr(message, "refusal", None)
            text = message.content
            usage = getattr(completion, "usage", None)
            tokens = (
                Usage(input_tokens=int(usage.prompt_tokens or 0), output_tokens=int(usage.completion_tokens or 0))
                if usage is not None
                else None
            )
            model = str(getattr(completion, "model", "") or self.model)
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            # Non-strict parsing builds objects from whatever came back; missing fields surface here.
            raise ServerError(f"{where} answered with a malformed completion ({type(exc).__name__})") from None
        if refusal:
            return Response(str(refusal), finish_reason="refused", usage=tokens, model=model)
        return Response(
            "" if text is None else str(text),
            finish_reason=_FINISH.get(str(finish), "other"),
            usage=tokens,
            model=model,
        )

    def _map_error(self, exc: openai.APIError) -> BackendError:
        if isinstance(exc, openai.APITimeoutError):
            return RequestTimeout(f"openai: no answer from {self.endpoint} within {self.timeout:g} s")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            reason = type(cause).__name__ if cause is not None else "connection error"
            if cause is not None and str(cause):
                reason += f": {short(cause, 160)}"
            if is_connect_failure(exc):  # nothing reached the server: refused, unknown host, no route
                return ConnectFailed(f"openai: cannot connect to {self.endpoint} ({reason})")
            return ConnectionLost(f"openai: connection to {self.endpoint} failed ({reason})")
        if isinstance(exc, openai.APIResponseValidationError):
            return ServerError(f"openai: {self.endpoint} answered with a body that does not fit the schema")
        if isinstance(exc, openai.APIStatusError):
            body = exc.body  # the "error" object of a JSON body, else the raw text (an HTML page)
            message = short(body.get("message") or "") if isinstance(body, Mapping) else short(body or "", 200)
            error_type, code = exc.type, exc.code
            if exc.status_code == 404:
                message += f" (check the model name, and that {self.endpoint} is the API root, e.g. ends in /v1)"
            elif "max_completion_tokens" in message and self.max_tokens_field == "max_tokens":
                message += " (this model needs the option max_tokens_field=max_completion_tokens)"
            return status_error(
                backend=self.name,
                status=exc.status_code,
                message=message,
                headers=exc.response.headers,
                error_type=error_type,
                code=code,
                quota=bool({error_type, code} & _QUOTA_CODES),
            )
        return ServerError(f"openai: {type(exc).__name__} from {self.endpoint}")
