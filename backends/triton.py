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
import ssl as ssl_module
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gmai_client.backend import Backend
from gmai_client.config import ModelSpec
from gmai_client.errors import ConfigError, FatalError, MissingExtra, ModelNotFound, ServerError, UnsupportedInput
from gmai_client.options import BackendOptions, option
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

from gmai_client.backends._triton_contract import (
    TENSOR_OPTIONS,
    Endpoint,
    Plan,
    TensorSpec,
    make_plan,
    parse_endpoint,
)
from gmai_client.backends._triton_errors import TritonUnreachable, classify, unreachable

__all__ = ["Endpoint", "TritonBackend", "TritonOptions", "TritonUnreachable", "classify", "parse_endpoint"]

START_TIMEOUT_S = 30.0  # the readiness checks are small calls: a silent host should fail fast


def _tensor_name(option_name: str, what: str, *, optional: bool) -> Any:
    default, _ = TENSOR_OPTIONS[option_name]
    if optional:
        return option(None, f"name of the {what}; empty: never send", blank=True, default_text=default)
    return option(default, f"name of the {what}", blank=True)


@dataclass(frozen=True)
class TritonOptions(BackendOptions):
    model_version: str = option("", "model version to call", default_text="the server's choice, usually the latest")
    protocol: Literal["http", "grpc"] | None = option(
        None, "the protocol", neutral=True, default_text="from the URL scheme, else port 8001 -> grpc, else http"
    )
    timeout: float = option(300.0, "seconds to wait for one answer", above=0, neutral=True)
    ssl: bool | None = option(
        None, "use TLS (https / grpcs)", neutral=True, default_text="implied by https:// and grpcs:// URLs"
    )
    ssl_ca: str = option("", "PEM file of the CA that signed the server's certificate (with TLS)", neutral=True)
    prompt_input: str = _tensor_name("prompt_input", "BYTES input taking the UTF-8 prompt", optional=False)
    image_input: str = _tensor_name("image_input", "BYTES input taking the encoded image", optional=False)
    text_output: str = _tensor_name("text_output", "BYTES output holding the answer", optional=False)
    max_tokens_input: str | None = _tensor_name("max_tokens_input", "integer input taking max_tokens", optional=True)
    temperature_input: str | None = _tensor_name("temperature_input", "float input taking temperature", optional=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("prompt_input", "image_input", "text_output"):
            if not getattr(self, name):
                raise ConfigError(f"option {name} cannot be empty: the contract needs it")

    def tensor_names(self) -> dict[str, str]:
        """Contract option -> the model's tensor name ("" never sends that optional input)."""
        names = {name: getattr(self, name) for name in TENSOR_OPTIONS}
        return {name: TENSOR_OPTIONS[name][0] if value is None else value for name, value in names.items()}

    def named(self) -> frozenset[str]:
        """The optional inputs the user named: the model must have those."""
        return frozenset(name for name, (_, optional) in TENSOR_OPTIONS.items() if optional and getattr(self, name))


class TritonBackend(Backend):
    """A model on Triton Inference Server (KServe v2 over HTTP or gRPC), through a fixed tensor contract."""

    name = "triton"
    Options = TritonOptions

    def __init__(self, model: str, endpoint: Endpoint, options: TritonOptions | None = None):
        if not model:
            raise ConfigError("triton needs a model name: triton:MODEL@HOST:PORT")
        if endpoint.protocol == "http" and http_aio is None:
            raise MissingExtra("triton", "triton", "tritonclient[http]")
        if endpoint.protocol == "grpc" and grpc_aio is None:
            raise MissingExtra("triton", "triton", "tritonclient[grpc]")
        self.model = model
        self.endpoint = endpoint
        self.options = options or TritonOptions()
        self.version = self.options.model_version
        self.timeout = self.options.timeout
        self._client: Any = None
        self._plan: Plan | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, seed: int = 0) -> TritonBackend:
        options = cls.parse_options(spec)
        return cls(spec.target, parse_endpoint(spec.endpoint, options.protocol or "", options.ssl), options)

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
            if self.endpoint.tls and self.options.ssl_ca:
                context = ssl_module.create_default_context(cafile=self.options.ssl_ca)
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
            root_certificates=self.options.ssl_ca or None,
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
            raise unreachable(exc, self.endpoint, self.model) from exc
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
            raise unreachable(exc, self.endpoint, self.model) from exc
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

    def _make_plan(self, metadata: Mapping[str, Any], config: Mapping[str, Any] | None) -> Plan:
        return make_plan(metadata, config, self.options.tensor_names(), self.options.named(), self._where())

    # ------------------------------------------------------------------------------- generate

    def _input(self, tensor: TensorSpec, array: np.ndarray) -> Any:
        if self.endpoint.protocol == "http":
            infer_input = http_aio.InferInput(tensor.name, list(array.shape), tensor.datatype)
            infer_input.set_data_from_numpy(array, binary_data=True)
        else:
            infer_input = grpc_aio.InferInput(tensor.name, list(array.shape), tensor.datatype)
            infer_input.set_data_from_numpy(array)
        return infer_input

    def _inputs(self, request: Request, plan: Plan) -> list[Any]:
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

        def one(tensor: TensorSpec, value: Any, dtype: Any) -> Any:
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

    def _map(self, exc: BaseException, doing: str) -> Exception:
        """A tritonclient / aiohttp / timeout exception -> the client's error tree."""
        return classify(exc, f"{self._where()} ({doing})", self.timeout)

