"""One error tree for the whole client. Backends map vendor errors onto it; ``retry`` reads it.

    GmaiError
    ├── DataError            a row or image the reader cannot use (names file, row, index, field)
    ├── SelectionError       an unknown lexical-tree name (lists the closest valid names)
    ├── ConfigError          a bad option, spec or file argument
    ├── MissingExtra         an optional dependency is not installed (says which pip extra)
    ├── CacheError           the response cache file is corrupt or unreadable (``cache stats``/``explain``)
    └── BackendError
        ├── RetryableError   worth another attempt later; may carry the server's retry hint
        │   ├── RateLimited      429 / RESOURCE_EXHAUSTED with a rate (not quota) reason
        │   ├── Overloaded       503 / 529 / queue full / UNAVAILABLE: back-pressure
        │   ├── ServerError      other 5xx, malformed or empty bodies
        │   ├── RequestTimeout   no answer within the attempt's timeout
        │   ├── ConnectionLost   reset, refused, closed mid-response
        │   │   └── ConnectFailed    no connection could be opened at all (refused, unknown host)
        │   └── DeadlineExceeded a wait (a rate-limit pause) would outlast the item's deadline
        └── FatalError       the same request will fail again
            ├── AuthError        401 / 403          (stops the model's run)
            ├── QuotaExhausted   insufficient_quota (stops the model's run)
            ├── ModelNotFound    404 on the model   (stops the model's run)
            ├── EndpointUnreachable  no attempt was ever answered (stops the model's run)
            ├── BudgetExhausted  the run's token budget is spent (stops every model)
            ├── BadRequest       400 / 413 / 422
            ├── UnsupportedInput input the model cannot take (too many images, wrong format)
            └── ContentFiltered  a provider's content filter blocked the prompt or the answer

Messages never contain API keys: ``redact`` is applied to every message built from vendor text.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import threading
import urllib.request
from urllib.parse import unquote, urlsplit


class GmaiError(Exception):
    """Base of every error the client raises on purpose."""


class DataError(GmaiError):
    def __init__(self, message: str, *, file: str = "", row: int = 0, index: str = "", field: str = ""):
        self.file, self.row, self.index, self.field = file, row, index, field
        where = ", ".join(
            part
            for part in (
                file,
                f"row {row}" if row else "",
                f"index {index}" if index else "",
                f"field {field!r}" if field else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class SelectionError(GmaiError):
    pass


class ConfigError(GmaiError):
    pass


class MissingExtra(GmaiError, ImportError):
    def __init__(self, backend: str, extra: str, missing: str):
        self.backend, self.extra = backend, extra
        super().__init__(
            f"backend {backend!r} needs {missing!r}, which is not installed: pip install 'gmai-client[{extra}]'"
        )


class CacheError(GmaiError):
    """The cache file cannot be inspected. A run never sees this: it moves a corrupt file aside."""


class BackendError(GmaiError):
    """An error met while calling a model. ``kind`` is a short stable label for records."""

    kind = "backend"
    stops_model = False  # True: no later request to this model can succeed either

    def __init__(self, message: str, *, status: int | None = None):
        self.status = status
        super().__init__(redact(message))


class RetryableError(BackendError):
    kind = "retryable"

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message, status=status)
        self.retry_after = retry_after  # seconds the server asked us to wait, if it said


class RateLimited(RetryableError):
    kind = "rate_limited"


class Overloaded(RetryableError):
    kind = "overloaded"


class ServerError(RetryableError):
    kind = "server_error"


class RequestTimeout(RetryableError):
    kind = "timeout"


class ConnectionLost(RetryableError):
    kind = "connection"


class ConnectFailed(ConnectionLost):
    """No connection could be opened (refused, unknown host, no route): nothing reached the server.

    Retryable like any lost connection; ``dispatch`` stops the model when an endpoint that never
    answered keeps failing this way (``EndpointUnreachable``)."""


class DeadlineExceeded(RetryableError):
    """The item's deadline would pass while waiting to send (a long rate-limit pause): the item
    fails now instead of stalling the run; a later ``--retry-errors`` sends it again."""

    kind = "deadline"


class FatalError(BackendError):
    kind = "fatal"


class AuthError(FatalError):
    kind = "auth"
    stops_model = True


class QuotaExhausted(FatalError):
    kind = "quota"
    stops_model = True


class ModelNotFound(FatalError):
    kind = "model_not_found"
    stops_model = True


class EndpointUnreachable(FatalError):
    """Every attempt to an endpoint failed to connect or timed out over a short window, and none
    ever got an answer: a wrong URL, host or port, a server that is not running, one that takes
    connections and sends nothing back, or a proxy in the way. Stops the model at once, where
    retries would grind through every item (an endpoint that answered before and then drops is
    retried instead)."""

    kind = "unreachable"
    stops_model = True


class BudgetExhausted(FatalError):
    """The run's token budget is spent: nothing more is sent (raised before sending)."""

    kind = "budget"
    stops_model = True


