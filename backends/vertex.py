"""Claude on Google Vertex AI: rawPredict through the anthropic SDK's ``AsyncAnthropicVertex``.

Spec ``vertex:MODEL[@BASE_URL]``, e.g. ``vertex:claude-sonnet-4-5@20250929`` (Vertex's model ids carry
their version after ``@``; a spec's endpoint comes after the last ``@`` that starts a URL). Each
request is ``POST {base}/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict``
with a Bearer access token; the body is the Messages body ``AnthropicMessages`` writes, without
``model`` (the URL names it) and with ``anthropic_version`` (``-B anthropic_version=``, default
``vertex-2023-10-16``, the value Vertex documents).

Where, first found wins: the region is ``-B region=``, else ``CLOUD_ML_REGION`` (``global`` is
Vertex's global endpoint); the project ``-B project=``, ``ANTHROPIC_VERTEX_PROJECT_ID``,
``GOOGLE_CLOUD_PROJECT``, else the project of the Application Default Credentials; the API root
``@URL`` (or ``base_url=``), ``ANTHROPIC_VERTEX_BASE_URL``, else the region's
``https://REGION-aiplatform.googleapis.com/v1``. The run folder's identity holds the URL called.

Credentials: an access token in the variable ``-B api_key_env=`` names (``gcloud auth
print-access-token``; it expires within the hour), else Google's Application Default Credentials
(``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default login``, a metadata server),
refreshed by google-auth as they expire. Every token is registered as a secret as it is minted.

Errors: the Messages table (``anthropic.py``) by HTTP status. Vertex's own errors are Google's
(``{"error": {"code", "message", "status"}}``): 429 RESOURCE_EXHAUSTED is RateLimited (with the
RetryInfo delay when given), 401/403 AuthError, 404 (a model not enabled in that region) ModelNotFound,
503 UNAVAILABLE Overloaded; a token that cannot be had or refreshed is an AuthError. Regional
endpoints of the 4.5 models and later cost 10% more than ``global``: price them with ``-B price_in=``.

No batch API here (Vertex's batch prediction works from Cloud Storage, not wired in): ``--batch``
leaves a Vertex model live.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from gmai_client.errors import AuthError, BackendError, ConfigError, MissingExtra, register_secret

try:
    import anthropic
except ImportError as exc:
    raise MissingExtra("vertex", "vertex", "anthropic") from exc

from gmai_client.backends._api import Embed, VendorError, endpoint_of, short
from gmai_client.backends._google import google_error
from gmai_client.backends.anthropic import AnthropicMessages, AnthropicMessagesOptions
from gmai_client.config import ModelSpec
from gmai_client.options import option
from gmai_client.types import Image, Request

VERTEX_VERSION = "vertex-2023-10-16"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
_PROJECT_VARIABLES = ("ANTHROPIC_VERTEX_PROJECT_ID", "GOOGLE_CLOUD_PROJECT")


@dataclass(frozen=True)
class VertexOptions(AnthropicMessagesOptions):
    base_url: str = option(
        "", "the Vertex AI API root ending in /v1, same as @URL in the spec",
        default_text="$ANTHROPIC_VERTEX_BASE_URL, else https://REGION-aiplatform.googleapis.com/v1",
    )  # fmt: skip
    api_key_env: str = option(
        "", "environment variable holding an OAuth access token (gcloud auth print-access-token)",
        neutral=True, default_text="none: Application Default Credentials",
    )  # fmt: skip
    region: str = option("", "the Vertex AI region (or global)", default_text="$CLOUD_ML_REGION")
    project: str = option(
        "", "the Google Cloud project",
        default_text="$ANTHROPIC_VERTEX_PROJECT_ID, $GOOGLE_CLOUD_PROJECT, else the credentials' project",
    )  # fmt: skip
    anthropic_version: str = option(VERTEX_VERSION, "the body's anthropic_version")


class VertexBackend(AnthropicMessages):
    """Claude on Google Vertex AI (rawPredict), with Application Default Credentials or a token."""

    name = "vertex"
    Options = VertexOptions
    default_endpoint = ""  # per region: see from_spec
    endpoint_env = "ANTHROPIC_VERTEX_BASE_URL"
    root_hint = "https://REGION-aiplatform.googleapis.com/v1"
    requires = MappingProxyType({"google.auth": "vertex"})

    def __init__(self, model: str, *, endpoint: str = "", options: Any = None, region: str = "", project: str = ""):
        super().__init__(model, endpoint=endpoint, options=options)
        self.region, self.project = region, project
        self.path = (  # type: ignore[misc]
            f"/projects/{quote(project, safe='')}/locations/{quote(region, safe='')}"
            f"/publishers/anthropic/models/{quote(model, safe='@')}:rawPredict"
        )
        self._credentials: Any = None

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, seed: int = 0) -> VertexBackend:
        if not spec.target:
            raise ConfigError("vertex needs a model name: vertex:MODEL[@BASE_URL]")
        target, given = _versioned(spec.target, spec.endpoint)
        options = cls.parse_options(spec)
        region = (options.region or os.environ.get("CLOUD_ML_REGION", "")).strip()
        if not region:
            raise ConfigError("vertex: no region: give -B region= (or global), or set CLOUD_ML_REGION")
        endpoint, _ = endpoint_of(cls.name, given, options.base_url, _root(region), cls.endpoint_env)
        project = options.project or next(filter(None, map(os.environ.get, _PROJECT_VARIABLES)), "")
        return cls(target, endpoint=endpoint, options=options, region=region, project=project or _adc_project())

    @property
    def url(self) -> str:
        return f"{self.endpoint}{self.path}"

    def identity(self) -> Mapping[str, str]:
        identity = {**super().identity(), "region": self.region, "project": self.project, "url": self.url}
        identity["anthropic_version"] = self.options.anthropic_version
        return identity

    def limit_scope(self) -> tuple[str, ...]:
        return (self.name, self.url, "")

    # ---------------------------------------------------------------- the client and its credentials

    async def start(self) -> None:
        if self._client is not None:
            return
        variable = self.options.api_key_env
        token = os.environ.get(variable, "").strip() if variable else ""
        if variable and not token:
            raise AuthError(f"vertex: no access token in {variable} (set it, or drop api_key_env= to use ADC)")
        if token:
            register_secret(token)
            auth: dict[str, Any] = {"access_token": token}
        else:
            self._credentials = await asyncio.to_thread(_credentials)
            register_secret(self._credentials.token)
            auth = {"credentials": self._credentials}
        self._client = anthropic.AsyncAnthropicVertex(
            region=self.region, project_id=self.project, base_url=self.endpoint, max_retries=0,
            timeout=self.timeout, http_client=self.http_client(), **auth,
        )  # fmt: skip

    async def send(self, client: Any, request: Request, images: tuple[Image, ...]) -> Any:
        from google.auth.exceptions import GoogleAuthError

        try:
            return await super().send(client, request, images)
        except GoogleAuthError as exc:  # the SDK refreshes an expired token before sending
            raise AuthError(f"vertex: cannot refresh the Google access token: {short(exc, 200)}") from None
        finally:
            if self._credentials is not None:
                register_secret(self._credentials.token)  # a refreshed token, before any text holds it

    # ---------------------------------------------------------------- the wire format

    def request_body(self, request: Request, images: tuple[Image, ...], embed: Embed = str) -> dict[str, Any]:
        body = super().request_body(request, images, embed)
        del body["model"]  # the URL names it
        return {"anthropic_version": self.options.anthropic_version, **body}

    def vendor_error(self, exc: Any) -> VendorError:
        said = super().vendor_error(exc)
        google = google_error(exc.body)
        if google is None:  # Anthropic's own error shape, passed through
            return said
        return VendorError(short(google.message) or said.message, google.status or said.error_type, said.code)

    def map_error(self, exc: Any) -> BackendError:
        error = super().map_error(exc)
        google = google_error(exc.body) if isinstance(exc, anthropic.APIStatusError) else None
        if google is not None and google.retry_delay is not None and getattr(error, "retry_after", 0) is None:
            error.retry_after = google.retry_delay  # type: ignore[attr-defined]
        return error


def _versioned(target: str, endpoint: str) -> tuple[str, str]:
    """(model, endpoint) of a spec split at its first "@": Vertex's ids hold an "@" of their own
    (``claude-sonnet-4-5@20250929``), so what follows it is the model's version unless it is a URL."""
    version, _, rest = endpoint.partition("@")
    if version and "://" not in version:
        return f"{target}@{version}", rest
    return target, endpoint


