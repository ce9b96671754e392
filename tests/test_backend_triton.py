"""The triton backend against a real Triton Inference Server (PyTriton, CPU), over HTTP and gRPC.

One server per session, in a subprocess on free loopback ports, serves four models through the
contract: ``tiny`` (a random-weight Llava built on the spot), ``echo`` (first option letter),
``inspect`` (reports what arrived: prompt, image sha256, parameters, batch size) and ``slow``
(inspect after 0.3 s, with a queue of one: back-pressure). It is stopped by PID with SIGTERM.
The error-mapping and endpoint-parsing tests at the end need no server.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("tritonclient")

from gmai_client import errors
from gmai_client.backends.registry import create
from gmai_client.backends.triton import (
    TritonBackend,
    TritonUnreachable,
    classify,
    parse_endpoint,
)
from gmai_client.config import parse_model_spec
from gmai_client.types import Image, Request, SamplingParams
from tests.conftest import Server, free_ports

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Question: which organ is shown?\nOptions:\nC. lung\nD. liver\nPlease select the correct answer. \n"


@pytest.fixture(params=["http", "grpc"])
def protocol(request: pytest.FixtureRequest) -> str:
    return request.param


def _backend(server: Server, protocol: str, model: str, **options: str) -> TritonBackend:
    backend = create(parse_model_spec(f"triton:{model}@{server.endpoint(protocol)}", options))
    assert isinstance(backend, TritonBackend)
    return backend


async def _ask(backend: TritonBackend, *requests: Request) -> list:
    try:
        await backend.start()
        return await asyncio.gather(*(backend.generate(r) for r in requests), return_exceptions=True)
    finally:
        await backend.close()


def _png(size: tuple[int, int] = (40, 30)) -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.new("RGB", size, (30, 140, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def _request(index: str = "1", text: str = PROMPT, images: tuple[bytes, ...] | None = None, **params) -> Request:
    data = images if images is not None else (_png(),)
    return Request(index, text, tuple(Image(d) for d in data), SamplingParams(**params))


# ------------------------------------------------------------------------------ with a server


def test_echo_answers(triton_server: Server, protocol: str) -> None:
    [response] = asyncio.run(_ask(_backend(triton_server, protocol, "echo"), _request()))
    assert response.text == "C"  # the prompt's first option letter, so a dropped prompt would show
    assert response.model == "echo"


def test_image_bytes_and_utf8_prompt_arrive_exactly(triton_server: Server, protocol: str) -> None:
    # Trailing NUL bytes: what numpy's fixed-width bytes dtype would silently drop.
    image = _png() + b"\x00\x00"
    text = "Hint: 肺结节 — ¿qué? ✓ 🫁\nQuestion: x\n"
    request = Request("1", text, (Image(image),), SamplingParams(temperature=0.25, max_tokens=7), system="Be brief.")
    [response] = asyncio.run(_ask(_backend(triton_server, protocol, "inspect"), request))
    seen = json.loads(response.text)
    assert seen["image_sha256"] == hashlib.sha256(image).hexdigest()
    assert seen["image_bytes"] == len(image)
    assert seen["prompt"] == "Be brief.\n\n" + text
    assert (seen["max_tokens"], seen["temperature"]) == (7, 0.25)


def test_optional_inputs_can_be_left_out(triton_server: Server, protocol: str) -> None:
    backend = _backend(triton_server, protocol, "inspect", max_tokens_input="", temperature_input="")
    [response] = asyncio.run(_ask(backend, _request(max_tokens=7, temperature=0.5)))
    seen = json.loads(response.text)
    assert (seen["max_tokens"], seen["temperature"]) == (0, 0.0)  # the server's "not sent" defaults


def test_sixteen_concurrent_requests_are_all_answered_and_batched(triton_server: Server, protocol: str) -> None:
    requests = [_request(str(i), f"item {i}", images=(bytes([i]) * (100 + i),)) for i in range(16)]
    responses = asyncio.run(_ask(_backend(triton_server, protocol, "inspect"), *requests))
    seen = [json.loads(r.text) for r in responses]
    assert [s["prompt"] for s in seen] == [f"item {i}" for i in range(16)]  # each answer is its own
    assert [s["image_bytes"] for s in seen] == [100 + i for i in range(16)]
    assert max(s["batch_size"] for s in seen) > 1  # sent concurrently, batched by the server


def test_tiny_model_answers_concurrent_requests(triton_server: Server, protocol: str) -> None:
    if not triton_server.has_tiny:
        pytest.skip("needs torch, transformers and tokenizers")
    # Mixed temperatures: the server splits each batch into a greedy and a sampled generate.
    requests = [
        _request(str(i), f"Question {i}?", max_tokens=4, temperature=0.7 if i % 4 == 0 else 0.0) for i in range(16)
    ]
    responses = asyncio.run(_ask(_backend(triton_server, protocol, "tiny"), *requests))
    assert all(isinstance(r.text, str) and r.model == "tiny" for r in responses), responses


def test_missing_model_is_named_with_the_available_ones(triton_server: Server, protocol: str) -> None:
    with pytest.raises(errors.ModelNotFound) as caught:
        asyncio.run(_ask(_backend(triton_server, protocol, "llava")))
    message = str(caught.value)
    assert "'llava'" in message and triton_server.endpoint(protocol) in message
    assert "available: echo, inspect, slow" in message


def test_nothing_listening_is_a_clear_start_failure(protocol: str) -> None:
    [port] = free_ports(1)
    backend = create(parse_model_spec(f"triton:llava@{protocol}://127.0.0.1:{port}"))
    started = time.monotonic()
    with pytest.raises(TritonUnreachable) as caught:
        asyncio.run(_ask(backend))
    assert time.monotonic() - started < 10
    assert f"cannot reach Triton at {protocol}://127.0.0.1:{port}" in str(caught.value)
    assert isinstance(caught.value, errors.FatalError) and caught.value.stops_model


def test_a_server_that_never_answers_fails_start_within_the_timeout(protocol: str) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        backend = create(parse_model_spec(f"triton:llava@{protocol}://127.0.0.1:{port}", {"timeout": "1"}))
        started = time.monotonic()
        with pytest.raises(TritonUnreachable, match=f"127.0.0.1:{port}"):
            asyncio.run(_ask(backend))
        assert time.monotonic() - started < 5


def test_wrong_protocol_for_the_port_is_explained(triton_server: Server) -> None:
    backend = create(parse_model_spec(f"triton:echo@http://127.0.0.1:{triton_server.grpc_port}"))
    with pytest.raises(TritonUnreachable, match="gRPC port"):
        asyncio.run(_ask(backend))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"prompt_input": "question"}, r"no input 'question' for the prompt \(its inputs: prompt \(BYTES"),
        ({"text_output": "answer"}, r"no output 'answer'.*its outputs: text \(BYTES"),
        ({"max_tokens_input": "budget"}, r"no input 'budget' for the max_tokens"),
        ({"image_input": "max_tokens"}, r"input 'max_tokens' \(image\) is INT32; the contract needs BYTES"),
    ],
)
def test_tensor_config_that_does_not_match_the_model_fails_at_start(
    triton_server: Server, options: dict[str, str], expected: str
) -> None:
    with pytest.raises(errors.FatalError, match=expected):
        asyncio.run(_ask(_backend(triton_server, "http", "echo", **options)))


def test_images_per_request_must_match_the_model(triton_server: Server, protocol: str) -> None:
    backend = _backend(triton_server, protocol, "echo")
    none, two = asyncio.run(_ask(backend, _request("a", images=()), _request("b", images=(b"1", b"2"))))
    assert isinstance(none, errors.UnsupportedInput) and "none" in str(none)
    assert isinstance(two, errors.UnsupportedInput) and "2 images" in str(two)


def test_full_queue_is_back_pressure_and_a_deadline_is_a_timeout(triton_server: Server, protocol: str) -> None:
    burst = asyncio.run(_ask(_backend(triton_server, protocol, "slow"), *(_request(str(i)) for i in range(6))))
    kinds = {type(outcome).__name__ for outcome in burst}
    assert kinds == {"Response", "Overloaded"}, burst
    assert "queue" in str(next(o for o in burst if isinstance(o, errors.Overloaded)))
    [late] = asyncio.run(_ask(_backend(triton_server, protocol, "slow", timeout="0.1"), _request()))
    assert isinstance(late, errors.RequestTimeout), late


# ------------------------------------------------------------------------------- no server


def test_spec_endpoint_and_identity() -> None:
    backend = create(parse_model_spec("triton:llava@gpu-box:8001"))
    assert backend.identity() == {"backend": "triton", "model": "llava:latest", "endpoint": "grpc://gpu-box:8001"}
    backend = create(parse_model_spec("triton:llava@gpu-box", {"model_version": "3"}))
    assert backend.identity() == {"backend": "triton", "model": "llava:3", "endpoint": "http://gpu-box:8000"}


@pytest.mark.parametrize(
    ("endpoint", "protocol", "url"),
    [
        ("", "", "http://localhost:8000"),
        ("gpu-box:8001", "", "grpc://gpu-box:8001"),
        ("gpu-box:9000", "", "http://gpu-box:9000"),
        ("gpu-box:9000", "grpc", "grpc://gpu-box:9000"),
        ("grpc://gpu-box", "", "grpc://gpu-box:8001"),
        ("https://gpu-box/triton/", "", "https://gpu-box:443/triton"),  # TLS without a port: a proxy
        ("gpu-box", "", "http://gpu-box:8000"),
        ("grpcs://[::1]:9001", "", "grpcs://[::1]:9001"),
    ],
)
def test_parse_endpoint(endpoint: str, protocol: str, url: str) -> None:
    assert parse_endpoint(endpoint, protocol).url == url


@pytest.mark.parametrize(
    ("spec", "options", "expected"),
    [
        ("triton:llava@grpc://h:8001", {"protocol": "http"}, "contradicts"),
        ("triton:llava@ftp://h", {}, "unknown URL scheme"),
        ("triton:@h:8000", {}, "needs a model name"),
        ("triton:llava@h", {"protcol": "grpc"}, "unknown option"),
        ("triton:llava@h", {"timeout": "soon"}, "timeout='soon' is not a number"),
        ("triton:llava@h", {"protocol": "http2"}, "choose one of http, grpc"),
        ("triton:llava@h", {"ssl": "maybe"}, "ssl must be true or false"),
        ("triton:llava@h", {"prompt_input": ""}, "cannot be empty"),
    ],
)
def test_bad_specs_are_config_errors(spec: str, options: dict[str, str], expected: str) -> None:
    with pytest.raises(errors.ConfigError, match=expected):
        create(parse_model_spec(spec, options))


@pytest.mark.parametrize(
    ("message", "status", "kind"),
    [
        ("[request id: <id_unknown>] Exceeds maximum queue size", "503", errors.Overloaded),
        ("Exceeds maximum queue size", "400", errors.Overloaded),
        ("Exceeds maximum queue size", "StatusCode.UNAVAILABLE", errors.Overloaded),
        ("Server is shutting down", "StatusCode.UNAVAILABLE", errors.Overloaded),
        ("resource exhausted", "StatusCode.RESOURCE_EXHAUSTED", errors.Overloaded),
        ("Received message larger than max (5 vs. 4)", "StatusCode.RESOURCE_EXHAUSTED", errors.BadRequest),
        ("too many requests", "429", errors.Overloaded),
        ("busy", "503", errors.Overloaded),
        ("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED", errors.RequestTimeout),
        ("failed to connect to all addresses; Connection refused", "StatusCode.UNAVAILABLE", errors.ConnectionLost),
        ("Socket closed", "StatusCode.UNAVAILABLE", errors.ConnectionLost),
        ("unexpected shape for input 'prompt'", "StatusCode.INVALID_ARGUMENT", errors.BadRequest),
        ("unexpected shape for input 'prompt'", "400", errors.BadRequest),
        ("Request for unknown model: 'x' is not found", "400", errors.ModelNotFound),
        ("Request for unknown model: 'x' is not found", "StatusCode.NOT_FOUND", errors.ModelNotFound),
        ("Request for unknown model: 'x' is not found", "StatusCode.INVALID_ARGUMENT", errors.ModelNotFound),
        ("Request for unknown model: 'x' has no available versions", "StatusCode.UNAVAILABLE", errors.ModelNotFound),
        ("input 'prompt' not found", "400", errors.BadRequest),
        ("not found", "404", errors.ModelNotFound),
        ("Model execute error: boom", "StatusCode.INTERNAL", errors.ServerError),
        ("Model execute error: boom", "500", errors.ServerError),
        ("forbidden", "403", errors.AuthError),
        ("unparseable body", None, errors.ServerError),
    ],
)
def test_error_mapping(message: str, status: str | None, kind: type) -> None:
    from tritonclient.utils import InferenceServerException

    mapped = classify(InferenceServerException(message, status=status), "model 'x' on http://h:8000")
    assert type(mapped) is kind
    assert str(mapped).startswith("model 'x' on http://h:8000: ") and "request id" not in str(mapped)


def test_transport_errors_map_to_retryable_kinds() -> None:
    assert isinstance(classify(asyncio.TimeoutError(), "m"), errors.RequestTimeout)
    assert isinstance(classify(ConnectionResetError("reset by peer"), "m"), errors.ConnectionLost)
    aiohttp = pytest.importorskip("aiohttp")
    assert isinstance(classify(aiohttp.ServerDisconnectedError(), "m"), errors.ConnectionLost)


def test_a_server_traceback_is_cut_to_its_gist() -> None:
    from tritonclient.utils import InferenceServerException

    message = (
        "Failed to process the request(s) for model 'tiny_0_0', message: TritonModelException: Model execute "
        'error: Traceback (most recent call last):\n  File "x.py", line 1, in f\n    raise\n'
        + "  frame\n" * 200
        + "ValueError: request 0 of the batch: cannot decode image (9 bytes)\n\nAt:\n  model.py(501): execute\n"
    )
    mapped = str(classify(InferenceServerException(message, status="500"), "m"))
    assert len(mapped) < 700 and mapped.endswith(
        "ValueError: request 0 of the batch: cannot decode image (9 bytes) [500]"
    )


def _metadata(inputs: dict[str, tuple[str, list[int]]], output: str = "text") -> dict:
    return {
        "inputs": [{"name": n, "datatype": d, "shape": [str(x) for x in dims]} for n, (d, dims) in inputs.items()],
        "outputs": [{"name": output, "datatype": "BYTES", "shape": ["-1", "1"]}],
    }


def test_plan_follows_the_model_metadata() -> None:
    backend = create(parse_model_spec("triton:m@h:8001"))
    # No batching (no -1 batch dimension), several images per request, FP16 temperature, no max_tokens.
    inputs = {"prompt": ("BYTES", [1]), "image": ("BYTES", [1, -1]), "temperature": ("FP16", [1])}
    plan = backend._make_plan(_metadata(inputs), {"input": [{"name": "prompt"}, {"name": "image"}]})
    assert plan.multi_image and plan.image.shape(3) == [1, 3] and plan.prompt.shape() == [1]
    assert plan.max_tokens is None and plan.temperature is not None
    with pytest.raises(errors.FatalError, match=r"requires input\(s\) seed"):
        backend._make_plan(_metadata(inputs), {"input": [{"name": "seed"}, {"name": "extra", "optional": True}]})
    with pytest.raises(errors.FatalError, match=r"shape \[-1, 3\]"):
        backend._make_plan(_metadata({**inputs, "prompt": ("BYTES", [-1, 3])}), None)


def test_example_server_script_parses_its_arguments() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "serve_triton.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "--model-path" in done.stdout and "--echo" in done.stdout