class BadRequest(FatalError):
    kind = "bad_request"


class UnsupportedInput(FatalError):
    kind = "unsupported_input"


class ContentFiltered(FatalError):
    """The provider's content filter blocked the prompt or the answer (Azure OpenAI's
    ``content_filter``): the same request is blocked again, so it is not retried, and its record
    says so (kind ``content_filter``) rather than passing for an unreadable answer."""

    kind = "content_filter"


_CONNECT_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EHOSTDOWN}
)


def is_connect_failure(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) says no connection could be opened at all: refused,
    unknown host, no route. Backends use it to raise ``ConnectFailed`` rather than ``ConnectionLost``.

    The socket error at the bottom of the chain decides when there is one: HTTP transports wrap a
    reset of an open connection in their "connect" error types too (the SDKs' aiohttp transport does).
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    if any(isinstance(error, socket.gaierror) for error in chain):
        return True
    socket_errors = [error for error in chain if isinstance(error, OSError) and error.errno is not None]
    if socket_errors:
        return any(error.errno in _CONNECT_ERRNOS for error in socket_errors)
    return any(type(error).__name__ == "ConnectError" for error in chain)  # httpx's and httpcore's


def proxy_for(url: str) -> str:
    """The proxy that requests to ``url`` go through, as "<proxy URL> (<its variable>)", or "" when
    none does: the ``*_PROXY`` variables and ``NO_PROXY``, read as the HTTP clients read them. A
    connection failure then names the proxy, which is what failed, rather than blame the endpoint."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    scheme = parts.scheme.lower()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):
        return ""
    names = (f"{scheme}_proxy", "all_proxy") if proxies.get(scheme) == proxy else ("all_proxy",)
    variable = next((name for name in os.environ if name.lower() in names and os.environ[name] == proxy), names[0])
    return f"{redact_url(proxy)} ({variable})"


# Environment variables whose values are secrets wherever they appear: the standard ones
# (OPENAI_API_KEY, ANTHROPIC_API_KEY, AZURE_OPENAI_API_KEY, HF_TOKEN, ...) and any other whose name
# says so (the words of ``config.is_secret_option``). A key in a variable named otherwise
# (``api_key_env=MY_CRED``) is known by its value, registered by the backend that read it.
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
# Shapes of common API keys, for text that reached us from elsewhere (vendor error bodies).
_KEY_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|sk-ant-[A-Za-z0-9_\-]{8,}|hf_[A-Za-z0-9]{8,})")
#: Shorter values are not treated as secrets: redacting "abc" would maim every text that holds it.
MIN_SECRET_LENGTH = 6
_ENV_MIN_LENGTH = 8  # a secret-looking variable may hold a flag or a path: only values this long
REDACTED = "[REDACTED]"


class _Secrets:
    """Every value ``redact`` removes: the keys the run read, and secret-looking variables' values.

    The environment is scanned again only when it changed (a cheap comparison of its mapping), and
    the values are matched by one compiled pattern, rebuilt only when they change: ``redact`` runs
    on every answer and every record.
    """

    def __init__(self) -> None:
        self.registered: set[str] = set()
        self._lock = threading.Lock()  # redact also runs in worker threads (the cache's, the readers')
        self._environ: dict | None = None
        self._from_env: frozenset[str] = frozenset()
        self._values: frozenset[str] | None = None
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        with self._lock:
            self.registered.add(value)

    def values(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self.registered) | self._from_env_locked()

    def _from_env_locked(self) -> frozenset[str]:
        data = getattr(os.environ, "_data", None)  # CPython's raw mapping; scan every time without it
        if data is None or data != self._environ:
            self._environ = dict(data) if data is not None else None
            self._from_env = frozenset(
                v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= _ENV_MIN_LENGTH
            )
        return self._from_env

    def pattern(self) -> re.Pattern[str] | None:
        with self._lock:
            return self._pattern_locked()

    def _pattern_locked(self) -> re.Pattern[str] | None:
        values = frozenset(self.registered) | self._from_env_locked()
        if values != self._values:
            self._values = values
            # Longest first: a key that contains another is replaced whole.
            ordered = sorted(values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        return self._pattern


_SECRETS = _Secrets()


def register_secret(value: str | None) -> None:
    """Make ``redact`` remove this exact value from every text from now on, whatever variable it
    came from. Every backend calls it with each API key it reads (a judge's backend included)."""
    if value is None:
        return
    value = value.strip()
    if len(value) >= MIN_SECRET_LENGTH:
        _SECRETS.add(value)


def secret_values() -> list[str]:
    """Every value ``redact`` removes: registered keys and secret-looking environment variables."""
    return sorted(_SECRETS.values())


# Credentials written into a URL: its user information (``//user:password@``) and the values of
# query parameters whose names say they hold one (``?api-key=``, ``?key=``, ``&access_token=``,
# ``&sig=``). A value ends where the parameter does, or at a comma (several endpoints in one spec).
_URL_USERINFO = re.compile(r"(?<=://)([^\s/?#@]+)@")
_URL_SECRET_QUERY = re.compile(
    r"(?<=[?&;])([\w.\-]*(?:key|token|secret|password|passwd|pwd|sig|signature|credential|auth)[\w.\-]*=)"
    r"([^&#\s\"'<>,]+)",
    re.IGNORECASE,
)


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``[REDACTED]``: the user
    information, and secret-looking query parameters' values (the rest of the URL is kept, so it
    still says where requests went). What ``redact`` applies too; the one function used wherever an
    endpoint is shown or stored (identities, config.json, messages), never on the URL sent."""
    if "@" in text:
        text = _URL_USERINFO.sub(REDACTED + "@", text)
    if "=" in text:
        text = _URL_SECRET_QUERY.sub(rf"\1{REDACTED}", text)
    return text


def register_url_secrets(url: str) -> None:
    """Register the credentials written into ``url`` (see ``redact_url``) with ``register_secret``,
    so that a server echoing one outside a URL (an error body) is redacted too."""
    for userinfo in _URL_USERINFO.findall(url):
        for part in userinfo.split(":", 1):
            register_secret(unquote(part))
    for _, value in _URL_SECRET_QUERY.findall(url):
        register_secret(unquote(value))
        register_secret(value)


def redact(text: str, extra_secrets: tuple[str, ...] = ()) -> str:
    """Remove API keys from text: known secret values first, then anything shaped like a key, then
    the credentials of any URL (``redact_url``)."""
    if not text:
        return text
    for secret in extra_secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    pattern = _SECRETS.pattern()
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return redact_url(_KEY_SHAPES.sub(REDACTED, text))
