"""The Bedrock backend through the real ``anthropic`` SDK (``AsyncAnthropicBedrock``, botocore's SigV4
signer) against the fake API's Bedrock route, which checks every signature itself.

The fake computes the signature from AWS's rules with its own code (``fake_sigv4``) and the keys it
was given: a request signed with any other secret, for another region, or without the session token
is refused as AWS refuses it. Asserts on the InvokeModel path and body, the AWS credential chain
(environment, profiles, a Bedrock API key), Bedrock's exceptions mapped to the retry policy, and a
run of ``python -m gmai_client run`` whose outputs hold the URL called and none of the secrets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("anthropic")
pytest.importorskip("aiohttp")
pytest.importorskip("boto3")

from gmai_client import errors
from gmai_client.backends import registry
from gmai_client.backends.bedrock import BEDROCK_VERSION, BedrockBackend
from gmai_client.cli import main
from gmai_client.config import parse_model_spec
from gmai_client.testing.fake_api import FakeAPI, request_key
from gmai_client.testing.fake_clouds import FakeClouds
from gmai_client.testing.fake_sigv4 import AwsKeys
from gmai_client.types import Request
from tests.api_backend_kit import fails, generate, pixels_sha, sample_request
from tests.cloud_kit import CLOUD_VARIABLES, clean_environment, cli

KEYS = AwsKeys("AKIAFAKE0TEST0KEY01", "test-secret-3f8a1c9e5d7b2a46", "test-session-token-9d2e4f6a8b", "eu-west-1")
MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeAPI, FakeClouds]]:
    api = FakeAPI()
    clouds = FakeClouds(api)
    with api:
        yield api, clouds


@pytest.fixture
def api(server: tuple[FakeAPI, FakeClouds], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeAPI:
    for name in CLOUD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEYS.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", KEYS.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", KEYS.session_token)
    monkeypatch.setenv("AWS_REGION", KEYS.region)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to look for
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))  # never the user's files
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    fake, clouds = server
    fake.reset()
    fake.answers, fake.fallback, fake.echo_key = {}, "A", False
    clouds.aws, clouds.bedrock_api_key = KEYS, ""
    return fake


@pytest.fixture
def clouds(server: tuple[FakeAPI, FakeClouds], api: FakeAPI) -> FakeClouds:
    return server[1]


@pytest.fixture(scope="module")
def request_() -> Request:
    return sample_request()


def backend(api: FakeAPI, model: str = MODEL, **options: str) -> BedrockBackend:
    built = registry.create(parse_model_spec(f"bedrock:{model}@{api.base_url}", {"timeout": "2", **options}))
    assert isinstance(built, BedrockBackend)
    return built


# ---------------------------------------------------------------------- the signed request


def test_invoke_model_signed_with_the_configured_keys(api: FakeAPI, clouds: FakeClouds, request_: Request) -> None:
    api.answers = {request_key(request_): "D"}
    response = generate(backend(api), request_)

    assert response.text == "D" and response.finish_reason == "stop"
    (call,) = clouds.calls
    assert call.path == f"/model/{MODEL}/invoke" and call.auth == "sigv4" and call.ok  # the server checked it
    (seen,) = api.requests  # one HTTP request: the SDK does not retry
    assert seen.model == MODEL and seen.content_types == ("image", "text") and seen.system == "Be brief."
    assert seen.image_sha256 == (pixels_sha(request_.images[0]),)
    assert seen.params["max_tokens"] == 32
    assert "model" not in seen.params  # the fake refuses a body naming the model, as Bedrock does


def test_a_request_signed_with_another_secret_is_refused_by_the_server(
    api: FakeAPI, clouds: FakeClouds, request_: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-the-server-knows")

    error = fails(backend(api), request_)
    assert isinstance(error, errors.AuthError) and "InvalidSignatureException" in str(error)
    assert clouds.calls[0].auth == "sigv4 refused: InvalidSignatureException" and api.requests == []


def test_a_signature_for_another_region_is_refused(
    api: FakeAPI, clouds: FakeClouds, request_: Request
) -> None:
    error = fails(backend(api, region="us-west-2"), request_)  # the option beats AWS_REGION
    assert isinstance(error, errors.AuthError) and "region" in str(error)


def test_cross_region_profile_ids_and_arns_are_signed_and_routed(
    api: FakeAPI, clouds: FakeClouds, request_: Request
) -> None:
    arn = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/a1b2c3"
    for model in (f"eu.{MODEL}", f"global.{MODEL}", arn):
        generate(backend(api, model), request_)

    assert [r.model for r in api.requests] == [f"eu.{MODEL}", f"global.{MODEL}", arn]
    assert all(c.ok for c in clouds.calls)
    assert backend(api, arn).identity()["url"].endswith("/model/" + arn.replace("/", "%2F") + "/invoke")


def test_the_body_says_bedrocks_anthropic_version(api: FakeAPI, clouds: FakeClouds, request_: Request) -> None:
    clouds.bedrock_versions = frozenset({BEDROCK_VERSION})
    generate(backend(api), request_)  # the SDK's own default version would be refused here
    assert len(api.requests) == 1

    error = fails(backend(api, anthropic_version="2026-10-21"), request_)
    assert isinstance(error, errors.BadRequest) and "ValidationException" in str(error)


# ---------------------------------------------------------------------- the AWS credential chain


def test_a_profile_from_the_shared_files_gives_the_keys_and_the_region(
    api: FakeAPI, clouds: FakeClouds, request_: Request, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name)
    secret = "profile-secret-0c7e2b9a4f"
    (tmp_path / "aws-credentials").write_text(
        f"[medical-eval]\naws_access_key_id = AKIAPROFILE00000001\naws_secret_access_key = {secret}\n"
    )
    (tmp_path / "aws-config").write_text("[profile medical-eval]\nregion = ap-southeast-2\n")
    clouds.aws = AwsKeys("AKIAPROFILE00000001", secret, region="ap-southeast-2")

    b = backend(api, profile="medical-eval")
    generate(b, request_)

    assert clouds.calls[0].auth == "sigv4" and b.identity()["region"] == "ap-southeast-2"
    assert errors.redact(f"secret {secret}") == "secret [REDACTED]"  # read from a file, still a secret


def test_a_bedrock_api_key_is_sent_as_bearer(
    api: FakeAPI, clouds: FakeClouds, request_: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    clouds.bedrock_api_key = "bedrock-api-key-ABSKfake0123456789"
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", clouds.bedrock_api_key)

    generate(backend(api), request_)
    assert clouds.calls[0].auth == "bearer" and clouds.calls[0].ok


def test_no_region_and_no_credentials_are_said_before_anything_is_sent(
    api: FakeAPI, request_: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(errors.ConfigError, match="no AWS region"):
        backend(api)

    monkeypatch.setenv("AWS_REGION", KEYS.region)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    error = fails(backend(api), request_)
    assert isinstance(error, errors.AuthError) and "no AWS credentials" in str(error)
    assert api.requests == []


# ---------------------------------------------------------------------- Bedrock's exceptions


@pytest.mark.parametrize(
    ("status", "aws_type", "message", "expected"),
    [
        (429, None, "Too many requests, please wait before trying again.", errors.RateLimited),
        (400, "ServiceQuotaExceededException", "Your request exceeds the service quota.", errors.RateLimited),
        (429, "ModelNotReadyException", "Model is not ready to serve inference requests.", errors.Overloaded),
        (503, None, "Bedrock is unable to process your request.", errors.Overloaded),
        (408, None, "Model has timed out in processing the request.", errors.RequestTimeout),
        (424, "ModelErrorException", "The model returned an error.", errors.ServerError),
        (403, None, "You don't have access to the model with the specified model ID.", errors.AuthError),
        (400, None, "The provided model identifier is invalid.", errors.ModelNotFound),
        (400, None, "messages.0.content: Input should be a valid list", errors.BadRequest),
    ],
)
def test_bedrocks_exceptions_map_to_the_retry_policy(
    api: FakeAPI, request_: Request, status: int, aws_type: str | None, message: str, expected: type
) -> None:
    api.inject("status", status=status, error_type=aws_type, message=message)

    error = fails(backend(api), request_)
    assert type(error) is expected, error
    assert f"HTTP {status} " in str(error) and message.split(".")[0] in str(error)


def test_on_demand_refusal_advises_an_inference_profile(api: FakeAPI, request_: Request) -> None:
    refusal = (
        "Invocation of model ID anthropic.claude-sonnet-4-5 with on-demand throughput isn't supported. "
        "Retry your request with the ID or ARN of an inference profile."
    )
    api.inject("status", status=400, message=refusal)
    assert "global.MODEL_ID" in str(fails(backend(api), request_))


# ---------------------------------------------------------------------- the CLI


def test_a_run_through_the_cli_is_throttled_retried_and_keeps_no_secret(
    api: FakeAPI, clouds: FakeClouds, tmp_path: Path
) -> None:
    api.echo_key = True  # a careless server: the session token comes back in every answer and error
    api.inject("status", status=429, message="Too many requests, please wait before trying again.", times=2)
    env = clean_environment(
        tmp_path / "home", AWS_ACCESS_KEY_ID=KEYS.access_key, AWS_SECRET_ACCESS_KEY=KEYS.secret_key,
        AWS_SESSION_TOKEN=KEYS.session_token, AWS_REGION=KEYS.region,
    )  # fmt: skip

    done = cli("run", ["--limit", "3", "--max-attempts", "4", "-m", f"bedrock:eu.{MODEL}@{api.base_url}"],
               tmp_path / "runs", env)  # fmt: skip

    assert done.code == 0, done.stderr
    assert [r.status for r in done.records] == ["ok", "ok", "ok"]
    assert sum(r.attempts for r in done.records) == 5 and {c.auth for c in clouds.calls} == {"sigv4"}
    assert any("rate_limited" in " ".join(r.retries) for r in done.records)
    (identity,) = done.config["identity"]["resolved"]["models"].values()
    assert identity["url"] == f"{api.base_url}/model/eu.{MODEL}/invoke" and identity["region"] == KEYS.region
    outputs = done.stdout + done.stderr + "".join(p.read_text("utf-8", "replace") for p in tmp_path.rglob("*.*")
                                                  if p.is_file() and "home" not in p.parts)  # fmt: skip
    assert KEYS.session_token not in outputs and KEYS.secret_key not in outputs


def test_backends_lists_bedrock_and_plan_prices_a_cross_region_profile(
    api: FakeAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backends"]) == 0
    assert "bedrock" in capsys.readouterr().out

    assert main(["plan", "--limit", "3", "--out", str(tmp_path), "-m", f"bedrock:global.{MODEL}@{api.base_url}",
                 "-m", f"bedrock:us.{MODEL}@{api.base_url}"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "$3 / $15 per 1M" in out and "$3.3 / $16.5 per 1M" in out  # a regional profile costs 10% more
    assert api.requests == []


def test_a_bedrock_api_key_in_the_sdks_variable_is_not_silently_used_for_another_choice(
    api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK sends AWS_BEARER_TOKEN_BEDROCK whenever it is set: asking for SigV4 beside it is refused.
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-left-in-the-shell")
    with pytest.raises(errors.ConfigError, match="AWS_BEARER_TOKEN_BEDROCK is set"):
        backend(api, api_key_env="MY_BEDROCK_KEY")
    assert api.requests == []


def test_claudes_request_rules_follow_the_model_an_id_names(api: FakeAPI, request_: Request) -> None:
    # Opus 4.7 takes only its default temperature (the model families table): so through Bedrock too.
    generate(backend(api, "global.anthropic.claude-opus-4-7-v1"), request_)
    generate(backend(api, f"us.{MODEL}"), request_)

    opus, sonnet = api.requests
    assert "temperature" not in opus.params and sonnet.params["temperature"] == 0.3
