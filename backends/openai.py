"""OpenAI Chat Completions, and any OpenAI-compatible server (vLLM, SGLang, LM Studio, Ollama).

Spec ``openai:MODEL[@BASE_URL]``: ``openai:gpt-4o``, ``openai:llava-hf/llava-1.5-7b-hf@http://gpu:8000/v1``.
The key comes only from an environment variable (``OPENAI_API_KEY`` or ``api_key_env=NAME``); a
self-hosted server given by URL needs none. The endpoint is the spec's ``@BASE_URL`` (or
``base_url=``), else ``OPENAI_BASE_URL`` as the SDK itself reads it, else the public API; it is
resolved here and handed to the SDK explicitly, so ``identity()`` (hence the cache key and the run's
configuration) names exactly what is called, and a medical image never goes elsewhere.

One user message: the images first (base64 PNG data URLs), then the text; the request's system
prompt, if any, as a system message before it. The SDK's own retries are off (``max_retries=0``):
one ``generate`` is one HTTP request, and ``gmai_client.policy.retry`` decides what happens next.

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

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from gmai_client.errors import MissingExtra, ServerError

try:
    import openai
    from openai.types.chat import ChatCompletion
except ImportError as exc:
    raise MissingExtra("openai", "openai", "openai") from exc

from gmai_client.backends._api import (
    ApiBackend,
    ApiOptions,
    Embed,
    VendorError,
    client_url,
    data_url,
    key_variable,
    short,
    url_credentials,
)
from gmai_client.backends._openai_batches import OpenAIBatches
from gmai_client.backends._reasoning import ReasoningControls, ReasoningOptions, field_of, usage_of
from gmai_client.backends.token_rules import openai_image_tokens
from gmai_client.batch_api import BatchOptions
from gmai_client.options import option
from gmai_client.types import FinishReason, Image, Request, Response

# Codes that mean the account, not the request rate, is exhausted: waiting will not help.
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"})
_FINISH: Mapping[str, FinishReason] = {"stop": "stop", "length": "length", "content_filter": "filtered"}


@dataclass(frozen=True)
class OpenAIChatOptions(ApiOptions, ReasoningOptions):
    """The Chat Completions options; Azure's and Gemini's backends take them too."""

    base_url: str = option(
        "", "server URL ending in /v1, same as @URL in the spec", default_text="$OPENAI_BASE_URL, else the public API"
    )
    api_key_env: str = key_variable("OPENAI_API_KEY")
    organization_env: str = option("", "environment variable holding an OpenAI organization id", neutral=True)
    detail: Literal["low", "high", "auto"] | None = option(
        None, "image detail for every image", default_text="not sent, the server decides"
    )
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = option(
        None, "the request field of the output bound (reasoning models need max_completion_tokens)",
        default_text="the model family table's, else max_tokens",
    )  # fmt: skip
    enable_thinking: bool | None = option(
        None, "an open model's thinking switch, sent as chat_template_kwargs (vLLM, SGLang)",
        default_text="not sent: the chat template's default",
    )  # fmt: skip


@dataclass(frozen=True)
class OpenAIOptions(OpenAIChatOptions, BatchOptions):
    pass


class OpenAIChat(ReasoningControls, ApiBackend):
    """Chat Completions, live: the wire format and errors ``OpenAIBackend`` adds its batch API to,
    and that the Azure and Gemini backends build on (``name`` and the endpoint are theirs)."""

    Options = OpenAIChatOptions
    sdk = openai
    path = "/chat/completions"
    reply_type = ChatCompletion
    default_endpoint = "https://api.openai.com/v1"
    endpoint_env = "OPENAI_BASE_URL"  # the SDK's own variable, honoured after the spec
    root_hint = "e.g. ends in /v1"
    reply_noun = "completion"
    family_backend = "openai"  # the rules of OpenAI's models, whichever endpoint serves them

    @property
    def detail(self) -> str | None:
        return self.options.detail

    @property
    def output_field(self) -> str:
        return self.options.max_tokens_field or self.family.output_field or "max_tokens"

    def identity(self) -> Mapping[str, str]:
        identity = {**super().identity(), **self.reasoning_identity()}
        if self.detail is not None:  # changes what the model sees, so the answer (and the cache key)
            identity["detail"] = self.detail
        if self.options.enable_thinking is not None:
            identity["enable_thinking"] = str(self.options.enable_thinking).lower()
        return identity

    def check_options(self) -> None:
        self.check_reasoning()

    def image_tokens(self, width: int, height: int) -> int:
        return openai_image_tokens(width, height, model=self.model, detail=self.detail or "auto")

    def make_client(self, key: str) -> openai.AsyncOpenAI:
        variable = self.options.organization_env
        organization = os.environ.get(variable) if variable else None
        base_url, query = client_url(self.endpoint)
        base_url, basic = url_credentials(base_url)  # user:password@ in the URL: sent as Basic auth
        return openai.AsyncOpenAI(
            api_key=key,
            organization=organization or None,
            base_url=base_url,
            default_headers=basic or None,
            default_query=query or None,
            max_retries=0,
            timeout=self.timeout,
            http_client=self.http_client(),
        )

    def request_body(self, request: Request, images: tuple[Image, ...], embed: Embed = str) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        for image in images:
            image_url: dict[str, str] = {"url": data_url(embed, image)}
            if self.detail is not None:
                image_url["detail"] = self.detail
            content.append({"type": "image_url", "image_url": image_url})
        content.append({"type": "text", "text": request.text})
        messages: list[dict[str, Any]] = []
        system = self.system_prompt(request)
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": content})
        params = request.params
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if not self.omits_temperature:
            body["temperature"] = params.temperature
        body[self.output_field] = self.output_bound(request)
        if params.sample_seed is not None:
            body["seed"] = params.sample_seed  # each repeated sample its own (``SamplingParams.sample_seed``)
        if self.reasoning_effort:
            body["reasoning_effort"] = self.reasoning_effort
        if self.options.enable_thinking is not None:
            body["chat_template_kwargs"] = {"enable_thinking": self.options.enable_thinking}
        return body

    def read_reply(self, reply: Any) -> Response:
        if not reply.choices:
            raise ServerError(f"{self.name}: {self.endpoint} answered with no choices")
        choice = reply.choices[0]
        message = choice.message
        refusal = getattr(message, "refusal", None)
        usage = getattr(reply, "usage", None)
        tokens = None
        if usage is not None:
            reasoning = field_of(usage, "completion_tokens_details", "reasoning_tokens")
            tokens = usage_of(usage.prompt_tokens, usage.completion_tokens, reasoning)
        model = str(getattr(reply, "model", "") or self.model)
        # OpenAI-compatible servers with a reasoning parser put the thinking apart from the answer
        # (vLLM and SGLang: reasoning_content, newer vLLM and OpenRouter: reasoning).
        thinking = next((t for t in map(partial(field_of, message), _REASONING_FIELDS) if isinstance(t, str) and t), "")
        if refusal:
            return Response(str(refusal), finish_reason="refused", usage=tokens, model=model, thinking=thinking)
        text = self._message_text(message.content)
        finish = _FINISH.get(str(choice.finish_reason), "other")
        if finish == "length" and self.family.opens_in_thinking and not thinking and "</think>" not in text:
            # The chat template opened <think> and the output ended before closing it: all thinking.
            text, thinking = "", text
        return Response(text, finish_reason=finish, usage=tokens, model=model, thinking=thinking)

    def _message_text(self, content: Any) -> str:
        """The answer's text: ``content`` is a string, or (some OpenAI-compatible servers) a list of
        parts whose text parts are joined, as the Anthropic backend joins its text blocks."""
        if content is None or isinstance(content, str):
            return content or ""
        if isinstance(content, list):
            texts = [_part_text(part) for part in content]
            if content and all(text is None for text in texts):
                kinds = ", ".join(sorted({str(_part_field(part, "type")) for part in content}))
                raise ServerError(f"{self.name}: {self.endpoint} answered with content parts holding no text ({kinds})")
            return "".join(text for text in texts if text is not None)
        raise ServerError(f"{self.name}: {self.endpoint} answered with content of type {type(content).__name__}")

    def vendor_error(self, exc: openai.APIStatusError) -> VendorError:
        body = exc.body  # the "error" object of a JSON body, else the raw text (an HTML page)
        message = short(body.get("message") or "") if isinstance(body, Mapping) else short(body or "", 200)
        return VendorError(message, exc.type, exc.code, quota=bool({exc.type, exc.code} & _QUOTA_CODES))

    def advice(self, status: int, message: str) -> str:
        """One hint naming the ``-B`` option that fixes a field the model refused."""
        lowered = message.lower()
        if "context length" in lowered or "too large" in lowered:
            return " (lower this model's output bound: -B max_tokens=N)"
        if "max_completion_tokens" in lowered and self.output_field == "max_tokens":
            return " (this model needs -B max_tokens_field=max_completion_tokens)"
        if "temperature" in lowered and not self.omits_temperature:
            return " (this model takes only its default temperature: -B temperature=omit)"
        if "reasoning_effort" in lowered and self.reasoning_effort:
            return " (this model takes no reasoning_effort, or not this value: change or drop -B reasoning_effort)"
        if "chat_template_kwargs" in lowered and self.options.enable_thinking is not None:
            return " (this server takes no chat_template_kwargs: drop -B enable_thinking)"
        return ""


class OpenAIBackend(OpenAIChat, OpenAIBatches):
    """OpenAI Chat Completions or any OpenAI-compatible server (vLLM, SGLang, Ollama, LM Studio)."""

    name = "openai"
    Options = OpenAIOptions


_REASONING_FIELDS = ("reasoning_content", "reasoning")


def _part_field(part: Any, name: str) -> Any:
    return part.get(name) if isinstance(part, Mapping) else getattr(part, name, None)


def _part_text(part: Any) -> str | None:
    """The text of one content part (``{"type": "text", "text": ...}``), None for another kind."""
    text = _part_field(part, "text")
    return text if isinstance(text, str) and _part_field(part, "type") in ("text", "output_text", None) else None
