"""The backend contract: what a model backend must do, and the abilities it may add.

A backend translates a ``Request`` into a wire format (an HTTP API, a Triton model, a local
torch model, ...), the reply into a ``Response``, and the vendor's failures into
``gmai_client.errors``. It sets no policy: no sleeps, no retries, no rate limits, no cache
(``retry``, ``limiter``, ``cache`` and ``dispatch`` wrap it and own those).

Required::

    name                      the registry name ("openai"), also the part of the spec before ":"
    identity()                what, besides the request, decides the answer: model, endpoint and
                              the options that change what the model sees (never a secret); it
                              is part of the cache key and of the run folder's identity
    generate(request)         one attempt: a Response, or a BackendError (a refusal is a Response)

Optional, with the defaults written here::

    Options                   a frozen ``BackendOptions`` dataclass: the ``-B key=value`` options,
                              parsed and checked by ``gmai_client.options`` (default: none)
    from_spec(spec, seed=)    build from ``name:target@endpoint`` and its options
                              (default: ``cls(spec, options, seed=seed)``)
    preflight()               refuse at once a configuration that cannot work (a ConfigError:
                              the vendor's API without a key), before any folder is made or
                              anything sent (default: nothing to check)
    start() / close()         connect and check readiness / let go (default: nothing to do)
    cacheable()               whether answers may be kept in the response cache (default True;
                              a local baseline that costs nothing says False)
    limit_scope()             what one rate-limit budget is shared by: backend, endpoint and the
                              name of the key's variable, never the key (default: no key)
    placement()               figures of a backend that spreads its requests, per endpoint or
                              actor, for metrics.json (default: none)
    estimate_input_tokens(r)  input tokens ``r`` will be billed for, before it is sent (default:
                              four characters a token and a flat cost per image)
    output_bound(r)           the most output tokens ``r`` may be billed for, thinking included
                              (default: its ``max_tokens``; a reasoning model's may be larger)
    answer_neutral_options    option names that cannot change an answer, besides those marked
                              ``neutral`` in ``Options`` (a run folder's identity leaves them out)
    requires                  packages the backend imports only when a model is built, each
                              with the pip extra that installs it: ``backends`` finds them
                              without importing them (default: none)

A backend written to the earlier, duck-typed protocol (the same methods, and ``cacheable`` /
``api_key_env`` / ``placement`` as plain attributes) still works: ``as_backend`` wraps it.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from gmai_client.config import ModelSpec
from gmai_client.errors import ConfigError
from gmai_client.options import POLICY_OPTIONS, BackendOptions, NoOptions, parse_options
from gmai_client.types import Request, Response

#: The rough rule for text when a provider's tokenizer is not at hand: four characters a token.
CHARS_PER_TOKEN = 4
#: What an image is assumed to cost when its provider's rule is unknown (OpenAI's 1024 px image).
DEFAULT_IMAGE_TOKENS = 765


def text_tokens(text: str) -> int:
    """Tokens of ``text`` by the four-characters rule (0 for no text)."""
    return len(text) // CHARS_PER_TOKEN + 1 if text else 0


class Backend(abc.ABC):
    """A model endpoint (see the module docstring for the contract and its defaults)."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[BackendOptions]] = NoOptions
    answer_neutral_options: ClassVar[frozenset[str]] = frozenset()
    requires: ClassVar[Mapping[str, str]] = MappingProxyType({})  # import name -> pip extra

    # ---------------------------------------------------------------- building

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, seed: int = 0) -> Backend:
        """The backend a spec names. Override it when the constructor is not ``(spec, options, seed=)``."""
        return cls(spec, cls.parse_options(spec), seed=seed)  # type: ignore[call-arg]

    @classmethod
    def parse_options(cls, spec: ModelSpec) -> Any:
        """The spec's options as ``cls.Options`` (the client's own per-model options passed over)."""
        return parse_options(
            cls.Options,
            spec.options,
            owner=spec.key or spec.backend,  # errors name the model as the user wrote it
            backend=cls.name or spec.backend,
            also=POLICY_OPTIONS,
        )

    # ---------------------------------------------------------------- required

    @abc.abstractmethod
    def identity(self) -> Mapping[str, str]:
        """What, besides the request, decides the answer: model and endpoint (never a secret)."""

    @abc.abstractmethod
    async def generate(self, request: Request) -> Response:
        """One attempt at ``request``: a Response, or a ``BackendError`` saying what went wrong."""

    # ---------------------------------------------------------------- optional abilities

    def preflight(self) -> None:  # noqa: B027 - an optional ability: nothing to check by default
        """Raise a ConfigError now for what no retry can fix (a missing key): a usage error."""

    async def start(self) -> None:  # noqa: B027 - an optional ability: nothing to do by default
        """Connect and check readiness; raise a FatalError with a clear message if not ready."""

    async def close(self) -> None:  # noqa: B027
        """Let go of connections, threads and models (called once the model's items are done)."""

    def cacheable(self) -> bool:
        """Whether answers may be kept in the response cache."""
        return True

    def limit_scope(self) -> tuple[str, ...]:
        """What one rate-limit budget is shared by: (backend, endpoint, key variable's name)."""
        identity = self.identity()
        return (identity.get("backend", self.name), identity.get("endpoint", ""), "")

    def placement(self) -> list[dict[str, Any]]:
        """Per-endpoint or per-actor figures of a backend that spreads its requests."""
        return []

    def estimate_input_tokens(self, request: Request) -> int:
        """Input tokens ``request`` will probably be billed for (budgets, rate limits, ``plan``)."""
        return text_tokens(request.system) + text_tokens(request.text) + DEFAULT_IMAGE_TOKENS * len(request.images)

    def output_bound(self, request: Request) -> int:
        """The most output tokens ``request`` may be billed for (budgets, rate limits, ``plan``)."""
        return request.params.max_tokens


