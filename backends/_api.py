"""What the HTTP API backends (OpenAI, Anthropic) share: keys, options, and the status -> error map.

Owns one table from an HTTP status (plus the vendor's error type/code) to ``gmai_client.errors``,
so the two vendors cannot drift apart on what is retryable; each backend only says how its SDK
exposes status, headers, type, code and message. No vendor SDK is imported here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from gmai_client.backends._hints import retry_after_seconds
from gmai_client.config import ModelSpec
from gmai_client.errors import (
    AuthError,
    BackendError,
    BadRequest,
    ConfigError,
    ModelNotFound,
    Overloaded,
    QuotaExhausted,
    RateLimited,
    RequestTimeout,
    ServerError,
    UnsupportedInput,
    register_secret,
)
from gmai_client.images import prepare_images
from gmai_client.types import Image, Request

#: What both vendors accept as image data (others are re-encoded by the caller or refused).
API_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp")
DEFAULT_TIMEOUT = 120.0


def common_options(key_env: str) -> dict[str, str]:
    """Help text of the options every HTTP API backend takes (``backends`` lists them)."""
    return {
        "api_key_env": f"environment variable holding the API key (default {key_env}; "
        "a self-hosted base_url needs none)",
        "max_image_side": "downscale images whose longer side exceeds this many pixels (default: as is)",
        "timeout": "seconds to wait for each phase of one attempt: connect, send, answer "
        f"(default {DEFAULT_TIMEOUT:g})",
    }


#: The key placeholder for self-hosted OpenAI-compatible servers, which need no key but whose
#: SDK client refuses to be built without one.
NO_KEY = "EMPTY"

# A 4xx whose text is about images means the input, not the request shape, is what the model refuses.
_IMAGE_PROBLEM = re.compile(
    r"\bimages?\b|image_url|image_parse|multi-?modal|\bvision\b|media[_ ]type|too many image", re.IGNORECASE
)
_WHITESPACE = re.compile(r"\s+")


def float_option(spec: ModelSpec, name: str, default: float | None, *, minimum: float = 0.0) -> float | None:
    raw = spec.option(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{spec.backend}: option {name}={raw!r} is not a number") from None
    if value <= minimum:
        raise ConfigError(f"{spec.backend}: option {name} must be greater than {minimum:g}, got {raw}")
    return value


def int_option(spec: ModelSpec, name: str, default: int | None, *, minimum: int = 1) -> int | None:
    raw = spec.option(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{spec.backend}: option {name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{spec.backend}: option {name} must be at least {minimum}, got {raw}")
    return value


def choice_option(spec: ModelSpec, name: str, choices: Iterable[str], default: str | None) -> str | None:
    raw = spec.option(name)
    if raw is None or raw == "":
        return default
    allowed = tuple(choices)
    if raw not in allowed:
        raise ConfigError(f"{spec.backend}: option {name}={raw!r}; choose one of {', '.join(allowed)}")
    return raw


def endpoint_of(spec: ModelSpec, default: str, env_var: str = "") -> tuple[str, str]:
    """(endpoint URL without a trailing slash, where it came from), in this order: the spec's
    ``@URL`` or ``base_url=`` option, then the SDK's own variable ``env_var`` (``OPENAI_BASE_URL``,
    ``ANTHROPIC_BASE_URL``: what proxies, gateways and local servers are set up with), then the
    vendor's ``default``. The source is "spec", the variable's name, or "default"."""
    option = (spec.option("base_url") or "").strip()
    given = spec.endpoint.strip()
    if option and given and option.rstrip("/") != given.rstrip("/"):
        raise ConfigError(f"{spec.backend}: the spec says @{given} but base_url={option}; give one of them")
    url, source = (given or option).rstrip("/"), "spec"
    if not url and env_var:
        url, source = os.environ.get(env_var, "").strip().rstrip("/"), env_var
    if not url:
        return default, "default"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        where = f"{env_var}={url!r}" if source == env_var else f"base URL {url!r}"
        raise ConfigError(f"{spec.backend}: {where} must look like http(s)://host[:port][/path]")
    return url, source


def resolve_key(env_var: str, endpoint: str, vendor_hosts: Iterable[str], backend: str) -> str:
    """The API key from ``env_var``, registered with ``errors.register_secret``. A self-hosted
    endpoint needs none (``NO_KEY`` is sent); the vendor's own endpoint without a key is an
    AuthError now rather than a 401 per item later."""
    key = os.environ.get(env_var, "").strip()
    if key:
        register_secret(key)  # whatever the variable's name, its value never reaches an output
        return key
    host = (urlsplit(endpoint).hostname or "").lower()
    if host in {h.lower() for h in vendor_hosts}:
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
