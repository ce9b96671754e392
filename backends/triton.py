"""Triton Inference Server backend: one KServe-v2 ``infer`` call per item, over HTTP or gRPC (asyncio).

Spec: ``triton:MODEL@HOST:PORT``, e.g. ``triton:llava@gpu-box:8001``. The protocol comes from the
``protocol`` option, else the URL scheme (``http://``, ``https://``, ``grpc://``, ``grpcs://``),
else the port (8001 -> gRPC, anything else -> HTTP). Without a port: Triton's 8000 (HTTP) or
8001 (gRPC), but 443 for an ``https://`` / ``grpcs://`` URL. Without an endpoint: ``localhost:8000``.

Model contract
--------------
The model must take one item per request (the server's dynamic batcher forms the batches)::

    input  prompt       BYTES  shape [1] per request ([-1, 1] with a batch dimension)
                               the prompt text, UTF-8 (a system prompt, if any, comes first,
                               followed by a blank line)
    input  image        BYTES  shape [1] per request ([-1, 1] batched)
                               the encoded image file, exactly the dataset's bytes (PNG for
                               GMAI-MMBench): never decoded or re-encoded by the client
    input  max_tokens   INT32  shape [1] per request, OPTIONAL (any integer type is accepted)
    input  temperature  FP32   shape [1] per request, OPTIONAL (any float type is accepted)
    output text         BYTES  shape [1] per request: the answer, UTF-8

Tensor names are options (``prompt_input``, ``image_input``, ``text_output``, ``max_tokens_input``,
``temperature_input``). An optional input the model does not declare is not sent, unless its
option was set explicitly (then it must exist); set it to an empty value never to send it. A
model whose image input has a variable last dimension (e.g. ``[-1, -1]`` batched) receives all
of an item's images in one tensor; otherwise an item must have exactly one image.
The contract has no seed, usage or finish reason: ``Response.usage`` is None and the finish
reason "stop". ``examples/serve_triton.py`` serves any transformers vision-language model this way.

``start()`` checks, naming the URL and the model in every message: that the server answers and
is live, that the model is ready (else lists the models the server has), and that the model's
metadata has the configured tensors with compatible datatypes and shapes, and no other required
input. Error mapping, so that ``retry`` can act: queue full, HTTP 503/429, gRPC UNAVAILABLE or
RESOURCE_EXHAUSTED -> ``Overloaded``; deadlines and client timeouts -> ``RequestTimeout``; refused
or reset connections -> ``ConnectionLost``; unknown model / 404 / NOT_FOUND -> ``ModelNotFound``;
400 / INVALID_ARGUMENT -> ``BadRequest``; 500 / INTERNAL and other server faults -> ``ServerError``.
"""

from __future__ import annotations

import asyncio
import re
import ssl as ssl_module
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gmai_client.config import ModelSpec
from gmai_client.errors import (
    AuthError,
    BackendError,
    BadRequest,
    ConfigError,
    ConnectionLost,
    EndpointUnreachable,
    FatalError,
    MissingExtra,
    ModelNotFound,
    Overloaded,
    RequestTimeout,
    ServerError,
    UnsupportedInput,
)
from gmai_client.types import Request, Response

try:
    import numpy as np
    from tritonclient.utils import InferenceServerException, triton_to_np_dtype
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra("triton", "triton", "tritonclient") from exc

# Each protocol needs its own half of tritonclient (aiohttp / grpcio); either alone is usable.
try:
    import aiohttp
    import tritonclient.http.aio as http_aio
except ImportError:  # pragma: no cover - depends on the environment
    aiohttp = None  # type: ignore[assignment]
    http_aio = None  # type: ignore[assignment]
try:
    import tritonclient.grpc.aio as grpc_aio
except ImportError:  # pragma: no cover - depends on the environment
    grpc_aio = None  # type: ignore[assignment]
if http_aio is None and grpc_aio is None:  # pragma: no cover
    raise MissingExtra("triton", "triton", "tritonclient[http,grpc]")

DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
DEFAULT_TIMEOUT_S = 300.0
START_TIMEOUT_S = 30.0  # the readiness checks are small calls: a silent host should fail fast

# Option -> (default tensor name, whether the input is optional in the contract).
_TENSOR_OPTIONS: dict[str, tuple[str, bool]] = {
    "prompt_input": ("prompt", False),
    "image_input": ("image", False),
    "max_tokens_input": ("max_tokens", True),
    "temperature_input": ("temperature", True),
}
_INT_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})

# Message fragments, lower-cased, that decide a kind whatever the status code says: Triton has
# answered queue-full as 400, 503 and UNAVAILABLE across versions and protocols.
_QUEUE_FULL = ("exceeds maximum queue size", "queue full", "queue is full", "maximum queue")
# Triton's words for a model it does not serve (any status: 400 over HTTP, various gRPC codes).
_UNKNOWN_MODEL = ("unknown model", "no available versions")
_CONNECTION = (
    "failed to connect",
    "connection refused",
    "connection reset",
    "socket closed",
    "broken pipe",
    "connection closed",
    "goaway",
)


class TritonUnreachable(EndpointUnreachable):
    """The server did not answer at start: wrong host/port/protocol, or it is not running. Stops
    the model before any item is sent. (Once started, a dropped connection is ``ConnectionLost``
    and retried: the server answered before.)"""


@dataclass(frozen=True)
class Endpoint:
    protocol: str  # "http" | "grpc"
    host: str
    port: int
    tls: bool
    path: str = ""  # HTTP only: a reverse proxy's prefix

    @property
    def address(self) -> str:
        """What tritonclient takes: host:port[/path], no scheme."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}{self.path}"

    @property
    def url(self) -> str:
        scheme = {("http", False): "http", ("http", True): "https", ("grpc", False): "grpc", ("grpc", True): "grpcs"}
        return f"{scheme[self.protocol, self.tls]}://{self.address}"


def parse_endpoint(endpoint: str, protocol: str = "", tls: bool | None = None) -> Endpoint:
    """``[scheme://]host[:port][/path]`` -> Endpoint; see the module docstring for the rules."""
    protocol = protocol.strip().lower()
    if protocol and protocol not in DEFAULT_PORTS:
        raise ConfigError(f"triton: protocol must be http or grpc, got {protocol!r}")
    text = endpoint.strip() or "localhost"
    scheme, sep, _ = text.partition("://")
    if sep:
        scheme = scheme.lower()
        by_scheme = {"http": ("http", False), "https": ("http", True), "grpc": ("grpc", False), "grpcs": ("grpc", True)}
        if scheme not in by_scheme:
            raise ConfigError(f"triton: unknown URL scheme {scheme!r} in {endpoint!r} (http, https, grpc, grpcs)")
        scheme_protocol, scheme_tls = by_scheme[scheme]
        if protocol and protocol != scheme_protocol:
            raise ConfigError(f"triton: protocol={protocol} contradicts the URL {endpoint!r}")
        protocol = scheme_protocol
        tls = scheme_tls if tls is None else tls or scheme_tls
        text = text[len(scheme) + 3 :]
    try:
        parts = urlsplit("//" + text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"triton: cannot read the endpoint {endpoint!r}: {exc}") from exc
    if not parts.hostname:
        raise ConfigError(f"triton: no host in the endpoint {endpoint!r}")
    if not protocol:
        protocol = "grpc" if port == DEFAULT_PORTS["grpc"] else "http"
    path = parts.path.rstrip("/")
    if path and protocol == "grpc":
        raise ConfigError(f"triton: a gRPC endpoint has no path: {endpoint!r}")
    if port is None:
        # An https:// or grpcs:// URL without a port points at a TLS proxy, not at Triton itself.
        port = 443 if sep and tls else DEFAULT_PORTS[protocol]
    return Endpoint(protocol, parts.hostname, port, bool(tls), path)


def _flag(value: str | None, name: str) -> bool | None:
    if value is None or value == "":
        return None
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"triton: option {name} must be true or false, got {value!r}")


