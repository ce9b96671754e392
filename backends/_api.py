"""What the HTTP API backends (OpenAI, Anthropic) share: the base class, keys, endpoints, options and errors.

``ApiBackend`` holds everything but the wire format: the endpoint (spec, ``base_url=``, the SDK's
own variable, the vendor's default), the key (from a variable, never a file or an argument),
``start``/``generate``/``close`` around the vendor's async SDK client (built with
``max_retries=0``: one ``generate`` is one HTTP request), and the mapping of the SDK's
exceptions, which both vendors' SDKs name alike (``APITimeoutError``, ``APIConnectionError``,
``APIResponseValidationError``, ``APIStatusError``). A vendor's module says only what differs:
how a request is written and an answer read, and what its error bodies hold (``VendorError``).

The table from an HTTP status (plus the vendor's error type/code) to ``gmai_client.errors`` is
here once, so the two vendors cannot drift apart on what is retryable. No vendor SDK is imported
here: each subclass names its SDK module in ``sdk``.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import ValidationError  # both vendors' SDKs are built on it

from gmai_client.backend import Backend
from gmai_client.backends._bodies import BODY_CHUNK as BODY_CHUNK
from gmai_client.backends._bodies import Embed as Embed
from gmai_client.backends._bodies import Holes as Holes
from gmai_client.backends._bodies import StreamedBody as StreamedBody
from gmai_client.backends._bodies import body_parts as body_parts
from gmai_client.backends._bodies import data_url as data_url
from gmai_client.backends._bodies import encode_body as encode_body
from gmai_client.backends._hints import retry_after_seconds
from gmai_client.backends.images import prepare_images
from gmai_client.backends.token_rules import estimate_tokens
from gmai_client.config import ModelSpec
from gmai_client.errors import (
    AuthError,
    BackendError,
    BadRequest,
    ConfigError,
    ConnectFailed,
    ConnectionLost,
    ModelNotFound,
    Overloaded,
    QuotaExhausted,
    RateLimited,
    RequestTimeout,
    ServerError,
    UnsupportedInput,
    is_connect_failure,
    proxy_for,
    redact_url,
    register_secret,
    register_url_secrets,
)
from gmai_client.options import BackendOptions, option
from gmai_client.types import Image, Request, Response

# What the SDKs let escape unwrapped when they parse a 2xx body lazily.
_UNREADABLE: tuple[type[Exception], ...] = (json.JSONDecodeError, ValidationError)

#: What both vendors accept as image data (others are re-encoded by the caller or refused).
API_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp")

#: The key placeholder for self-hosted OpenAI-compatible servers, which need no key but whose
#: SDK client refuses to be built without one.
NO_KEY = "EMPTY"

# A 4xx whose text is about images means the input, not the request shape, is what the model refuses.
_IMAGE_PROBLEM = re.compile(
    r"\bimages?\b|image_url|image_parse|multi-?modal|\bvision\b|media[_ ]type|too many image", re.IGNORECASE
)
_WHITESPACE = re.compile(r"\s+")


def _socket_error_in(exc: BaseException) -> OSError | None:
    """The socket error (not a timeout) somewhere in ``exc``'s chain of causes, if there is one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and not isinstance(current, TimeoutError) and current.errno is not None:
            return current
        current = current.__cause__ or current.__context__
    return None


def key_variable(default: str) -> Any:
    """The ``api_key_env`` option, defaulting to the variable the vendor's SDK reads."""
    return option(default, "environment variable holding the API key (a self-hosted base_url needs none)", neutral=True)


@dataclass(frozen=True)
class ApiOptions(BackendOptions):
    """The options every HTTP API backend takes (a vendor's class adds its own)."""

    base_url: str = option(
        "", "the API root, same as @URL in the spec", default_text="the SDK's variable, else the vendor's"
    )
    api_key_env: str = key_variable("")
    max_image_side: int | None = option(
        None, "downscale images whose longer side exceeds this many pixels", minimum=1, default_text="as is"
    )
    timeout: float = option(
        120.0, "seconds to wait for each phase of one attempt: connect, send, answer", above=0, neutral=True
    )


@dataclass(frozen=True)
class VendorError:
    """What a vendor's error body says: the message, its type and code, and whether the account
    (not the request rate) is exhausted."""

    message: str
    error_type: str | None = None
    code: str | None = None
    quota: bool = False