def _root(region: str) -> str:
    """Vertex AI's API root for a region, as the SDK builds it."""
    if region == "global":
        return "https://aiplatform.googleapis.com/v1"
    if region in ("us", "eu"):
        return f"https://aiplatform.{region}.rep.googleapis.com/v1"
    return f"https://{region}-aiplatform.googleapis.com/v1"


def _adc_project() -> str:
    """The project of the Application Default Credentials (a ConfigError when there is none)."""
    try:
        import google.auth
        import google.auth.exceptions
    except ImportError as exc:
        raise MissingExtra("vertex", "vertex", "google-auth") from exc
    try:
        _, project = google.auth.default(scopes=[CLOUD_PLATFORM])
    except google.auth.exceptions.GoogleAuthError as exc:
        raise ConfigError(
            f"vertex: no project: give -B project= or set GOOGLE_CLOUD_PROJECT ({short(exc, 160)})"
        ) from None
    if not project:
        raise ConfigError("vertex: no project: give -B project= or set GOOGLE_CLOUD_PROJECT")
    return str(project)


def _credentials() -> Any:
    """Application Default Credentials with a fresh token (an AuthError when none can be had)."""
    import google.auth
    import google.auth.exceptions
    import google.auth.transport.requests

    try:
        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
        credentials.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.GoogleAuthError as exc:
        raise AuthError(
            "vertex: no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS, run gcloud auth application-default "
            f"login, or give an access token with api_key_env=NAME ({short(exc, 200)})"
        ) from None
    return credentials
