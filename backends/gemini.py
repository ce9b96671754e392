"""Gemini through Google's OpenAI-compatible endpoint, with the openai SDK.

Spec ``gemini:MODEL[@BASE_URL]``, e.g. ``gemini:gemini-2.5-flash``. Each request is ``POST
{base}/chat/completions`` with the Chat Completions body ``OpenAIChat`` writes (images as base64
data URLs, then the text; the system prompt as a system message) and the key as Bearer; the
answer's text, finish reason and usage are read as OpenAI's. The base is ``@URL`` (or
``base_url=``), else ``https://generativelanguage.googleapis.com/v1beta/openai``. The key comes
only from ``GEMINI_API_KEY`` (or the variable ``api_key_env=`` names).

Why this endpoint and not the native ``generateContent``: everything a benchmark item needs goes
through it as the native API would take it (inline base64 images, a system instruction, the
temperature, the output bound, the seed) and comes back with token usage, so the request is the
one the OpenAI-style backends send and one code path reads every answer. Thinking models (2.5 Pro,
which cannot switch thinking off) spend the output bound on thinking first: give them room with
``--max-tokens`` (or ``-B max_tokens=``).

Errors: OpenAI's table (``openai.py``) by HTTP status, read from Google's error body (a JSON object,
or one inside a list, as this endpoint sends it), and:

    400 INVALID_ARGUMENT "API key not valid" (API_KEY_INVALID)   AuthError
    429 RESOURCE_EXHAUSTED on a per-day quota                     QuotaExhausted (no wait helps in a run)
    429 RESOURCE_EXHAUSTED otherwise                              RateLimited, with RetryInfo's delay
    finish_reason content_filter (a safety block)                 ContentFiltered

No batch API here: ``--batch`` leaves a Gemini model live.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gmai_client.errors import AuthError, BackendError, ContentFiltered, MissingExtra, QuotaExhausted

try:
    import openai
except ImportError as exc:
    raise MissingExtra("gemini", "gemini", "openai") from exc

from gmai_client.backends._api import VendorError, key_variable, short
from gmai_client.backends._google import google_error
from gmai_client.backends.openai import OpenAIChat, OpenAIChatOptions
from gmai_client.options import option
from gmai_client.types import Response

GEMINI_ENDPOINT = "https://generativelanguage.googleapis.com/v1beta/openai"


@dataclass(frozen=True)
class GeminiOptions(OpenAIChatOptions):
    base_url: str = option(
        "", "the OpenAI-compatible API root, same as @URL in the spec", default_text=GEMINI_ENDPOINT
    )
    api_key_env: str = key_variable("GEMINI_API_KEY")


class GeminiBackend(OpenAIChat):
    """Gemini through Google's OpenAI-compatible endpoint (GEMINI_API_KEY)."""

    name = "gemini"
    Options = GeminiOptions
    default_endpoint = GEMINI_ENDPOINT
    endpoint_env = ""  # no SDK variable of its own: OPENAI_BASE_URL is the OpenAI backend's
    root_hint = "ends in /v1beta/openai"

    @property
    def url(self) -> str:
        return f"{self.endpoint}{self.path}"

    def identity(self) -> Mapping[str, str]:
        return {**super().identity(), "url": self.url}

    def read_reply(self, reply: Any) -> Response:
        response = super().read_reply(reply)
        if response.finish_reason == "filtered":
            raise ContentFiltered(f"gemini: {self.model} blocked the answer (finish_reason content_filter)")
        return response

    def vendor_error(self, exc: Any) -> VendorError:
        said = super().vendor_error(exc)
        google = google_error(exc.body)
        if google is None:
            return said
        return VendorError(short(google.message) or said.message, google.status or said.error_type, google.reason)

    def map_error(self, exc: Any) -> BackendError:
        error = super().map_error(exc)
        google = google_error(exc.body) if isinstance(exc, openai.APIStatusError) else None
        if google is None:
            return error
        if google.reason == "API_KEY_INVALID" or "API key not valid" in google.message:
            return AuthError(str(error), status=exc.status_code)
        if exc.status_code == 429 and google.per_day:
            return QuotaExhausted(f"{error} (a per-day quota: it comes back tomorrow)", status=exc.status_code)
        if google.retry_delay is not None and getattr(error, "retry_after", 0) is None:
            error.retry_after = google.retry_delay  # type: ignore[attr-defined]
        return error
