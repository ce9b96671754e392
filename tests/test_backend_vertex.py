"""The Vertex backend through the real ``anthropic`` SDK (``AsyncAnthropicVertex``) and the real
``google-auth`` Application Default Credentials, against the fake API's Vertex and token routes.

The credentials are a service-account key file made here (a fresh RSA key) whose ``token_uri`` is the
fake's: google-auth signs a JWT grant with it, the fake checks the signature with the public key and
issues the access token the Vertex route then requires. Asserts on the rawPredict URL (project,
region, model), the body, where the project and region come from, refreshed tokens kept out of every
output, Vertex's errors, and a run of ``python -m gmai_client run``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("anthropic")
pytest.importorskip("aiohttp")
pytest.importorskip("google.auth")
pytest.importorskip("cryptography")

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gmai_client import errors
from gmai_client.backends import registry
from gmai_client.backends.vertex import VertexBackend
from gmai_client.cli import main
from gmai_client.config import parse_model_spec
from gmai_client.testing.fake_api import FakeAPI, request_key
from gmai_client.testing.fake_clouds import FakeClouds, ServiceAccount
from gmai_client.types import Request
from tests.api_backend_kit import fails, generate, pixels_sha, sample_request
from tests.cloud_kit import CLOUD_VARIABLES, clean_environment, cli

PROJECT = "medical-eval-4821"
EMAIL = f"gmai-eval@{PROJECT}.iam.gserviceaccount.com"
MODEL = "claude-sonnet-4-5@20250929"
REGION = "us-east5"


def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def account_key() -> rsa.RSAPrivateKey:
    return private_key()


@pytest.fixture(scope="module")
def server(account_key: rsa.RSAPrivateKey) -> Iterator[tuple[FakeAPI, FakeClouds]]:
    public = account_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    api = FakeAPI()
    clouds = FakeClouds(api, service_account=ServiceAccount(EMAIL, public), vertex_project=PROJECT)
    with api:
        yield api, clouds


def key_file(folder: Path, api: FakeAPI, key: rsa.RSAPrivateKey, project: str = PROJECT) -> Path:
    """A service account's key file whose token_uri is the fake's token endpoint."""
    path = folder / "service-account.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": project, "private_key_id": "0123abcd", "private_key": pem(key),
        "client_email": EMAIL, "client_id": "100000000000000000001", "token_uri": f"{api.base_url}/token",
    }))  # fmt: skip
    return path


@pytest.fixture
def api(
    server: tuple[FakeAPI, FakeClouds], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, account_key: rsa.RSAPrivateKey
) -> FakeAPI:
    for name in CLOUD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    fake, clouds = server
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file(tmp_path, fake, account_key)))
    monkeypatch.setenv("CLOUD_ML_REGION", REGION)
    fake.reset()
    fake.answers, fake.fallback, fake.echo_key = {}, "A", False
    clouds.google_token, clouds.token_lifetime = "", 3599
    return fake


@pytest.fixture
def clouds(server: tuple[FakeAPI, FakeClouds], api: FakeAPI) -> FakeClouds:
    return server[1]


@pytest.fixture(scope="module")
def request_() -> Request:
    return sample_request()


def backend(api: FakeAPI, model: str = MODEL, **options: str) -> VertexBackend:
    built = registry.create(parse_model_spec(f"vertex:{model}@{api.base_url}/v1", {"timeout": "2", **options}))
    assert isinstance(built, VertexBackend)
    return built


# ---------------------------------------------------------------------- the request


def test_raw_predict_with_a_token_from_the_service_accounts_grant(
    api: FakeAPI, clouds: FakeClouds, request_: Request
) -> None:
    api.answers = {request_key(request_): "C"}
    response = generate(backend(api), request_)

    assert response.text == "C"
    grant, call = clouds.calls
    assert grant.cloud == "google-token" and grant.ok  # the JWT was signed with the account's key
    assert call.path == f"/v1/projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models/{MODEL}:rawPredict"
    assert call.auth == "bearer" and call.ok
    (seen,) = api.requests
    assert seen.model == MODEL and seen.content_types == ("image", "text") and seen.system == "Be brief."
    assert seen.image_sha256 == (pixels_sha(request_.images[0]),)
    assert "model" not in seen.params and seen.params["max_tokens"] == 32


def test_where_the_project_and_the_region_come_from(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    def project(**options: str) -> str:
        return backend(api, **options).identity()["project"]

    assert project() == PROJECT  # the credentials' own
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-google-cloud-project")
    assert project() == "from-google-cloud-project"
    monkeypatch.setenv("ANTHROPIC_VERTEX_PROJECT_ID", "from-anthropic-variable")
    assert project() == "from-anthropic-variable"
    assert project(project="from-option") == "from-option"

    assert backend(api, region="europe-west1").identity()["region"] == "europe-west1"
    monkeypatch.setenv("CLOUD_ML_REGION", "global")
    assert registry.create(parse_model_spec(f"vertex:{MODEL}")).identity()["url"].startswith(
        "https://aiplatform.googleapis.com/v1/projects/from-anthropic-variable/locations/global/"
    )
    monkeypatch.delenv("CLOUD_ML_REGION")
    with pytest.raises(errors.ConfigError, match="CLOUD_ML_REGION"):
        backend(api)


def test_a_model_id_without_a_version_and_an_access_token_from_a_variable(
    api: FakeAPI, clouds: FakeClouds, request_: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    clouds.google_token = "ya29.printed-by-gcloud-0042"
    monkeypatch.setenv("GCP_ACCESS_TOKEN", clouds.google_token)

    generate(backend(api, "claude-opus-4-6", api_key_env="GCP_ACCESS_TOKEN"), request_)

    assert [c.cloud for c in clouds.calls] == ["vertex"]  # no grant: the token was given
    assert api.requests[0].model == "claude-opus-4-6"


def test_every_refreshed_token_is_a_secret(api: FakeAPI, clouds: FakeClouds, request_: Request) -> None:
    clouds.token_lifetime = 60  # inside google-auth's refresh margin: the SDK refreshes before every request
    api.echo_key = True  # a careless server: the token it was sent comes back in the answer
    b = backend(api)

    async def twice() -> list[str]:
        try:
            await b.start()
            return [(await b.generate(request_)).text for _ in range(2)]
        finally:
            await b.close()

    texts = asyncio.run(twice())

    sent = [re.search(r"ya29\.fake-[0-9a-f]+", text).group() for text in texts]  # type: ignore[union-attr]
    assert len(set(sent)) == 2 and set(sent) <= set(clouds.issued)  # minted while running, not at start only
    assert [errors.redact(text) for text in texts] == ["[your key is [REDACTED]] A"] * 2


def test_a_key_the_token_endpoint_does_not_know_is_an_auth_error_before_vertex_is_asked(
    api: FakeAPI, clouds: FakeClouds, request_: Request, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file(tmp_path, api, private_key())))

    error = fails(backend(api), request_)
    assert isinstance(error, errors.AuthError) and "invalid JWT signature" in str(error)
    assert [c.cloud for c in clouds.calls] == ["google-token"] and api.requests == []


# ---------------------------------------------------------------------- Vertex's answers


@pytest.mark.parametrize(
    ("status", "expected"),
    [(404, errors.ModelNotFound), (403, errors.AuthError), (503, errors.Overloaded), (529, errors.Overloaded),
     (500, errors.ServerError), (400, errors.BadRequest)],
)  # fmt: skip
def test_vertex_errors_map_to_the_retry_policy(api: FakeAPI, request_: Request, status: int, expected: type) -> None:
    api.inject("status", status=status)
    assert type(fails(backend(api), request_)) is expected


def test_resource_exhausted_waits_the_delay_google_asks_for(api: FakeAPI, request_: Request) -> None:
    api.inject("status", status=429, retry_after=4)  # sent as a google.rpc.RetryInfo in the body

    error = fails(backend(api), request_)
    assert isinstance(error, errors.RateLimited) and error.retry_after == 4
    assert "RESOURCE_EXHAUSTED" in str(error)


# ---------------------------------------------------------------------- the CLI


def test_a_run_through_the_cli_keeps_no_token(
    api: FakeAPI, clouds: FakeClouds, tmp_path: Path, account_key: rsa.RSAPrivateKey
) -> None:
    api.echo_key = True
    api.inject("status", status=429, retry_after=1)
    credentials = key_file(tmp_path, api, account_key)
    env = clean_environment(tmp_path / "home", GOOGLE_APPLICATION_CREDENTIALS=str(credentials), CLOUD_ML_REGION=REGION)

    done = cli("run", ["--limit", "3", "--max-attempts", "3", "-m", f"vertex:{MODEL}@{api.base_url}/v1"],
               tmp_path / "runs", env)  # fmt: skip

    assert done.code == 0, done.stderr
    assert [r.status for r in done.records] == ["ok", "ok", "ok"]
    assert all(r.prediction.startswith("[your key is [REDACTED]]") for r in done.records)
    (identity,) = done.config["identity"]["resolved"]["models"].values()
    assert identity["url"] == f"{api.base_url}/v1/projects/{PROJECT}/locations/{REGION}/publishers/anthropic/" \
        f"models/{MODEL}:rawPredict"
    outputs = done.stdout + done.stderr + "".join(
        p.read_text("utf-8", "replace") for p in (tmp_path / "runs").rglob("*") if p.is_file()
    )
    assert clouds.issued and not any(token in outputs for token in clouds.issued)


def test_backends_lists_vertex_and_plan_prices_it(
    api: FakeAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backends"]) == 0
    assert "vertex" in capsys.readouterr().out

    assert main(["plan", "--limit", "3", "--out", str(tmp_path), "-m", f"vertex:{MODEL}@{api.base_url}/v1"]) == 0
    assert "$3 / $15 per 1M" in capsys.readouterr().out
    assert api.requests == []
