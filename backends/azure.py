"""Azure OpenAI: an OpenAI model deployed in an Azure resource, through the openai SDK's Azure client.

Spec ``azure:DEPLOYMENT[@https://RESOURCE.openai.azure.com]``, e.g. ``azure:gpt4o-eval`` with
``AZURE_OPENAI_ENDPOINT`` set, or ``azure:gpt4o-eval@https://myres.openai.azure.com``. The target is
the *deployment* name, which is what Azure routes by; the model it serves is ``-B model=gpt-4o``
(prices, the image-token rule and the model family follow it; the deployment's name when not given).

Each request is ``POST {resource}/openai/deployments/{deployment}/chat/completions?api-version=V``
(``AsyncAzureOpenAI`` with ``azure_endpoint`` and ``azure_deployment``): the same Chat Completions
body as ``openai:`` (``OpenAIChat`` writes it and reads the answer). The API version is ``-B
api_version=``, else ``OPENAI_API_VERSION`` as the SDK reads it, else 2024-10-21 (the last dated GA
version of this path). The resource is the spec's ``@URL`` (or ``base_url=``), else
``AZURE_OPENAI_ENDPOINT``; the run folder's identity holds the full URL called.

Credentials, first found wins (none is ever written anywhere; every one is registered for redaction):

    the variable api_key_env names (AZURE_OPENAI_API_KEY)   sent as the api-key header
    AZURE_OPENAI_AD_TOKEN                                   a Microsoft Entra ID token, as Bearer
    azure-identity's DefaultAzureCredential                 Entra ID (managed identity, az login,
                                                            a service principal's variables, ...),
                                                            a token per request, refreshed by it

Errors are OpenAI's table (``openai.py``), plus:

    400 code content_filter (the prompt was filtered)    ContentFiltered (never retried)
    200 finish_reason content_filter (the answer was)    ContentFiltered
    429 without a Retry-After header                      RateLimited with the wait its message
                                                          names ("Please retry after 6 seconds")
    an Entra ID token that cannot be had                  AuthError

Azure's rate-limit headers (``retry-after-ms``, ``retry-after``) are read by ``_hints``. No batch
API here: Azure's (Global Batch deployments, its own file and batch routes) is not wired in, so
``--batch`` leaves an Azure model live.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from gmai_client.errors import AuthError, BackendError, ConfigError, ContentFiltered, MissingExtra, register_secret

try:
    import openai
except ImportError as exc:
    raise MissingExtra("azure", "azure", "openai") from exc

from gmai_client.backends._api import key_variable
from gmai_client.backends.families import Family, family_of
from gmai_client.backends.openai import OpenAIChat, OpenAIChatOptions
from gmai_client.backends.token_rules import openai_image_tokens
from gmai_client.options import option
from gmai_client.types import Response

#: The last dated GA version of the deployments path (inference), the default api-version.
DEFAULT_API_VERSION = "2024-10-21"
#: The scope of an Entra ID token for Azure OpenAI.
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
AD_TOKEN_ENV = "AZURE_OPENAI_AD_TOKEN"  # the SDK's own variable
_RETRY_IN_MESSAGE = re.compile(r"retry after (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)


@dataclass(frozen=True)
class AzureOptions(OpenAIChatOptions):
    base_url: str = option(
        "", "the resource endpoint https://RESOURCE.openai.azure.com, same as @URL in the spec",
        default_text="$AZURE_OPENAI_ENDPOINT",
    )  # fmt: skip
    api_key_env: str = key_variable("AZURE_OPENAI_API_KEY")
    api_version: str = option(
        "", "the Azure OpenAI API version (the api-version query)",
        default_text=f"$OPENAI_API_VERSION, else {DEFAULT_API_VERSION}",
    )  # fmt: skip
    model: str = option(
        "", "the model the deployment serves (gpt-4o, ...): prices, image tokens and model rules follow it",
        neutral=True, default_text="the deployment's name",
    )  # fmt: skip


class AzureBackend(OpenAIChat):
    """Azure OpenAI: a deployment of an OpenAI model, by api-key or Microsoft Entra ID."""

    name = "azure"
    Options = AzureOptions
    default_endpoint = ""  # no default: every resource has its own
    endpoint_env = "AZURE_OPENAI_ENDPOINT"
    root_hint = "the resource's https://RESOURCE.openai.azure.com, without /openai"

    def __init__(self, model: str, *, endpoint: str = "", options: Any = None):
        super().__init__(model, endpoint=endpoint, options=options)
        version = self.options.api_version or os.environ.get("OPENAI_API_VERSION", "").strip()
        self.api_version = version or DEFAULT_API_VERSION
        self._credential: Any = None  # azure-identity's, closed with the client

    @classmethod
    def check_endpoint(cls, endpoint: str, source: str) -> None:
        if not endpoint:
            raise ConfigError(
                "azure: no resource endpoint: give azure:DEPLOYMENT@https://RESOURCE.openai.azure.com, "
                "base_url=, or set AZURE_OPENAI_ENDPOINT"
            )
        if urlsplit(endpoint).username is not None:  # httpx refuses them beside the SDK's own credential
            raise ConfigError(
                "azure: credentials in the endpoint URL are not how Azure OpenAI authenticates: give the key in "
                "AZURE_OPENAI_API_KEY (or -B api_key_env=NAME), or an Entra ID token, and the URL without them"
            )
        if "/openai" in endpoint.lower():
            where = f"{cls.endpoint_env}={endpoint}" if source == cls.endpoint_env else f"base URL {endpoint}"
            raise ConfigError(
                f"azure: {where} must be the resource endpoint without /openai "
                "(the SDK adds /openai/deployments/DEPLOYMENT)"
            )

    @property
    def served_model(self) -> str:
        """The model behind the deployment (``-B model=``), else the deployment's name."""
        return self.options.model or self.model

    @cached_property
    def family(self) -> Family:
        """OpenAI's rules for the model the deployment serves (a deployment's own name is no model's)."""
        return family_of("openai", self.served_model)

    @property
    def url(self) -> str:
        """What each request is posted to."""
        return f"{self.endpoint}/openai/deployments/{self.model}/chat/completions?api-version={self.api_version}"

    def identity(self) -> Mapping[str, str]:
        return {**super().identity(), "api_version": self.api_version, "url": self.url}

    def limit_scope(self) -> tuple[str, ...]:
        return (self.name, f"{self.endpoint}/openai/deployments/{self.model}", self.api_key_env)

    def image_tokens(self, width: int, height: int) -> int:
        return openai_image_tokens(width, height, model=self.served_model, detail=self.detail or "auto")

    # ---------------------------------------------------------------- the client and its credentials

    async def start(self) -> None:
        if self._client is not None:
            return
        auth = await self._auth()
        self._client = openai.AsyncAzureOpenAI(
            azure_endpoint=self.endpoint,
            azure_deployment=self.model,
            api_version=self.api_version,
            max_retries=0,
            timeout=self.timeout,
            http_client=self.http_client(),
            **auth,
        )

    async def _auth(self) -> dict[str, Any]:
        """The client's credential argument: a key, a static Entra token, or a token provider."""
        key = os.environ.get(self.api_key_env, "").strip() if self.api_key_env else ""
        if key:
            register_secret(key)
            return {"api_key": key}
        token = os.environ.get(AD_TOKEN_ENV, "").strip()
        if token:
            register_secret(token)
            return {"azure_ad_token": token}
        try:
            from azure.identity.aio import DefaultAzureCredential
        except ImportError:
            raise AuthError(
                f"azure: no credentials for {self.endpoint}: set {self.api_key_env or 'AZURE_OPENAI_API_KEY'} "
                f"(or name another variable with api_key_env=NAME), set {AD_TOKEN_ENV}, or install azure-identity "
                "for Microsoft Entra ID: pip install 'gmai-client[azure]'"
            ) from None
        self._credential = DefaultAzureCredential()
        provider = self._token_provider
        await provider()  # no token to be had is an AuthError now, not one per item
        return {"azure_ad_token_provider": provider}

    async def _token_provider(self) -> str:
        """An Entra ID token from azure-identity (cached and refreshed by it), registered as a secret."""
        from azure.core.exceptions import ClientAuthenticationError

        try:
            token = (await self._credential.get_token(ENTRA_SCOPE)).token
        except ClientAuthenticationError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AuthError(f"azure: no Microsoft Entra ID token for {self.endpoint}: {first}") from None
        register_secret(token)
        return token

    async def close(self) -> None:
        await super().close()
        credential, self._credential = self._credential, None
        if credential is not None:
            await credential.close()

    # ---------------------------------------------------------------- what Azure adds to OpenAI's answers

    def read_reply(self, reply: Any) -> Response:
        response = super().read_reply(reply)
        if response.finish_reason == "filtered":
            results = getattr(reply.choices[0], "content_filter_results", None)
            raise ContentFiltered(f"azure: the answer was filtered by the deployment's content filter{_why(results)}")
        return response

    def map_error(self, exc: Any) -> BackendError:
        error = super().map_error(exc)
        if not isinstance(exc, openai.APIStatusError):
            return error
        body = exc.body if isinstance(exc.body, Mapping) else {}
        if exc.code == "content_filter" or (body.get("innererror") or {}).get("code") == "ResponsibleAIPolicyViolation":
            results = (body.get("innererror") or {}).get("content_filter_result")
            return ContentFiltered(
                f"azure: HTTP {exc.status_code} content_filter: the prompt was filtered by the deployment's "
                f"content filter{_why(results)}",
                status=exc.status_code,
            )
        retry_after = getattr(error, "retry_after", False)
        if retry_after is None:  # a 429/5xx without Retry-After: Azure's message names the wait
            said = _RETRY_IN_MESSAGE.search(str(body.get("message") or ""))
            if said:
                error.retry_after = float(said.group(1))
        return error


def _why(results: Any) -> str:
    """" (filtered: violence, hate)" from Azure's content_filter_result(s) object, else ""."""
    if not isinstance(results, Mapping):
        return ""
    names = [name for name, verdict in results.items() if isinstance(verdict, Mapping) and verdict.get("filtered")]
    return f" (filtered: {', '.join(sorted(names))})" if names else ""