def endpoint_of(backend: str, given: str, base_url: str, default: str, env_var: str = "") -> tuple[str, str]:
    """(endpoint URL without a trailing slash, where it came from), in this order: the spec's
    ``@URL`` (``given``) or ``base_url=`` option, then the SDK's own variable ``env_var``
    (``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``: what proxies, gateways and local servers are set
    up with), then the vendor's ``default``. The source is "spec", the variable's name, or "default"."""
    option, given = base_url.strip(), given.strip()
    if option and given and option.rstrip("/") != given.rstrip("/"):
        raise ConfigError(f"{backend}: the spec says @{given} but base_url={option}; give one of them")
    url, source = (given or option).rstrip("/"), "spec"
    if not url and env_var:
        url, source = os.environ.get(env_var, "").strip().rstrip("/"), env_var
    if not url:
        return default, "default"
    register_url_secrets(url)  # a ``user:password@`` or ``?api-key=`` echoed by a server is redacted too
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        where = f"{env_var}={redact_url(url)!r}" if source == env_var else f"base URL {redact_url(url)!r}"
        raise ConfigError(f"{backend}: {where} must look like http(s)://host[:port][/path]")
    return url, source


def client_url(endpoint: str) -> tuple[str, dict[str, str]]:
    """The endpoint as an SDK client takes it: the base URL without its query, and the query's
    parameters, which the client adds to every request (``default_query``: an ``?api-key=`` a
    gateway asks for; left in the base URL, the SDK would append the request's path after it)."""
    parts = urlsplit(endpoint)
    if not parts.query:
        return endpoint, {}
    return parts._replace(query="", fragment="").geturl().rstrip("/"), dict(parse_qsl(parts.query))


