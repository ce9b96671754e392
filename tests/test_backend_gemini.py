"""The Gemini backend through the real ``openai`` SDK against the fake API's route for Gemini's
OpenAI-compatible endpoint, whose errors are Google's, inside a list, as that endpoint sends them.

Asserts on the path, the Bearer key, the images and usage as the endpoint carries them, Google's
errors (a bad key is a 400, a per-day quota is not a rate limit, RetryInfo's delay is honoured),
a safety block, and a run of ``python -m gmai_client run``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("aiohttp")

from gmai_client import errors
from gmai_client.backends import registry
from gmai_client.backends.gemini import GEMINI_ENDPOINT, GeminiBackend
from gmai_client.cli import main
from gmai_client.config import parse_model_spec
from gmai_client.testing.fake_api import FakeAPI, request_key
from gmai_client.testing.fake_clouds import FakeClouds
from gmai_client.types import Request
from tests.api_backend_kit import fails, generate, pixels_sha, sample_request
from tests.cloud_kit import CLOUD_VARIABLES, clean_environment, cli

KEY = "gemini-test-key-AIzaFake0123456789"
MODEL = "gemini-2.5-flash"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeAPI, FakeClouds]]:
    api = FakeAPI()
    clouds = FakeClouds(api, gemini_key=KEY)
    with api:
        yield api, clouds


@pytest.fixture
def api(server: tuple[FakeAPI, FakeClouds], monkeypatch: pytest.MonkeyPatch) -> FakeAPI:
    for name in CLOUD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    fake = server[0]
    fake.reset()
    fake.answers, fake.fallback, fake.echo_key = {}, "A", False
    return fake


@pytest.fixture
def clouds(server: tuple[FakeAPI, FakeClouds], api: FakeAPI) -> FakeClouds:
    return server[1]


@pytest.fixture(scope="module")
def request_() -> Request:
    return sample_request()


def backend(api: FakeAPI, **options: str) -> GeminiBackend:
    spec = parse_model_spec(f"gemini:{MODEL}@{api.base_url}/v1beta/openai", {"timeout": "2", **options})
    built = registry.create(spec)
    assert isinstance(built, GeminiBackend)
    return built


def test_the_compatible_endpoint_carries_the_images_and_reports_usage(
    api: FakeAPI, clouds: FakeClouds, request_: Request
) -> None:
    api.answers = {request_key(request_): "E"}
    response = generate(backend(api), request_)

    assert response.text == "E" and response.usage is not None and response.usage.input_tokens > 0
    (call,) = clouds.calls
    assert call.path == "/v1beta/openai/chat/completions" and call.auth == "bearer"
    (seen,) = api.requests
    assert seen.model == MODEL and seen.roles == ("system", "user") and seen.content_types == ("image", "text")
    assert seen.image_sha256 == (pixels_sha(request_.images[0]),) and seen.image_mimes == ("image/png",)


def test_the_default_endpoint_needs_the_key(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    built = registry.create(parse_model_spec(f"gemini:{MODEL}"))
    assert built.identity()["url"] == f"{GEMINI_ENDPOINT}/chat/completions"
    monkeypatch.delenv("GEMINI_API_KEY")
    error = fails(registry.create(parse_model_spec(f"gemini:{MODEL}")), sample_request())  # type: ignore[arg-type]
    assert isinstance(error, errors.AuthError) and "GEMINI_API_KEY" in str(error)


def test_a_key_gemini_does_not_know_is_an_auth_error_not_a_bad_request(
    api: FakeAPI, request_: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "not-the-right-key-000")
    error = fails(backend(api), request_)
    assert isinstance(error, errors.AuthError) and "API key not valid" in str(error)


def test_resource_exhausted_per_minute_waits_per_day_stops(api: FakeAPI, request_: Request) -> None:
    api.inject("status", status=429, retry_after=9, code="GenerateRequestsPerMinutePerProjectPerModel")
    api.inject("status", status=429, code="GenerateRequestsPerDayPerProjectPerModel-FreeTier")

    minute, day = fails(backend(api), request_), fails(backend(api), request_)
    assert isinstance(minute, errors.RateLimited) and minute.retry_after == 9
    assert isinstance(day, errors.QuotaExhausted) and day.stops_model and "per-day" in str(day)


@pytest.mark.parametrize(("status", "expected"), [(404, errors.ModelNotFound), (503, errors.Overloaded),
                                                  (500, errors.ServerError), (400, errors.BadRequest)])  # fmt: skip
def test_googles_errors_map_to_the_retry_policy(api: FakeAPI, request_: Request, status: int, expected: type) -> None:
    api.inject("status", status=status, message="the server's own words")
    error = fails(backend(api), request_)
    assert type(error) is expected and "the server's own words" in str(error)


def test_a_safety_block_is_content_filtered(api: FakeAPI, request_: Request) -> None:
    api.inject("content_filter")
    assert isinstance(fails(backend(api), request_), errors.ContentFiltered)


def test_a_run_through_the_cli(api: FakeAPI, tmp_path: Path) -> None:
    api.echo_key = True
    env = clean_environment(tmp_path / "home", GEMINI_API_KEY=KEY)

    done = cli("run", ["--limit", "3", "-m", f"gemini:{MODEL}@{api.base_url}/v1beta/openai"], tmp_path / "runs", env)

    assert done.code == 0, done.stderr
    assert [r.status for r in done.records] == ["ok", "ok", "ok"]
    assert all(r.input_tokens and r.output_tokens for r in done.records)  # usage as the endpoint reports it
    (identity,) = done.config["identity"]["resolved"]["models"].values()
    assert identity["url"] == f"{api.base_url}/v1beta/openai/chat/completions"
    outputs = done.stdout + done.stderr + "".join(
        p.read_text("utf-8", "replace") for p in (tmp_path / "runs").rglob("*") if p.is_file()
    )
    assert KEY not in outputs


def test_backends_lists_gemini_and_plan_prices_it(
    api: FakeAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backends"]) == 0
    assert "gemini" in capsys.readouterr().out
    assert main(["plan", "--limit", "3", "--out", str(tmp_path), "-m", f"gemini:{MODEL}@{api.base_url}/v1beta/openai",
                 "-m", f"gemini:{MODEL}-lite@{api.base_url}/v1beta/openai"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "$0.3 / $2.5 per 1M" in out and "$0.1 / $0.4 per 1M" in out
    assert api.requests == []