@dataclass(frozen=True)
class _Input:
    name: str
    datatype: str  # as the model declares it
    dims: tuple[int, ...]  # as the model's metadata gives them, -1 for variable (or batch)

    def shape(self, count: int = 1) -> list[int]:
        # One request: the batch dimension (if any) is 1, a variable last dimension is ``count``.
        shape = [1 if dim == -1 else dim for dim in self.dims]
        if count != 1:
            shape[-1] = count
        return shape


@dataclass(frozen=True)
class _Plan:
    """What start() learnt from the model's metadata: the tensors to send and how."""

    prompt: _Input
    image: _Input
    multi_image: bool
    text_output: str
    max_tokens: _Input | None
    temperature: _Input | None


class TritonBackend:
    """A model on Triton Inference Server (KServe v2 over HTTP or gRPC), through a fixed tensor contract."""

    name = "triton"
    EXTRA = "triton"
    OPTIONS: Mapping[str, str] = {
        "model_version": "model version to call (default: the server's choice, usually the latest)",
        "protocol": "http or grpc (default: from the URL scheme, else port 8001 -> grpc, else http)",
        "timeout": f"seconds to wait for one answer (default {DEFAULT_TIMEOUT_S:g})",
        "ssl": "true to use TLS (https / grpcs); implied by https:// and grpcs:// URLs",
        "ssl_ca": "PEM file of the CA that signed the server's certificate (with TLS)",
        "prompt_input": "name of the BYTES input taking the UTF-8 prompt (default prompt)",
        "image_input": "name of the BYTES input taking the encoded image (default image)",
        "text_output": "name of the BYTES output holding the answer (default text)",
        "max_tokens_input": "name of the integer input taking max_tokens (default max_tokens; empty: never send)",
        "temperature_input": "name of the float input taking temperature (default temperature; empty: never send)",
    }

    def __init__(
        self,
        model: str,
        endpoint: Endpoint,
        *,
        version: str = "",
        timeout: float = DEFAULT_TIMEOUT_S,
        ssl_ca: str = "",
        tensors: Mapping[str, str] | None = None,
        explicit: frozenset[str] = frozenset(),
    ):
        if not model:
            raise ConfigError("triton needs a model name: triton:MODEL@HOST:PORT")
        if endpoint.protocol == "http" and http_aio is None:
            raise MissingExtra("triton", "triton", "tritonclient[http]")
        if endpoint.protocol == "grpc" and grpc_aio is None:
            raise MissingExtra("triton", "triton", "tritonclient[grpc]")
        if timeout <= 0:
            raise ConfigError(f"triton: timeout must be positive, got {timeout}")
        self.model = model
        self.endpoint = endpoint
        self.version = version
        self.timeout = timeout
        self.ssl_ca = ssl_ca
        names = {option: default for option, (default, _) in _TENSOR_OPTIONS.items()}
        names["text_output"] = "text"
        names.update(tensors or {})
        self.tensors = names
        self.explicit = explicit  # tensor options the user set: those inputs must exist
        self._client: Any = None
        self._plan: _Plan | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, seed: int = 0) -> TritonBackend:
        unknown = sorted(set(spec.options) - set(cls.OPTIONS))
        if unknown:
            raise ConfigError(f"triton: unknown option(s) {', '.join(unknown)}; known: {', '.join(cls.OPTIONS)}")
        endpoint = parse_endpoint(spec.endpoint, spec.option("protocol", "") or "", _flag(spec.option("ssl"), "ssl"))
        try:
            timeout = float(spec.option("timeout", "") or DEFAULT_TIMEOUT_S)
        except ValueError as exc:
            raise ConfigError(f"triton: timeout must be a number of seconds, got {spec.option('timeout')!r}") from exc
        tensor_options = ("prompt_input", "image_input", "text_output", "max_tokens_input", "temperature_input")
        tensors = {key: spec.options[key].strip() for key in tensor_options if key in spec.options}
        for key in ("prompt_input", "image_input", "text_output"):
            if key in tensors and not tensors[key]:
                raise ConfigError(f"triton: {key} cannot be empty: the contract needs it")
        return cls(
            spec.target,
            endpoint,
            version=spec.option("model_version", "") or "",
            timeout=timeout,
            ssl_ca=spec.option("ssl_ca", "") or "",
            tensors=tensors,
            explicit=frozenset(tensors),
        )

    @property
    def url(self) -> str:
        return self.endpoint.url

    def identity(self) -> Mapping[str, str]:
        return {"backend": self.name, "model": f"{self.model}:{self.version or 'latest'}", "endpoint": self.url}

    def _where(self) -> str:
        version = f" version {self.version}" if self.version else ""
        return f"model {self.model!r}{version} on {self.url}"

    # ---------------------------------------------------------------------------------- start

    def _make_client(self) -> Any:
        if self.endpoint.protocol == "http":
            context = None
            if self.endpoint.tls and self.ssl_ca:
                context = ssl_module.create_default_context(cafile=self.ssl_ca)
            # conn_limit=0: no pool cap, the runner's concurrency is the only limit.
            return http_aio.InferenceServerClient(
                self.endpoint.address,
                conn_limit=0,
                conn_timeout=self.timeout,
                ssl=self.endpoint.tls,
                ssl_context=context,
            )
        return grpc_aio.InferenceServerClient(
            self.endpoint.address,
            ssl=self.endpoint.tls,
            root_certificates=self.ssl_ca or None,
        )

    def _kw(self) -> dict[str, Any]:
        # gRPC takes a deadline per call; the HTTP session carries its own total timeout.
        return {"client_timeout": self.timeout} if self.endpoint.protocol == "grpc" else {}

    async def start(self) -> None:
        if self._client is None:
            self._client = self._make_client()
        limit = min(self.timeout, START_TIMEOUT_S)
        try:
            await asyncio.wait_for(self._check(), limit)
        except BaseException as exc:
            await self.close()  # a backend that failed to start holds no connection
            if isinstance(exc, asyncio.TimeoutError):
                raise TritonUnreachable(
                    f"Triton at {self.url} did not answer within {limit:g} s (checking {self._where()}): "
                    "is the host right and the port open?"
                ) from exc
            raise

    async def _check(self) -> None:
        try:
            live = await self._client.is_server_live(**self._kw())
        except Exception as exc:
            raise self._unreachable(exc) from exc
        if not live:
            raise FatalError(f"Triton at {self.url} answers but is not live (checking {self._where()})")
        try:
            server_ready = await self._client.is_server_ready(**self._kw())
            model_ready = await self._client.is_model_ready(self.model, self.version, **self._kw())
        except InferenceServerException as exc:
            # Some servers answer "unknown model" to a readiness question instead of "not ready".
            mapped = self._map(exc, "checking readiness")
            if not isinstance(mapped, ModelNotFound):
                raise mapped from exc
            server_ready, model_ready = True, False
        except Exception as exc:
            raise self._unreachable(exc) from exc
        if not model_ready:
            available = await self._available_models()
            listed = ", ".join(available) if available else "none"
            if available is None:
                listed = "unknown: the server lists no models (its repository index and statistics APIs are closed)"
            message = f"{self._where()} is not ready or not served (available: {listed})"
            if not server_ready:
                message += "; the server also reports itself not ready"
            raise ModelNotFound(message)
        try:
            metadata = await self._client.get_model_metadata(self.model, self.version, **self._json())
        except Exception as exc:
            raise self._map(exc, "reading the model's metadata") from exc
        config = await self._model_config()
        self._plan = self._make_plan(metadata, config)

    def _json(self) -> dict[str, Any]:
        return {"as_json": True, **self._kw()} if self.endpoint.protocol == "grpc" else {}

    def _unreachable(self, exc: BaseException) -> BackendError:
        if isinstance(exc, BackendError):
            return exc
        other = "grpc" if self.endpoint.protocol == "http" else "http"
        detail = _describe(exc)
        return TritonUnreachable(
            f"cannot reach Triton at {self.url} (for model {self.model!r}): {detail}. Is the server running, "
            f"and is {self.endpoint.port} its {self.endpoint.protocol} port? Triton listens on 8000 for "
            f"http and 8001 for grpc; protocol={other} or a {other}:// URL switches."
        )

    async def _available_models(self) -> list[str] | None:
        """Ready models by name: from the repository index, else from the statistics API."""
        names: set[str] = set()
        reachable = False
        try:
            index = await self._client.get_model_repository_index(**self._json())
            entries = index.get("models", []) if isinstance(index, Mapping) else index
            names |= {str(e["name"]) for e in entries if str(e.get("state", "READY")).upper() == "READY"}
            reachable = True
        except Exception:  # closed or unsupported: fall back to statistics
            pass
        if not names:
            # PyTriton loads models through the repository API, so its index is empty: the
            # statistics list every loaded model.
            try:
                stats = await self._client.get_inference_statistics(**self._json())
                names |= {str(s["name"]) for s in stats.get("model_stats", [])}
                reachable = True
            except Exception:
                pass
        return sorted(names) if reachable else None

    async def _model_config(self) -> Mapping[str, Any] | None:
        try:
            config = await self._client.get_model_config(self.model, self.version, **self._json())
        except Exception:  # the config API may be closed; metadata alone still allows the checks
            return None
        return config.get("config", config) if isinstance(config, Mapping) else None

    def _make_plan(self, metadata: Mapping[str, Any], config: Mapping[str, Any] | None) -> _Plan:
        def tensors(kind: str) -> dict[str, _Input]:
            return {
                str(t["name"]): _Input(str(t["name"]), str(t["datatype"]), tuple(int(d) for d in t.get("shape", [])))
                for t in metadata.get(kind, [])
            }

        inputs, outputs = tensors("inputs"), tensors("outputs")

        def listing(found: Mapping[str, _Input]) -> str:
            return ", ".join(f"{t.name} ({t.datatype} {list(t.dims)})" for t in found.values()) or "none"

        def find(option: str, allowed: frozenset[str], what: str) -> _Input | None:
            name = self.tensors[option]
            optional = _TENSOR_OPTIONS.get(option, ("", False))[1]
            if not name:
                return None
            pool = outputs if option == "text_output" else inputs
            kind = "output" if option == "text_output" else "input"
            if name not in pool:
                if optional and option not in self.explicit:
                    return None  # the model does not take it: the contract allows that
                raise FatalError(
                    f"{self._where()} has no {kind} {name!r} for the {what} (its {kind}s: {listing(pool)}); "
                    f"set {option}=NAME to the model's tensor"
                    + ("" if not optional else f", or {option}= (empty) not to send it")
                )
            tensor = pool[name]
            if tensor.datatype not in allowed:
                raise FatalError(
                    f"{self._where()}: {kind} {name!r} ({what}) is {tensor.datatype}; the contract needs "
                    f"{' or '.join(sorted(allowed))}"
                )
            if kind == "input" and any(dim not in (-1, 1) for dim in tensor.dims):
                raise FatalError(
                    f"{self._where()}: input {name!r} has shape {list(tensor.dims)}; the contract sends one "
                    "value per request (dimensions of 1, or -1)"
                )
            return tensor

        bytes_only = frozenset({"BYTES"})
        prompt = find("prompt_input", bytes_only, "prompt")
        image = find("image_input", bytes_only, "image")
        text = find("text_output", bytes_only, "answer text")
        max_tokens = find("max_tokens_input", _INT_TYPES, "max_tokens")
        temperature = find("temperature_input", _FLOAT_TYPES, "temperature")
        assert prompt is not None and image is not None and text is not None
        sent = {t.name for t in (prompt, image, max_tokens, temperature) if t is not None}
        if config is not None:
            required = [
                str(i["name"]) for i in config.get("input", []) if not i.get("optional") and str(i["name"]) not in sent
            ]
            if required:
                raise FatalError(
                    f"{self._where()} requires input(s) {', '.join(required)} that the contract does not "
                    f"send (it sends {', '.join(sorted(sent))}); map the contract's names with *_input options"
                )
        return _Plan(
            prompt=prompt,
            image=image,
            multi_image=len(image.dims) >= 2 and image.dims[-1] == -1,
            text_output=text.name,
            max_tokens=max_tokens,
            temperature=temperature,
        )

    # ------------------------------------------------------------------------------- generate

    def _input(self, tensor: _Input, array: np.ndarray) -> Any:
        if self.endpoint.protocol == "http":
            infer_input = http_aio.InferInput(tensor.name, list(array.shape), tensor.datatype)
            infer_input.set_data_from_numpy(array, binary_data=True)
        else:
            infer_input = grpc_aio.InferInput(tensor.name, list(array.shape), tensor.datatype)
            infer_input.set_data_from_numpy(array)
        return infer_input

    def _inputs(self, request: Request, plan: _Plan) -> list[Any]:
        images = request.images
        if not images:
            raise UnsupportedInput(
                f"item {request.item_index}: {self._where()} needs an image per request; it has none"
            )
        if len(images) > 1 and not plan.multi_image:
            raise UnsupportedInput(
                f"item {request.item_index} has {len(images)} images; {self._where()} takes one per request "
                f"(a model whose {plan.image.name!r} input has a variable last dimension takes several)"
            )
        text = f"{request.system}\n\n{request.text}" if request.system else request.text

        def one(tensor: _Input, value: Any, dtype: Any) -> Any:
            return self._input(tensor, np.array([value], dtype=dtype).reshape(tensor.shape()))

        # dtype=object keeps the bytes as they are; numpy's "S" dtype would drop trailing NULs.
        inputs = [one(plan.prompt, text.encode("utf-8"), np.object_)]
        image_data = np.empty(len(images), dtype=np.object_)
        image_data[:] = [image.data for image in images]
        inputs.append(self._input(plan.image, image_data.reshape(plan.image.shape(len(images)))))
        if plan.max_tokens is not None:
            inputs.append(one(plan.max_tokens, request.params.max_tokens, triton_to_np_dtype(plan.max_tokens.datatype)))
        if plan.temperature is not None:
            temperature_type = triton_to_np_dtype(plan.temperature.datatype)
            inputs.append(one(plan.temperature, request.params.temperature, temperature_type))
        return inputs

    async def generate(self, request: Request) -> Response:
        plan = self._plan
        if plan is None or self._client is None:
            raise FatalError(f"{self._where()}: generate() called before start()")
        inputs = self._inputs(request, plan)
        if self.endpoint.protocol == "http":
            outputs = [http_aio.InferRequestedOutput(plan.text_output, binary_data=True)]
        else:
            outputs = [grpc_aio.InferRequestedOutput(plan.text_output)]
        try:
            result = await self._client.infer(
                self.model, inputs, model_version=self.version, outputs=outputs, **self._kw()
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._map(exc, f"item {request.item_index}") from exc
        try:
            values = result.as_numpy(plan.text_output)
        except Exception as exc:
            raise ServerError(f"{self._where()}: unreadable {plan.text_output!r} output: {exc}") from exc
        if values is None or values.size == 0:
            raise ServerError(f"{self._where()}: the response has no {plan.text_output!r} output")
        value = values.reshape(-1)[0]
        text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
        return Response(text, finish_reason="stop", model=self.model)

    async def close(self) -> None:
        client, self._client, self._plan = self._client, None, None
        if client is not None:
            await client.close()

    # --------------------------------------------------------------------------------- errors

    def _map(self, exc: BaseException, doing: str) -> BackendError:
        """A tritonclient / aiohttp / timeout exception -> the client's error tree."""
        if isinstance(exc, asyncio.TimeoutError | TimeoutError):
            return RequestTimeout(f"{self._where()} ({doing}): no answer within {self.timeout:g} s")
        return classify(exc, f"{self._where()} ({doing})")


_REQUEST_ID = re.compile(r"^\[request id: [^\]]*\]\s*")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*")
_MAX_MESSAGE = 600


def _shorten(message: str) -> str:
    """A server message fit for a record: no request-id prefix, a Python traceback cut to its gist."""
    message = _REQUEST_ID.sub("", message.strip())
    if len(message) <= _MAX_MESSAGE and "Traceback" not in message:
        return message
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    # A model's traceback comes wrapped in Triton's; the innermost "SomeError: why" line says most.
    raised = [line for line in lines if _EXCEPTION_LINE.match(line) and "TritonModelException" not in line]
    gist = f"{lines[0]} ... {raised[-1]}" if raised and raised[-1] != lines[0] else lines[0]
    return gist if len(gist) <= _MAX_MESSAGE else gist[: _MAX_MESSAGE - 3] + "..."


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InferenceServerException):
        status = exc.status() or ""
        return _shorten(f"{exc.message() or exc}") + (f" [{status}]" if status else "")
    if aiohttp is not None and isinstance(exc, aiohttp.ClientResponseError) and "status line" in str(exc).lower():
        # Binary gRPC frames where an HTTP status line should be: the port speaks gRPC.
        return "the answer is not HTTP (is this a gRPC port?)"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def classify(exc: BaseException, where: str) -> BackendError:
    """Map one exception met while talking to Triton onto ``gmai_client.errors`` (see the module doc)."""
    if isinstance(exc, BackendError):
        return exc
    message = f"{where}: {_describe(exc)}"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return RequestTimeout(message)
    if not isinstance(exc, InferenceServerException):
        if aiohttp is not None and isinstance(exc, aiohttp.ClientResponseError):
            return ServerError(message, status=exc.status)  # a malformed HTTP answer
        if (aiohttp is not None and isinstance(exc, aiohttp.ClientError)) or isinstance(exc, OSError):
            return ConnectionLost(message)
        return ServerError(message)

    text = (exc.message() or str(exc)).lower()
    status = (exc.status() or "").removeprefix("StatusCode.")
    http_status = int(status) if status.isdigit() else None
    if any(fragment in text for fragment in _QUEUE_FULL):
        return Overloaded(message, status=http_status)
    if status in ("UNAVAILABLE", "CANCELLED") and any(fragment in text for fragment in _CONNECTION):
        return ConnectionLost(message)
    if any(fragment in text for fragment in _UNKNOWN_MODEL) or status == "NOT_FOUND" or http_status == 404:
        return ModelNotFound(message, status=http_status)
    by_grpc: dict[str, type[BackendError]] = {
        "UNAVAILABLE": Overloaded,
        "RESOURCE_EXHAUSTED": Overloaded,
        "DEADLINE_EXCEEDED": RequestTimeout,
        "CANCELLED": ConnectionLost,
        "INVALID_ARGUMENT": BadRequest,
        "OUT_OF_RANGE": BadRequest,
        "FAILED_PRECONDITION": BadRequest,
        "UNIMPLEMENTED": BadRequest,
        "ALREADY_EXISTS": BadRequest,
        "UNAUTHENTICATED": AuthError,
        "PERMISSION_DENIED": AuthError,
        "INTERNAL": ServerError,
        "UNKNOWN": ServerError,
        "ABORTED": ServerError,
        "DATA_LOSS": ServerError,
    }
    if status in by_grpc:
        if status == "RESOURCE_EXHAUSTED" and "larger than max" in text:
            return BadRequest(message)  # a message over gRPC's size limit will never fit
        return by_grpc[status](message)
    if http_status is not None:
        if http_status in (429, 503, 529):
            return Overloaded(message, status=http_status)
        if http_status in (408, 504):
            return RequestTimeout(message, status=http_status)
        if http_status in (401, 403):
            return AuthError(message, status=http_status)
        if 400 <= http_status < 500:
            return BadRequest(message, status=http_status)
        return ServerError(message, status=http_status)
    return ServerError(message)  # no status: the client could not read what came back
