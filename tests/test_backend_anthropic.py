"""The Anthropic backend driven through the real ``anthropic`` SDK against the fake API on loopback.

Asserts on what the server received (model, image blocks before the text block, byte-identical
PNGs, system, max_tokens, temperature, exactly one HTTP request per generate) and on the error map.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

pytest.importorskip("anthropic")
pytest.importorskip("aiohttp")


from gmai_client import errors
from gmai_client.backends import registry
from gmai_client.backends.anthropic import AnthropicBackend, AnthropicOptions
from gmai_client.config import parse_model_spec
from gmai_client.testing.fake_api import FakeAPI, request_key
from gmai_client.types import Image, Request, Response, SamplingParams
from tests.api_backend_kit import fails, generate, pixels_sha, png, sample_request, serve, wiped

KEY = "sk-ant-test-SECRET123456789"
MODEL = "claude-fake-1"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAPI]:
    yield from serve()


@pytest.fixture
def api(server: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> FakeAPI:
    return wiped(server, monkeypatch, "ANTHROPIC_API_KEY", KEY)


@pytest.fixture(scope="module")
def request_() -> Request:
    return sample_request()



def backend(api: FakeAPI, **kwargs: object) -> AnthropicBackend:
    kwargs.setdefault("timeout", 2.0)
    return AnthropicBackend(MODEL, endpoint=api.base_url_anthropic, options=AnthropicOptions(**kwargs))  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the request on the wire


def test_request_on_the_wire(api: FakeAPI, request_: Request) -> None:
    api.answers = {request_key(request_): "D"}
    response = generate(backend(api), request_)

    assert response == Response("D", "stop", response.usage, MODEL)
    assert response.usage is not None and response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    (seen,) = api.requests
    assert seen.api == "anthropic" and seen.model == MODEL
    assert seen.roles == ("user",) and seen.system == "Be brief."  # system is a parameter, not a turn
    assert seen.content_types == ("image", "text")
    assert seen.image_sha256 == (pixels_sha(request_.images[0]),)
    assert seen.image_mimes == ("image/png",)
    assert seen.text == request_.text
    assert seen.params["max_tokens"] == 32 and seen.params["temperature"] == 0.3
    assert "seed" not in seen.params  # the Messages API has none
    assert "bearer" in seen.auth_schemes or "x-api-key" in seen.auth_schemes
    assert "anthropic-version" in seen.headers
    assert seen.headers["x-stainless-retry-count"] == "0"


def test_credentials_in_the_endpoint_url_reach_the_server(api: FakeAPI, request_: Request) -> None:
    # Sent as Basic auth (httpx refused them beside a header of the SDK: every request failed).
    api.answers = {request_key(request_): "C"}
    endpoint = api.base_url_anthropic.replace("http://", "http://carol:AnthPassw0rd998877@")
    b = AnthropicBackend(MODEL, endpoint=endpoint, options=AnthropicOptions(timeout=2.0))
    assert generate(b, request_).text == "C"
    assert "AnthPassw0rd998877" not in errors.redact(f"seen: {endpoint}")


def test_several_images_keep_their_order(api: FakeAPI) -> None:
    first, second = Image(png(8, 8, 1)), Image(png(8, 8, 2))
    generate(backend(api, temperature="omit"), Request("two", "Which differs?", (first, second)))

    (seen,) = api.requests
    assert seen.content_types == ("image", "image", "text")
    assert seen.image_sha256 == (pixels_sha(first), pixels_sha(second))
    assert "system" not in seen.params and seen.system == ""
    assert "temperature" not in seen.params  # temperature=omit


def test_refusal_is_a_response(api: FakeAPI, request_: Request) -> None:
    api.inject("refusal")
    refused = generate(backend(api), request_)
    assert refused.finish_reason == "refused" and refused.text == ""


def test_answer_cut_by_max_tokens_is_length(api: FakeAPI) -> None:
    api.fallback = "The answer is B, because " + "of many reasons " * 20
    response = generate(backend(api), Request("long", "Why?", params=SamplingParams(max_tokens=4)))
    assert response.finish_reason == "length" and len(response.text) == 16


def test_unsupported_mime_is_refused_before_sending(api: FakeAPI) -> None:
    bmp = Image(b"BM" + b"\x00" * 60, mime="image/bmp")
    assert isinstance(fails(backend(api), Request("bmp", "?", (bmp,))), errors.UnsupportedInput)
    assert api.requests == []


# ---------------------------------------------------------------------- errors


ERROR_CASES = [
    pytest.param("status", {"status": 400}, errors.BadRequest, id="400"),
    pytest.param("status", {"status": 400, "message": "messages.0.content.0.image.source: invalid base64 data"},
                 errors.UnsupportedInput, id="400-image"),
    pytest.param("quota", {}, errors.QuotaExhausted, id="400-credit-balance"),
    pytest.param("status", {"status": 429, "code": "enforced_spend_limit_reached"}, errors.QuotaExhausted,
                 id="429-spend-limit"),
    pytest.param("status", {"status": 401}, errors.AuthError, id="401"),
    pytest.param("status", {"status": 403}, errors.AuthError, id="403"),
    pytest.param("status", {"status": 404}, errors.ModelNotFound, id="404"),
    pytest.param("status", {"status": 413}, errors.BadRequest, id="413"),
    pytest.param("429", {"retry_after": 2}, errors.RateLimited, id="429-retry-after"),
    pytest.param("429-date", {"retry_after": 2}, errors.RateLimited, id="429-http-date"),
    pytest.param("429-ms", {"retry_after": 1.5}, errors.RateLimited, id="429-retry-after-ms"),
    pytest.param("429-reset", {"retry_after": 1.5}, errors.RateLimited, id="429-anthropic-ratelimit-reset"),
    pytest.param("500", {}, errors.ServerError, id="500"),
    pytest.param("502", {}, errors.ServerError, id="502-html"),
    pytest.param("503", {}, errors.Overloaded, id="503"),
    pytest.param("529", {}, errors.Overloaded, id="529-overloaded_error"),
    pytest.param("malformed", {}, errors.ServerError, id="malformed-json"),
    pytest.param("truncated", {}, errors.ServerError, id="truncated-json"),
    pytest.param("empty", {}, errors.ServerError, id="empty-content"),
    pytest.param("reset", {}, errors.ConnectionLost, id="connection-reset"),
    pytest.param("cut", {}, errors.ConnectionLost, id="cut-mid-body"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "options", "expected"), ERROR_CASES)
def test_error_mapping(api: FakeAPI, request_: Request, kind: str, options: dict[str, object], expected: type) -> None:
    api.inject(kind, **options)  # type: ignore[arg-type]
    error = fails(backend(api), request_)

    assert type(error) is expected, str(error)
    assert api.count(request_key(request_)) == 1  # one HTTP request: the SDK did not retry
    assert KEY not in str(error) and "SECRET" not in str(error)
    assert error.__cause__ is None
    if kind in ("429", "429-ms"):
        assert error.retry_after == pytest.approx(options["retry_after"], abs=0.05)
    if kind == "429-reset":  # an RFC 3339 timestamp, read against the clock a moment later
        assert error.retry_after == pytest.approx(options["retry_after"], abs=0.2)
    if kind == "429-date":
        assert error.retry_after is not None and 1.0 < error.retry_after <= 3.0
    if kind in ("503", "529"):
        assert error.retry_after == pytest.approx(1.0, abs=0.05)
    if "status" in options:
        assert error.status == options["status"]
    elif kind[:3].isdigit():
        assert error.status == int(kind[:3])


def test_timeout_when_the_server_hangs(api: FakeAPI, request_: Request) -> None:
    api.inject("hang")
    error = fails(backend(api, timeout=0.5), request_)
    assert isinstance(error, errors.RequestTimeout) and "0.5 s" in str(error)
    assert api.count(request_key(request_)) == 1


@pytest.mark.parametrize("where", ["closed port", "unknown host"])
def test_no_connection_at_all_is_connect_failed(request_: Request, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}" if where == "closed port" else "http://no-such-host.invalid"
    error = fails(AnthropicBackend(MODEL, endpoint=url, options=AnthropicOptions(timeout=1.0)), request_)
    assert isinstance(error, errors.ConnectFailed) and f"cannot connect to {url}" in str(error)


def test_key_never_in_error_messages(api: FakeAPI, request_: Request) -> None:
    api.inject("status", status=400, message=f"bad key {KEY} in request")
    error = fails(backend(api), request_)
    assert KEY not in str(error) and "[REDACTED]" in str(error)


def test_wrong_key_is_auth_error(api: FakeAPI, request_: Request, monkeypatch: pytest.MonkeyPatch) -> None:
    api.require_key = "sk-ant-the-right-one-000"
    error = fails(backend(api), request_)
    assert isinstance(error, errors.AuthError) and error.status == 401 and error.stops_model
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-the-right-one-000")
    assert generate(backend(api), request_).text == "A"


def test_self_hosted_server_needs_no_key(api: FakeAPI, request_: Request, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    assert generate(backend(api), request_).text == "A"


def test_anthropic_endpoint_without_key_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    b = AnthropicBackend("claude-x")  # the public API, ANTHROPIC_API_KEY
    with pytest.raises(errors.AuthError, match="ANTHROPIC_API_KEY"):
        asyncio.run(b.start())


# ---------------------------------------------------------------------- spec, options, identity


def test_from_spec_and_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    plain = registry.create(parse_model_spec("anthropic:claude-x"))
    assert isinstance(plain, AnthropicBackend)
    assert plain.identity() == {"backend": "anthropic", "model": "claude-x", "endpoint": "https://api.anthropic.com"}

    b = AnthropicBackend.from_spec(parse_model_spec("anthropic:c@http://proxy:9000/", ["temperature=omit"]))
    assert (b.endpoint, b.send_temperature) == ("http://proxy:9000", False)


def test_anthropic_base_url_points_the_real_sdk_at_the_server(
    api: FakeAPI, request_: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url_anthropic)
    b = registry.create(parse_model_spec("anthropic:claude-x"))

    assert b.identity()["endpoint"] == api.base_url_anthropic
    assert generate(b, request_).text == "A"
    assert [r.model for r in api.requests] == ["claude-x"]


def test_the_spec_url_comes_before_anthropic_base_url(
    api: FakeAPI, request_: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # nobody listens there
    b = AnthropicBackend.from_spec(parse_model_spec(f"anthropic:claude-x@{api.base_url_anthropic}"))
    assert generate(b, request_).text == "A" and len(api.requests) == 1


def test_anthropic_base_url_ending_in_v1_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://proxy:9000/v1")
    with pytest.raises(errors.ConfigError, match="ANTHROPIC_BASE_URL=http://proxy:9000/v1 must not end in /v1"):
        AnthropicBackend.from_spec(parse_model_spec("anthropic:claude-x"))


@pytest.mark.parametrize(
    ("spec", "options"),
    [
        ("anthropic", []),
        ("anthropic:c@http://proxy:9000/v1", []),
        ("anthropic:c", ["timeout=-1"]),
        ("anthropic:c", ["temperature=maybe"]),
    ],
)
def test_bad_specs_are_config_errors(spec: str, options: list[str]) -> None:
    with pytest.raises(errors.ConfigError):
        AnthropicBackend.from_spec(parse_model_spec(spec, options))


def test_missing_sdk_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['anthropic'] = None\n"  # as if the package were not installed
        "from gmai_client.errors import MissingExtra\n"
        "try:\n    import gmai_client.backends.anthropic\n"
        "except MissingExtra as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'gmai-client[anthropic]'" in out.stdout, out.stderr
