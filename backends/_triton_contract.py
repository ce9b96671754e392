"""Triton's side of the contract: where the server is, and which tensors a model takes.

``parse_endpoint`` reads ``[scheme://]host[:port][/path]`` (the rules are in ``triton``'s
docstring); ``make_plan`` checks a model's metadata (and config, when the server shows it)
against the tensor contract and returns the ``Plan`` the backend sends by. Pure functions of
what the server said: no client, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gmai_client.errors import ConfigError, FatalError

DEFAULT_PORTS = {"http": 8000, "grpc": 8001}

#: Option -> (the contract's tensor name, whether the input is optional in the contract).
TENSOR_OPTIONS: dict[str, tuple[str, bool]] = {
    "prompt_input": ("prompt", False),
    "image_input": ("image", False),
    "text_output": ("text", False),
    "max_tokens_input": ("max_tokens", True),
    "temperature_input": ("temperature", True),
}
_INT_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})


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




@dataclass(frozen=True)
class TensorSpec:
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
class Plan:
    """What start() learnt from the model's metadata: the tensors to send and how."""

    prompt: TensorSpec
    image: TensorSpec
    multi_image: bool
    text_output: str
    max_tokens: TensorSpec | None
    temperature: TensorSpec | None


@dataclass(frozen=True)
class _Declared:
    """What a model's metadata declares, and the tensor name each contract option maps to."""

    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    names: Mapping[str, str]  # option -> tensor name; "" never sends that input
    explicit: frozenset[str]  # optional inputs the user named: those must exist
    where: str  # "model 'x' on URL", for messages

    def listing(self, found: Mapping[str, TensorSpec]) -> str:
        return ", ".join(f"{t.name} ({t.datatype} {list(t.dims)})" for t in found.values()) or "none"

    def find(self, option: str, allowed: frozenset[str], what: str) -> TensorSpec | None:
        """The tensor ``option`` maps to, checked; None for an optional input the model lacks."""
        name = self.names[option]
        optional = TENSOR_OPTIONS[option][1]
        if not name:
            return None
        kind = "output" if option == "text_output" else "input"
        pool = self.outputs if kind == "output" else self.inputs
        if name not in pool:
            if optional and option not in self.explicit:
                return None  # the model does not take it: the contract allows that
            raise FatalError(
                f"{self.where} has no {kind} {name!r} for the {what} (its {kind}s: {self.listing(pool)}); "
                f"set {option}=NAME to the model's tensor"
                + ("" if not optional else f", or {option}= (empty) not to send it")
            )
        tensor = pool[name]
        if tensor.datatype not in allowed:
            raise FatalError(
                f"{self.where}: {kind} {name!r} ({what}) is {tensor.datatype}; the contract needs "
                f"{' or '.join(sorted(allowed))}"
            )
        if kind == "input" and any(dim not in (-1, 1) for dim in tensor.dims):
            raise FatalError(
                f"{self.where}: input {name!r} has shape {list(tensor.dims)}; the contract sends one "
                "value per request (dimensions of 1, or -1)"
            )
        return tensor


def _tensors(metadata: Mapping[str, Any], kind: str) -> dict[str, TensorSpec]:
    return {
        str(t["name"]): TensorSpec(str(t["name"]), str(t["datatype"]), tuple(int(d) for d in t.get("shape", [])))
        for t in metadata.get(kind, [])
    }


def make_plan(
    metadata: Mapping[str, Any],
    config: Mapping[str, Any] | None,
    names: Mapping[str, str],
    explicit: frozenset[str],
    where: str,
) -> Plan:
    """The tensors to send, checked against the model's metadata and (when known) its config."""
    model = _Declared(_tensors(metadata, "inputs"), _tensors(metadata, "outputs"), names, explicit, where)
    bytes_only = frozenset({"BYTES"})
    prompt = model.find("prompt_input", bytes_only, "prompt")
    image = model.find("image_input", bytes_only, "image")
    text = model.find("text_output", bytes_only, "answer text")
    max_tokens = model.find("max_tokens_input", _INT_TYPES, "max_tokens")
    temperature = model.find("temperature_input", _FLOAT_TYPES, "temperature")
    assert prompt is not None and image is not None and text is not None
    sent = {t.name for t in (prompt, image, max_tokens, temperature) if t is not None}
    if config is not None:
        required = [
            str(i["name"]) for i in config.get("input", []) if not i.get("optional") and str(i["name"]) not in sent
        ]
        if required:
            raise FatalError(
                f"{where} requires input(s) {', '.join(required)} that the contract does not "
                f"send (it sends {', '.join(sorted(sent))}); map the contract's names with *_input options"
            )
    return Plan(
        prompt=prompt,
        image=image,
        multi_image=len(image.dims) >= 2 and image.dims[-1] == -1,
        text_output=text.name,
        max_tokens=max_tokens,
        temperature=temperature,
    )