def as_backend(obj: Any) -> Backend:
    """``obj`` itself when it is a ``Backend``; an object written to the earlier duck-typed
    protocol wrapped so that it answers the whole contract; anything else is a ConfigError."""
    if isinstance(obj, Backend):
        return obj
    missing = [method for method in ("identity", "generate") if not callable(getattr(obj, method, None))]
    if missing:
        raise ConfigError(f"{type(obj).__name__} is not a backend: it has no {' or '.join(missing)} method")
    return _Adapted(obj)


class _Adapted(Backend):
    """A duck-typed backend seen through the contract: its own methods where it has them,
    ``cacheable`` / ``api_key_env`` / ``placement`` read as the attributes they used to be."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.name = str(getattr(inner, "name", "") or "")  # type: ignore[misc]

    def __getattr__(self, attribute: str) -> Any:  # anything else the caller's object offers
        if attribute == "inner":  # not set yet (a copy being made): no recursion through it
            raise AttributeError(attribute)
        return getattr(self.inner, attribute)

    def identity(self) -> Mapping[str, str]:
        return self.inner.identity()

    async def generate(self, request: Request) -> Response:
        return await self.inner.generate(request)

    def preflight(self) -> None:
        if callable(getattr(self.inner, "preflight", None)):
            self.inner.preflight()

    async def start(self) -> None:
        if callable(getattr(self.inner, "start", None)):
            await self.inner.start()

    async def close(self) -> None:
        if callable(getattr(self.inner, "close", None)):
            await self.inner.close()

    def cacheable(self) -> bool:
        value = getattr(self.inner, "cacheable", True)
        return bool(value() if callable(value) else value)

    def limit_scope(self) -> tuple[str, ...]:
        backend, endpoint, _ = super().limit_scope()
        return (backend, endpoint, str(getattr(self.inner, "api_key_env", "") or ""))

    def placement(self) -> list[dict[str, Any]]:
        placement = getattr(self.inner, "placement", None)
        return list(placement()) if callable(placement) else []

    def estimate_input_tokens(self, request: Request) -> int:
        estimate = getattr(self.inner, "estimate_input_tokens", None)
        return int(estimate(request)) if callable(estimate) else super().estimate_input_tokens(request)

    def output_bound(self, request: Request) -> int:
        bound = getattr(self.inner, "output_bound", None)
        return int(bound(request)) if callable(bound) else super().output_bound(request)
