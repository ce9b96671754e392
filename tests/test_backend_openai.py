"""The OpenAI backend driven through the real ``openai`` SDK against the fake API on loopback.

Asserts on what the server received (model, images before text, byte-identical PNGs, parameters,
exactly one HTTP request per generate: the SDK never retries) and on the error mapping.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

pytest.importorskip("openai")
pytest.importorskip("aiohttp")

from aiohttp import web

from gmai_client import errors
from gmai_client.backends import registry
from gmai_client.backends.images import downscale, shutdown_pool
from gmai_client.backends.openai import OpenAIBackend, OpenAIOptions
from gmai_client.config import parse_model_spec
from gmai_client.testing.fake_api import FakeAPI, request_key
from gmai_client.testing.fake_loopback import LoopbackServer
from gmai_client.types import Image, Request, Response, SamplingParams
from tests.api_backend_kit import fails, generate, pixels_sha, png, sample_request, serve, wiped

KEY = "sk-test-SECRET123456789"
MODEL = "gpt-4o-fake"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAPI]:
    yield from serve()


@pytest.fixture
def api(server: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> FakeAPI:
    return wiped(server, monkeypatch, "OPENAI_API_KEY", KEY)


@pytest.fixture(scope="module")
def request_() -> Request:
    return sample_request()



def backend(api: FakeAPI, **kwargs: object) -> OpenAIBackend:
    kwargs.setdefault("timeout", 2.0)
    return OpenAIBackend(MODEL, endpoint=api.base_url_openai, options=OpenAIOptions(**kwargs))  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the request on the wire


def test_request_on_the_wire(api: FakeAPI, request_: Request) -> None:
    api.answers = {request_key(request_): "C"}
    response = generate(backend(api), request_)

    assert response == Response("C", "stop", response.usage, MODEL)
    assert response.usage is not None and response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    (seen,) = api.requests
    assert seen.api == "openai" and seen.model == MODEL
    assert seen.roles == ("system", "user") and seen.system == "Be brief."
    assert seen.content_types == ("image", "text")  # images first, as the reference protocol does
    assert seen.image_sha256 == (pixels_sha(request_.images[0]),)  # the item's PNG, byte for byte
    assert seen.image_mimes == ("image/png",)
    assert seen.image_details == (None,)  # not sent unless asked for
    assert seen.text == request_.text
    assert seen.params["temperature"] == 0.3 and seen.params["max_tokens"] == 32 and seen.params["seed"] == 7
    assert "max_completion_tokens" not in seen.params
    assert seen.auth_schemes == ("bearer",)
    assert seen.headers["x-stainless-retry-count"] == "0"


def test_several_images_keep_their_order_and_detail(api: FakeAPI) -> None:
    first, second = Image(png(8, 8, 1)), Image(png(8, 8, 2))
    request = Request("two", "Which differs?", (first, second))
    generate(backend(api, detail="low", max_tokens_field="max_completion_tokens"), request)

    (seen,) = api.requests
    assert seen.content_types == ("image", "image", "text")
    assert seen.image_sha256 == (pixels_sha(first), pixels_sha(second))
    assert seen.image_details == ("low", "low")
    assert seen.roles == ("user",)  # no system message when the request has none
    assert seen.params["max_completion_tokens"] == 512 and "max_tokens" not in seen.params
    assert "seed" not in seen.params


def test_max_image_side_downscales_before_sending(api: FakeAPI) -> None:
    big, small = Image(png(300, 150)), Image(png(40, 20))
    try:
        generate(backend(api, max_image_side=64), Request("big", "Look.", (big, small)))
    finally:
        shutdown_pool()
    (seen,) = api.requests
    assert seen.image_sha256 == (pixels_sha(downscale(big, 64)), pixels_sha(small))  # the small one untouched


def test_refusal_and_content_filter_are_responses(api: FakeAPI, request_: Request) -> None:
    api.inject("refusal")
    refused = generate(backend(api), request_)
    assert refused.finish_reason == "refused" and "can't help" in refused.text

    api.inject("content_filter")
    filtered = generate(backend(api), request_)
    assert filtered.finish_reason == "filtered" and filtered.text == ""


def test_answer_cut_by_max_tokens_is_length(api: FakeAPI) -> None:
    api.fallback = "The answer is B, because " + "of many reasons " * 20
    response = generate(backend(api), Request("long", "Why?", params=SamplingParams(max_tokens=4)))
    assert response.finish_reason == "length" and len(response.text) == 16


class _PartsServer(LoopbackServer):
    """Answers every chat completion with ``content`` as a list of parts, as some
    OpenAI-compatible servers do."""

    def __init__(self, content: object):
        super().__init__()
        self.content = content

    def reply(self) -> web.Response:
        message = {"role": "assistant", "content": self.content}
        return web.json_response(
            {"id": "c1", "object": "chat.completion", "created": 0, "model": MODEL,
             "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
        )  # fmt: skip

    def _routes(self, app: web.Application) -> None:
        async def answer(_: web.Request) -> web.Response:
            return self.reply()

        app.router.add_post("/v1/chat/completions", answer)


def test_content_given_as_a_list_of_text_parts_is_joined_as_text(request_: Request) -> None:
    parts = [{"type": "text", "text": "The answer is "}, {"type": "text", "text": "B."}]
    with _PartsServer(parts) as server:
        b = OpenAIBackend(MODEL, endpoint=server.base_url + "/v1", options=OpenAIOptions(timeout=5.0))
        response = generate(b, request_)
    assert response.text == "The answer is B."  # not "[{'type': 'text', ...}]", which would be scored
    assert response.finish_reason == "stop"


class _BasicAuthServer(_PartsServer):
    """Answers only a request with ``Authorization: Basic user:pass`` (a server behind a proxy that
    takes the URL's credentials), and keeps what each request's Authorization said."""

    def __init__(self) -> None:
        super().__init__("The answer is B.")
        self.seen: list[str] = []

    def _routes(self, app: web.Application) -> None:
        async def answer(http: web.Request) -> web.Response:
            self.seen.append(http.headers.get("Authorization", ""))
            # base64 of "user:p@ss-word-2026"
            if http.headers.get("Authorization") != "Basic dXNlcjpwQHNzLXdvcmQtMjAyNg==":
                return web.json_response({"error": {"message": "unauthorized"}}, status=401)
            return self.reply()

        app.router.add_post("/v1/chat/completions", answer)


def test_credentials_in_the_endpoint_url_are_sent_as_basic_auth(
    request_: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    # httpx refuses a URL's credentials beside the SDK's own Authorization header: every item failed.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with _BasicAuthServer() as server:
        endpoint = server.base_url.replace("http://", "http://user:p%40ss-word-2026@") + "/v1"
        response = generate(OpenAIBackend(MODEL, endpoint=endpoint, options=OpenAIOptions(timeout=5.0)), request_)
    assert response.text == "The answer is B." and server.seen == ["Basic dXNlcjpwQHNzLXdvcmQtMjAyNg=="]
    said = errors.redact("sent with p@ss-word-2026 and dXNlcjpwQHNzLXdvcmQtMjAyNg==")  # both are secrets from now on
    assert "p@ss-word-2026" not in said and "dXNlcjpwQHNzLXdvcmQtMjAyNg==" not in said


# ---------------------------------------------------------------------- errors


ERROR_CASES = [
    pytest.param("status", {"status": 400}, errors.BadRequest, id="400"),
    pytest.param("status", {"status": 400, "message": "Invalid image: unsupported image format."},
                 errors.UnsupportedInput, id="400-image"),
    pytest.param("status", {"status": 401}, errors.AuthError, id="401"),
    pytest.param("status", {"status": 403}, errors.AuthError, id="403"),
    pytest.param("status", {"status": 404}, errors.ModelNotFound, id="404"),
    pytest.param("status", {"status": 413}, errors.BadRequest, id="413"),
    pytest.param("status", {"status": 422}, errors.BadRequest, id="422"),
    pytest.param("quota", {}, errors.QuotaExhausted, id="429-insufficient_quota"),
    pytest.param("429", {"retry_after": 2}, errors.RateLimited, id="429-retry-after"),
    pytest.param("429-date", {"retry_after": 2}, errors.RateLimited, id="429-http-date"),
    pytest.param("429-ms", {"retry_after": 1.5}, errors.RateLimited, id="429-retry-after-ms"),
    pytest.param("429-reset", {"retry_after": 1.5}, errors.RateLimited, id="429-x-ratelimit-reset"),
    pytest.param("500", {}, errors.ServerError, id="500"),
    pytest.param("502", {}, errors.ServerError, id="502-html"),
    pytest.param("status", {"status": 504}, errors.ServerError, id="504"),
    pytest.param("503", {}, errors.Overloaded, id="503"),
    pytest.param("529", {}, errors.Overloaded, id="529"),
    pytest.param("malformed", {}, errors.ServerError, id="malformed-json"),
    pytest.param("truncated", {}, errors.ServerError, id="truncated-json"),
    pytest.param("empty", {}, errors.ServerError, id="empty-choices"),
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
    assert error.__cause__ is None  # the SDK exception (which holds the request) is not chained
    if kind in ("429", "429-ms", "429-reset"):
        assert error.retry_after == pytest.approx(options["retry_after"], abs=0.05)
    if kind == "429-date":  # an HTTP date has whole seconds: the hint is rounded up
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
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1" if where == "closed port" else "http://no-such-host.invalid/v1"
    error = fails(OpenAIBackend(MODEL, endpoint=url, options=OpenAIOptions(timeout=1.0)), request_)
    # Retryable as a lost connection; the dispatcher stops a model whose endpoint never answered.
    assert isinstance(error, errors.ConnectFailed) and isinstance(error, errors.ConnectionLost)
    assert f"cannot connect to {url}" in str(error)


def test_key_never_in_error_messages(api: FakeAPI, request_: Request) -> None:
    api.inject("status", status=400, message=f"bad key {KEY} in request")
    error = fails(backend(api), request_)
    assert KEY not in str(error) and "[REDACTED]" in str(error)


def test_wrong_key_is_auth_error(api: FakeAPI, request_: Request, monkeypatch: pytest.MonkeyPatch) -> None:
    api.require_key = "sk-test-the-right-one-000"
    error = fails(backend(api), request_)
    assert isinstance(error, errors.AuthError) and error.status == 401 and error.stops_model
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-the-right-one-000")
    assert generate(backend(api), request_).text == "A"


def test_api_key_env_option_names_the_variable(
    api: FakeAPI, request_: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_GATEWAY_KEY", "sk-test-gateway-777777")
    api.require_key = "sk-test-gateway-777777"
    assert generate(backend(api, api_key_env="MY_GATEWAY_KEY"), request_).text == "A"


def test_self_hosted_server_needs_no_key(api: FakeAPI, request_: Request, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    assert generate(backend(api), request_).text == "A"
    assert api.requests[0].auth_schemes == ("bearer",)  # the "EMPTY" placeholder


def test_openai_endpoint_without_key_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    b = OpenAIBackend("gpt-4o")
    with pytest.raises(errors.AuthError, match="OPENAI_API_KEY"):
        asyncio.run(b.start())


# ---------------------------------------------------------------------- spec, options, identity


def test_from_spec_and_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    plain = registry.create(parse_model_spec("openai:gpt-4o"))
    assert isinstance(plain, OpenAIBackend)
    assert plain.identity() == {"backend": "openai", "model": "gpt-4o", "endpoint": "https://api.openai.com/v1"}

    spec = parse_model_spec("openai:llava@http://gpu:8000/v1/", ["detail=high", "timeout=5", "max_image_side=512"])
    b = OpenAIBackend.from_spec(spec)
    assert (b.endpoint, b.detail, b.timeout, b.max_image_side) == ("http://gpu:8000/v1", "high", 5.0, 512)
    assert b.identity() == {
        "backend": "openai", "model": "llava", "endpoint": "http://gpu:8000/v1",
        "detail": "high", "max_image_side": "512",
    }  # fmt: skip
    same = OpenAIBackend.from_spec(parse_model_spec("openai:llava", ["base_url=http://gpu:8000/v1"]))
    assert same.endpoint == "http://gpu:8000/v1"


def test_openai_base_url_points_the_real_sdk_at_the_server(
    api: FakeAPI, request_: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", api.base_url_openai + "/")
    b = registry.create(parse_model_spec("openai:gpt-4o"))

    assert b.identity()["endpoint"] == api.base_url_openai  # what the cache key and the run name
    assert generate(b, request_).text == "A"
    assert [(r.model, r.auth_schemes) for r in api.requests] == [("gpt-4o", ("bearer",))]


def test_the_spec_url_comes_before_openai_base_url(
    api: FakeAPI, request_: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nobody listens on: the variable must not be used
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{probe.getsockname()[1]}/v1")
    for options in ([], [f"base_url={api.base_url_openai}"]):
        spec = f"openai:gpt-4o@{api.base_url_openai}" if not options else "openai:gpt-4o"
        b = OpenAIBackend.from_spec(parse_model_spec(spec, options))
        assert b.identity()["endpoint"] == api.base_url_openai
        assert generate(b, request_).text == "A"
    assert len(api.requests) == 2


def test_a_malformed_openai_base_url_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "gpu-box:8000/v1")
    with pytest.raises(errors.ConfigError, match="OPENAI_BASE_URL='gpu-box:8000/v1'"):
        OpenAIBackend.from_spec(parse_model_spec("openai:gpt-4o"))


@pytest.mark.parametrize(
    ("spec", "options"),
    [
        ("openai", []),
        ("openai:m", ["detail=medium"]),
        ("openai:m", ["timeout=0"]),
        ("openai:m", ["timeout=soon"]),
        ("openai:m", ["max_image_side=0"]),
        ("openai:m", ["max_tokens_field=tokens"]),
        ("openai:m@http://a/v1", ["base_url=http://b/v1"]),
        ("openai:m@gpu:8000", []),
    ],
)
def test_bad_specs_are_config_errors(spec: str, options: list[str]) -> None:
    with pytest.raises(errors.ConfigError):
        OpenAIBackend.from_spec(parse_model_spec(spec, options))


def test_missing_sdk_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['openai'] = None\n"  # as if the package were not installed
        "from gmai_client.errors import MissingExtra\n"
        "try:\n    import gmai_client.backends.openai\n"
        "except MissingExtra as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'gmai-client[openai]'" in out.stdout, out.stderr


def test_the_public_api_without_a_key_is_a_usage_error_before_anything_is_made(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gmai_client.cli import EXIT_USAGE, main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    code = main(["run", "-m", "openai:gpt-4o", "--limit", "2", "--no-progress", "--no-cache", "--out", str(tmp_path)])

    assert code == EXIT_USAGE
    assert "OPENAI_API_KEY" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no run folder: nothing was started, nothing sent


def test_a_local_server_given_by_url_still_needs_no_key(
    api: FakeAPI, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gmai_client.cli import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code = main(["run", "-m", f"openai:llava@{api.base_url_openai}", "--limit", "2", "--no-progress", "--no-cache",
                 "--out", str(tmp_path)])  # fmt: skip
    assert code == 0 and len(api.requests) == 2


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_a_proxy_that_cannot_be_reached_is_named_not_the_endpoint(
    api: FakeAPI, request_: Request, no_proxies: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nobody listens on: the proxy is down
        probe.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{probe.getsockname()[1]}"
    no_proxies.setenv("HTTP_PROXY", proxy)

    error = fails(backend(api), request_)

    assert isinstance(error, errors.ConnectFailed)
    assert f"through the proxy {proxy} (HTTP_PROXY)" in str(error)
    assert api.requests == []  # the server itself is up: it never saw the request


def test_no_proxy_for_the_host_means_the_proxy_is_not_named(
    api: FakeAPI, request_: Request, no_proxies: pytest.MonkeyPatch
) -> None:
    no_proxies.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    no_proxies.setenv("NO_PROXY", "127.0.0.1")
    assert generate(backend(api), request_).text == "A"  # straight to the server, as the SDK goes
    assert errors.proxy_for(api.base_url_openai) == ""
