"""The Azure OpenAI backend through the real ``openai`` SDK (``AsyncAzureOpenAI``) and, for Entra ID,
the real ``azure-identity``, against the fake API's Azure routes on loopback.

Asserts on the URL and headers Azure sees (deployment path, api-version, api-key or Bearer), the
deployment vs the model it serves, Azure's content filter (its own error kind, never retried), its
rate-limit hints, and a run of ``python -m gmai_client run`` whose run folder names the URL called.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("aiohttp")
pytest.importorskip("azure.identity")

from gmai_client import errors
from gmai_client.backends import registry
from gmai_client.backends.azure import DEFAULT_API_VERSION, AzureBackend, AzureOptions
from gmai_client.cli import main
from gmai_client.config import parse_model_spec
from gmai_client.testing.fake_api import FakeAPI, request_key
from gmai_client.testing.fake_clouds import FakeClouds
from gmai_client.types import Request
from tests.api_backend_kit import fails, generate, pixels_sha, sample_request
from tests.cloud_kit import CLOUD_VARIABLES, clean_environment, cli

KEY = "azure-test-key-5b9e2c7d41"
DEPLOYMENT = "gpt4o-eval"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeAPI, FakeClouds]]:
    api = FakeAPI()
    clouds = FakeClouds(api)
    with api:
        yield api, clouds


@pytest.fixture
def api(server: tuple[FakeAPI, FakeClouds], monkeypatch: pytest.MonkeyPatch) -> FakeAPI:
    for name in CLOUD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    fake, clouds = server
    fake.reset()
    fake.answers, fake.fallback, fake.require_key = {}, "A", KEY
    clouds.entra_token = ""
    return fake


@pytest.fixture
def clouds(server: tuple[FakeAPI, FakeClouds], api: FakeAPI) -> FakeClouds:
    return server[1]


@pytest.fixture(scope="module")
def request_() -> Request:
    return sample_request()


def backend(api: FakeAPI, **kwargs: object) -> AzureBackend:
    kwargs.setdefault("timeout", 2.0)
    return AzureBackend(DEPLOYMENT, endpoint=api.base_url, options=AzureOptions(**kwargs))  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the request Azure sees


def test_the_deployment_url_the_api_version_and_the_api_key_header(
    api: FakeAPI, clouds: FakeClouds, request_: Request
) -> None:
    api.answers = {request_key(request_): "B"}
    response = generate(backend(api, model="gpt-4o"), request_)

    assert response.text == "B" and response.finish_reason == "stop"
    (call,) = clouds.calls
    assert call.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert call.query == f"api-version={DEFAULT_API_VERSION}"
    (seen,) = api.requests  # one HTTP request: the SDK does not retry
    assert seen.auth_schemes == ("api-key",)  # Azure's header, not OpenAI's Bearer
    assert seen.model == DEPLOYMENT and seen.content_types == ("image", "text")
    assert seen.image_sha256 == (pixels_sha(request_.images[0]),)
    assert seen.params["max_tokens"] == 32 and seen.params["temperature"] == 0.3


def test_the_api_version_comes_from_the_option_else_the_sdks_variable(
    api: FakeAPI, clouds: FakeClouds, request_: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_VERSION", "2025-01-01-preview")
    generate(backend(api), request_)
    generate(backend(api, api_version="2024-06-01"), request_)

    assert [c.query for c in clouds.calls] == ["api-version=2025-01-01-preview", "api-version=2024-06-01"]


def test_identity_names_the_url_called_and_the_served_model_prices_it(api: FakeAPI) -> None:
    built = registry.create(parse_model_spec(f"azure:{DEPLOYMENT}@{api.base_url}", {"model": "gpt-4o"}))

    identity = built.identity()
    assert identity["url"] == (
        f"{api.base_url}/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={DEFAULT_API_VERSION}"
    )
    assert identity["model"] == DEPLOYMENT and "gpt-4o" not in identity.values()  # -B model= changes no answer
    assert "model" in registry.answer_neutral_options("azure")


def test_the_resource_comes_from_azure_openai_endpoint_and_must_be_given(
    api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(errors.ConfigError, match="AZURE_OPENAI_ENDPOINT"):
        registry.create(parse_model_spec(f"azure:{DEPLOYMENT}"))
    with pytest.raises(errors.ConfigError, match="without /openai"):
        registry.create(parse_model_spec(f"azure:{DEPLOYMENT}@{api.base_url}/openai"))
    # Azure takes a key or a token, never a URL's user:password@ (httpx would refuse them at every request).
    with_credentials = api.base_url.replace("http://", "http://erin:AzPassw0rd55443322@")
    with pytest.raises(errors.ConfigError, match="credentials in the endpoint URL") as refused:
        registry.create(parse_model_spec(f"azure:{DEPLOYMENT}@{with_credentials}"))
    assert "AzPassw0rd55443322" not in str(refused.value)

    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", api.base_url)
    assert registry.create(parse_model_spec(f"azure:{DEPLOYMENT}")).identity()["endpoint"] == api.base_url


# ---------------------------------------------------------------------- credentials


def test_entra_id_through_azure_identity_when_no_key_is_set(
    api: FakeAPI, clouds: FakeClouds, request_: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DefaultAzureCredential finds a managed identity (App Service's variables) and asks it.
    token = "entra-token-7c1d9e0b3a5f"
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{api.base_url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", clouds.identity_header)
    clouds.entra_token = api.require_key = token

    b = backend(api)

    async def twice() -> None:
        try:
            for _ in range(2):
                await b.generate(request_)
        finally:
            await b.close()

    asyncio.run(twice())
    assert [c.cloud for c in clouds.calls] == ["entra", "azure", "azure"]  # one token, cached by azure-identity
    assert clouds.calls[0].query.endswith("resource=https://cognitiveservices.azure.com")
    assert [r.auth_schemes for r in api.requests] == [("bearer",), ("bearer",)]
    assert errors.redact(f"token {token}") == "token [REDACTED]"  # a token from no variable is a secret too


def test_a_static_entra_token_from_azure_openai_ad_token(
    api: FakeAPI, request_: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    monkeypatch.setenv("AZURE_OPENAI_AD_TOKEN", "static-entra-token-42")
    api.require_key = "static-entra-token-42"

    generate(backend(api), request_)
    assert api.requests[0].auth_schemes == ("bearer",)


def test_no_credential_at_all_is_an_auth_error_before_anything_is_sent(
    api: FakeAPI, clouds: FakeClouds, request_: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{api.base_url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", clouds.identity_header)  # the identity endpoint has no identity

    error = fails(backend(api), request_)
    assert isinstance(error, errors.AuthError) and "Entra ID" in str(error)
    assert api.requests == []


# ---------------------------------------------------------------------- Azure's answers


def test_a_filtered_prompt_is_content_filtered_not_a_bad_request(api: FakeAPI, request_: Request) -> None:
    message = "The response was filtered due to the prompt triggering Azure OpenAI's content management policy."
    api.inject("status", status=400, code="content_filter", message=message)

    error = fails(backend(api), request_)
    assert isinstance(error, errors.ContentFiltered) and not isinstance(error, errors.RetryableError)
    assert error.kind == "content_filter" and "prompt was filtered" in str(error)


def test_a_filtered_answer_is_content_filtered_not_an_empty_answer(api: FakeAPI, request_: Request) -> None:
    api.inject("content_filter")  # 200, finish_reason content_filter, no content

    error = fails(backend(api), request_)
    assert isinstance(error, errors.ContentFiltered) and "answer was filtered" in str(error)


def test_rate_limit_hints_from_azures_headers_or_its_message(api: FakeAPI, request_: Request) -> None:
    api.inject("status", status=429, headers={"retry-after-ms": "1500", "x-ratelimit-remaining-requests": "0"})
    api.inject("status", status=429, message="Requests to the ChatCompletions_Create Operation under Azure OpenAI "
               "API version 2024-10-21 have exceeded token rate limit. Please retry after 7 seconds.")  # fmt: skip

    first, second = fails(backend(api), request_), fails(backend(api), request_)
    assert isinstance(first, errors.RateLimited) and first.retry_after == pytest.approx(1.5)
    assert isinstance(second, errors.RateLimited) and second.retry_after == 7


# ---------------------------------------------------------------------- the CLI


def test_a_run_through_the_cli_and_its_run_folder(api: FakeAPI, clouds: FakeClouds, tmp_path: Path) -> None:
    api.inject("status", status=400, code="content_filter", message="The response was filtered.", times=1)
    env = clean_environment(tmp_path / "home", AZURE_OPENAI_API_KEY=KEY, AZURE_OPENAI_ENDPOINT=api.base_url)

    done = cli("run", ["--limit", "4", "--max-attempts", "3", "-m", f"azure:{DEPLOYMENT}", "-B", "model=gpt-4o"],
               tmp_path / "runs", env)  # fmt: skip

    assert done.code == 4, done.stderr  # the filtered item is an error: the run says so
    statuses = sorted((r.status, r.error_kind) for r in done.records)
    assert statuses == [("error", "content_filter"), ("ok", ""), ("ok", ""), ("ok", "")]
    assert len(api.requests) == 4  # the filtered item was not sent again
    assert "content filter" in done.stderr
    (identity,) = done.config["identity"]["resolved"]["models"].values()
    assert identity["url"].startswith(f"{api.base_url}/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=")
    assert KEY not in done.stdout + done.stderr + "".join(p.read_text("utf-8", "replace") for p in
                                                          done.run_dir.rglob("*.json*"))  # fmt: skip


def test_backends_lists_azure_with_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "azure" in out and "api_version" in out and "Entra" in out


def test_plan_prices_the_model_the_deployment_serves(
    api: FakeAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--limit", "3", "--out", str(tmp_path), "-m", f"azure:{DEPLOYMENT}@{api.base_url}"]
    assert main(["plan", *args, "-B", "model=gpt-4o-mini"]) == 0
    priced = capsys.readouterr().out
    assert "azure:gpt-4o-mini" in priced and "$0.15 / $0.6 per 1M" in priced
    assert main(["plan", *args]) == 0
    assert "no price known" in capsys.readouterr().out  # a deployment's own name is no model
    assert api.requests == []


def test_the_served_models_request_rules_follow_the_model_option(api: FakeAPI, request_: Request) -> None:
    # A deployment named anything serving GPT-5 takes GPT-5's fields (the model families table's).
    generate(backend(api, model="gpt-5"), request_)
    generate(backend(api), request_)

    reasoner, plain = api.requests
    assert "max_completion_tokens" in reasoner.params and "temperature" not in reasoner.params
    assert "max_tokens" in plain.params and plain.params["temperature"] == 0.3