def url_credentials(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its ``user:password@``, and the Basic ``Authorization`` header they make ({}
    without). An SDK that sends its own ``Authorization`` (OpenAI's bearer key) cannot have httpx
    add the URL's as well ("Cannot combine AUTHORIZATION header with ... credentials encoded in URL"):
    the URL's are sent in its place. Both parts are registered as secrets (never shown)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, {}
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    for secret in (password, token):
        register_secret(secret)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl(), {"Authorization": f"Basic {token}"}


def resolve_key(env_var: str, endpoint: str, vendor_endpoint: str, backend: str) -> str:
    """The API key from ``env_var``, registered with ``errors.register_secret``. A self-hosted
    endpoint needs none (``NO_KEY`` is sent); the vendor's own host (that of ``vendor_endpoint``)
    without a key is an AuthError now rather than a 401 per item later."""
    key = os.environ.get(env_var, "").strip()
    if key:
        register_secret(key)  # whatever the variable's name, its value never reaches an output
        return key
    if (urlsplit(endpoint).hostname or "").lower() == (urlsplit(vendor_endpoint).hostname or "").lower():
        raise AuthError(
            f"{backend}: no API key for {endpoint}: set the environment variable {env_var} "
            f"(or name another one with api_key_env=NAME)"
        )
    return NO_KEY


def check_mimes(images: Iterable[Image], supported: Iterable[str], backend: str) -> None:
    allowed = tuple(supported)
    for number, image in enumerate(images, 1):
        if image.mime not in allowed:
            raise UnsupportedInput(
                f"{backend}: image {number} is {image.mime}; this API takes {', '.join(allowed)} "
                f"(re-encode the data as PNG)"
            )


def short(text: object, limit: int = 300) -> str:
    """Vendor text fit for an error message: one line, bounded (an HTML error page can be long)."""
    flat = _WHITESPACE.sub(" ", str(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def status_error(
    *,
    backend: str,
    status: int,
    message: str,
    headers: Mapping[str, str] | None,
    error_type: str | None = None,
    code: str | None = None,
    quota: bool = False,
) -> BackendError:
    """The project error for an HTTP error status (see the table in the backends' docstrings).

    ``quota`` is the vendor-specific verdict that the account is out of money or quota (never
    retryable, whatever the status). The message carries the status, the vendor's type/code and
    message, never headers (they may echo credentials).
    """
    retry_after = retry_after_seconds(headers)
    label = "/".join(dict.fromkeys(part for part in (error_type, code) if part))  # dedup type == code
    what = f"{backend}: HTTP {status}" + (f" {label}" if label else "") + (f": {message}" if message else "")
    if quota:
        return QuotaExhausted(what, status=status)
    if error_type == "overloaded_error" or status in (503, 529):
        return Overloaded(what, status=status, retry_after=retry_after)
    if status == 429:
        return RateLimited(what, status=status, retry_after=retry_after)
    if status in (401, 403):
        return AuthError(what, status=status)
    if status == 404:
        return ModelNotFound(what, status=status)
    if status == 408:
        return RequestTimeout(what, status=status, retry_after=retry_after)
    if status >= 500:
        return ServerError(what, status=status, retry_after=retry_after)
    if _IMAGE_PROBLEM.search(message) or (code and "image" in code):
        return UnsupportedInput(what, status=status)
    return BadRequest(what, status=status)


async def prepared_images(request: Request, max_side: int | None) -> tuple[Image, ...]:
    """The request's images, downscaled to ``max_side`` when asked (off the event loop)."""
    try:
        return await prepare_images(request.images, max_side)
    except (OSError, ValueError) as exc:  # PIL cannot read the image it was asked to resize
        raise UnsupportedInput(f"cannot resize an image of item {request.item_index}: {exc}") from None


class ApiBackend(Backend):
    """An HTTP API model behind a vendor's async SDK; subclasses write the wire format.

    A subclass sets ``name``, ``Options`` (an ``ApiOptions``), ``sdk`` (the SDK module),
    ``default_endpoint`` (the vendor's API: no key for its host is an error, where a self-hosted
    server needs none), ``endpoint_env`` (the SDK's own variable for it), ``root_hint`` (what the
    API root looks like, for a 404) and ``reply_noun``, and writes ``make_client``, ``send``,
    ``read_reply`` and ``vendor_error``; ``advice`` and ``check_endpoint`` are optional.
    """

    Options: ClassVar[type[ApiOptions]] = ApiOptions
    sdk: ClassVar[Any]
    path: ClassVar[str]  # the request's path under the API root
    reply_type: ClassVar[Any]  # the SDK's model of an answer
    default_endpoint: ClassVar[str]
    endpoint_env: ClassVar[str]
    root_hint: ClassVar[str] = ""
    reply_noun: ClassVar[str] = "reply"
    # The body is sent as it is encoded (``StreamedBody``); False where the SDK must hold it whole
    # (a client that signs the body, as SigV4 does).
    streams_body: ClassVar[bool] = True

    def __init__(self, model: str, *, endpoint: str = "", options: ApiOptions | None = None):
        self.model = model
        self.endpoint = (endpoint or self.default_endpoint).rstrip("/")
        self.options: Any = options if options is not None else self.Options()
        self._client: Any = None
        self.check_options()  # a combination the model cannot take fails here, before anything is sent

    def check_options(self) -> None:
        """Refuse options this model cannot take together (``ConfigError``); nothing to check by default."""

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, seed: int = 0) -> ApiBackend:
        if not spec.target:
            raise ConfigError(f"{cls.name} needs a model name: {cls.name}:MODEL[@BASE_URL]")
        options = cls.parse_options(spec)
        given, default = spec.endpoint, cls.default_endpoint
        endpoint, source = endpoint_of(cls.name, given, options.base_url, default, cls.endpoint_env)
        cls.check_endpoint(endpoint, source)
        return cls(spec.target, endpoint=endpoint, options=options)

    @classmethod
    def check_endpoint(cls, endpoint: str, source: str) -> None:
        """Refuse an endpoint this vendor's SDK cannot use (nothing to check by default)."""

    @property
    def api_key_env(self) -> str:
        return str(self.options.api_key_env)

    @property
    def timeout(self) -> float:
        return float(self.options.timeout)

    @property
    def max_image_side(self) -> int | None:
        return self.options.max_image_side

    def identity(self) -> Mapping[str, str]:
        # Credentials in the URL are not part of what decides an answer, and the identity is shown
        # and stored (cache key, config.json, the start line): ``redact_url``. Requests use ``endpoint``.
        identity = {"backend": self.name, "model": self.model, "endpoint": redact_url(self.endpoint)}
        if self.max_image_side is not None:  # changes what the model sees, so the answer (and the cache key)
            identity["max_image_side"] = str(self.max_image_side)
        return identity

    def limit_scope(self) -> tuple[str, ...]:
        return (self.name, self.endpoint, self.api_key_env)

    def estimate_input_tokens(self, request: Request) -> int:
        return estimate_tokens(request, self.image_tokens, self.max_image_side)

    def image_tokens(self, width: int, height: int) -> int | None:
        """Tokens of one image of this size by the vendor's documented rule (None: no rule)."""
        return None

    # ---------------------------------------------------------------- the vendor's part

    def make_client(self, key: str) -> Any:
        """The SDK's async client, with ``max_retries=0`` and an explicit key and base URL."""
        raise NotImplementedError

    def request_body(self, request: Request, images: tuple[Image, ...], embed: Embed = str) -> dict[str, Any]:
        """``request`` in the vendor's wire format: the JSON body of one request (also a batch
        line's). Every image's data goes through ``embed``."""
        raise NotImplementedError

    def read_reply(self, reply: Any) -> Response:
        """The SDK's answer object as a Response (attribute errors become ServerError)."""
        raise NotImplementedError

    def vendor_error(self, exc: Any) -> VendorError:
        """What an ``APIStatusError`` of this vendor's SDK says."""
        raise NotImplementedError

    def advice(self, status: int, message: str) -> str:
        """A hint to append to a 4xx/5xx message (an option that would help), else ""."""
        return ""

    # ---------------------------------------------------------------- the shared part

    def preflight(self) -> None:
        """The vendor's own API without a key is a usage error now, not a model stopped once its
        folder is made (a self-hosted server needs none). A backend with its own ``start`` has
        its own ways to authenticate (cloud credentials): it checks them there."""
        if type(self).start is not ApiBackend.start:
            return
        try:
            resolve_key(self.api_key_env, self.endpoint, self.default_endpoint, self.name)
        except AuthError as exc:
            raise ConfigError(str(exc)) from None

    async def start(self) -> None:
        if self._client is None:
            key = resolve_key(self.api_key_env, self.endpoint, self.default_endpoint, self.name)
            self._client = self.make_client(key)

    def http_client(self) -> Any:
        """The SDK's aiohttp-backed HTTP client when aiohttp is installed (the SDKs' own option:
        2.5x less CPU per request than their default pool at 64 in flight), else None (default)."""
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            return None
        return self.sdk.DefaultAioHttpClient(timeout=self.timeout)

    async def send(self, client: Any, request: Request, images: tuple[Image, ...]) -> Any:
        """``request`` sent as a body encoded as it goes out (``StreamedBody``) through the SDK's own
        ``post``: its auth, base URL, headers and errors, without its per-request transform of the body."""
        holes = Holes()
        parts = body_parts(self.request_body(request, images, embed=holes), holes.pieces)
        body = StreamedBody(tuple(parts))
        headers = {"Content-Type": "application/json", "Content-Length": str(body.size)}
        content = body if self.streams_body else b"".join(part.encode() for part in parts)
        return await client.post(self.path, cast_to=self.reply_type, content=content, options={"headers": headers})

    async def generate(self, request: Request) -> Response:
        if self._client is None:
            await self.start()
        images = await prepared_images(request, self.max_image_side)
        check_mimes(images, API_MIMES, self.name)
        where = f"{self.name}: {self.endpoint}"
        try:
            reply = await self.send(self._client, request, images)
        except self.sdk.APIError as exc:
            raise self.map_error(exc) from None
        except _UNREADABLE as exc:
            raise ServerError(f"{where} answered with an unreadable body: {short(exc, 120)}") from None
        if isinstance(reply, str) or reply is None:  # a 2xx whose content type is not JSON: the raw text
            raise ServerError(f"{where} answered with a non-JSON body: {short(reply or '', 120)}")
        try:
            return self.read_reply(reply)
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            # Non-strict parsing builds objects from whatever came back; missing fields surface here.
            raise ServerError(f"{where} answered with a malformed {self.reply_noun} ({type(exc).__name__})") from None

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def map_error(self, exc: Any) -> BackendError:
        """An SDK exception as the project's error (see the table in the vendors' docstrings)."""
        sdk, where = self.sdk, self.endpoint
        if proxy := proxy_for(self.endpoint):  # what failed to connect or answer may be the proxy
            where += f" through the proxy {proxy}"
        # The SDKs' aiohttp transport reports every socket error (a reset, a refusal) as a connect
        # *timeout*: what failed is in the chain, and a socket error is a connection problem.
        if isinstance(exc, sdk.APITimeoutError) and _socket_error_in(exc) is None:
            return RequestTimeout(f"{self.name}: no answer from {where} within {self.timeout:g} s")
        if isinstance(exc, sdk.APIConnectionError):
            cause = _socket_error_in(exc) or exc.__cause__
            reason = type(cause).__name__ if cause is not None else "connection error"
            if cause is not None and str(cause):
                reason += f": {short(cause, 160)}"
            if is_connect_failure(exc):  # nothing reached the server: refused, unknown host, no route
                return ConnectFailed(f"{self.name}: cannot connect to {where} ({reason})")
            return ConnectionLost(f"{self.name}: connection to {where} failed ({reason})")
        if isinstance(exc, sdk.APIResponseValidationError):
            return ServerError(f"{self.name}: {where} answered with a body that does not fit the schema")
        if isinstance(exc, sdk.APIStatusError):
            said, status = self.vendor_error(exc), exc.status_code
            if status == 404:
                hint = f" (check the model name, and that {where} is the API root, {self.root_hint})"
            else:
                hint = self.advice(status, said.message)
            return status_error(
                backend=self.name,
                status=status,
                message=said.message + hint,
                headers=exc.response.headers,
                error_type=said.error_type,
                code=said.code,
                quota=said.quota,
            )
        return ServerError(f"{self.name}: {type(exc).__name__} from {where}")
