"""No API key reaches any output, whatever variable it came from and whatever the server does with it.

A canary value sits in every variable a run reads a key from: ``OPENAI_API_KEY``,
``ANTHROPIC_API_KEY``, a custom ``api_key_env`` variable whose name does not look secret, and the
judge's own variable. The fake server echoes the key it was sent in every error message and in
every answer, so each key comes back in error bodies, in successful answers (some of which only
the judge can read), and in the reason a model was stopped. Then every file under the run folder
(inside the xlsx archives too), the cache file, the log and the captured stdout/stderr are searched
for each canary. So are the values of variables no backend reads but whose names say they hold a
secret (``HF_TOKEN``, ``*_SECRET``, ``*_PASSWORD``, ...): the fake model quotes them in its answers.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")
pytest.importorskip("aiohttp")

from gmai_client.cli import main
from gmai_client.data.dataset import iter_items, open_dataset
from gmai_client.data.splits import sample_path
from gmai_client.errors import redact, redact_url, register_secret
from gmai_client.protocol.prompt import build_request
from gmai_client.results.records import read_records
from gmai_client.testing.fake_api import FakeAPI, request_key
from gmai_client.types import Item, SamplingParams

#: Values shaped like no known key (no sk-/hf_ prefix): only knowing the exact value redacts them.
CANARIES = {
    "OPENAI_API_KEY": "canary-openai-5f1c0e9a7b",
    "ANTHROPIC_API_KEY": "canary-anthropic-3d8e2b6a",
    "MY_CRED": "canary-custom-c4a9e7f2d1",  # a name no "secret-looking name" rule would catch
    "JUDGE_CRED": "canary-judge-b2f8a1e6c3",
}
#: Secrets no backend reads, known only by their variable's name (none shaped like a known key).
NAMED_CANARIES = {
    "HF_TOKEN": "canary-hf-token-9e1d7c3b",
    "GITHUB_TOKEN": "canary-github-token-4a6f2e8d",
    "CLIENT_SECRET": "canary-client-secret-7b3c9d1e",
    "DB_PASSWORD": "canary-db-password-2f8e6a4c",
    "SMTP_PASSWD": "canary-smtp-passwd-5d1b7f3a",
    "SERVICE_CREDENTIALS": "canary-credentials-8c2a4e6f",
    "STRIPE_KEY": "canary-stripe-key-6e4c2a8b",
}


def file_texts(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` as text; an xlsx (a zip archive) as the text of its members."""
    texts = {}
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    texts[f"{path}:{member}"] = archive.read(member).decode("utf-8", "replace")
        else:
            texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    return texts


def test_a_canary_in_every_key_variable_reaches_no_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    for name, value in {**CANARIES, **NAMED_CANARIES}.items():
        monkeypatch.setenv(name, value)
    items = [e for e in iter_items(open_dataset([sample_path()])) if isinstance(e, Item)][:12]
    keys = [request_key(build_request(item, params=SamplingParams())) for item in items]
    unreadable = set(keys[1::3])  # answers only the judge can read
    quoting = set(keys[2::3])  # answers that quote the environment's secrets
    environment = " ".join(f"{name}={value}" for name, value in NAMED_CANARIES.items())

    def answer(received) -> str:
        if received.model == "judge":
            return "B"
        if received.key in quoting:
            return f"A (the server's environment: {environment})"
        return "Hard to tell from this image." if received.key in unreadable else "A"

    with FakeAPI(answers=answer, echo_key=True, models={"gpt-4o", "claude", "custom", "judge"}) as api:
        api.inject("500", key=keys[0], times=8)  # item 0 fails every attempt of every model
        base = api.base_url_openai
        main([
            "run", "--no-progress", "--limit", "12", "--max-attempts", "2", "--concurrency", "2",
            "--out", str(tmp_path / "runs"), "--cache-path", str(tmp_path / "cache" / "responses.sqlite"),
            "-m", f"openai:gpt-4o@{base}",
            "-m", f"anthropic:claude@{api.base_url_anthropic}",
            "-m", f"openai:custom@{base}", "-B", "api_key_env=MY_CRED",
            "-m", f"openai:missing@{base}", "-B", "api_key_env=MY_CRED",  # 404, echoed: the model stops
            "--judge", f"openai:judge@{base}", "-J", "api_key_env=JUDGE_CRED",
        ])  # fmt: skip
        outcomes = api.stats()["outcomes"]
    printed = capsys.readouterr()

    # The server did echo every key, in errors and in answers, and the judge was asked.
    (run_dir,) = (tmp_path / "runs").iterdir()
    records = read_records(run_dir / "records.jsonl")
    assert outcomes.get("500", 0) >= 6 and outcomes.get("model_not_found", 0) >= 1
    assert {r.model for r in records if r.status == "error" and "key sent: [REDACTED]" in r.error} >= {
        "gpt-4o", "claude", "custom",
    }  # fmt: skip
    assert all(r.prediction.startswith("[your key is [REDACTED]]") for r in records if r.prediction)
    assert any("HF_TOKEN=[REDACTED] GITHUB_TOKEN=[REDACTED]" in (r.prediction or "") for r in records)
    assert any(r.rule.startswith("judge") for r in records)
    metrics = (run_dir / "metrics.json").read_text()
    assert "key sent: [REDACTED]" in metrics  # the stopped model's reason, redacted

    outputs = {"stdout": printed.out, "stderr": printed.err, "log": caplog.text, **file_texts(tmp_path)}
    assert any(name.endswith("report.html") for name in outputs) and any(".sqlite" in name for name in outputs)
    for name, value in {**CANARIES, **NAMED_CANARIES}.items():
        leaks = [where for where, text in outputs.items() if value in text]
        assert leaks == [], f"the value of {name} leaked into {leaks}"


def test_a_registered_value_is_redacted_whatever_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "plain-looking-value-0042"
    monkeypatch.setenv("UPSTREAM_CRED", secret)  # a name that does not look secret
    assert redact(f"bad credentials {secret}!") == f"bad credentials {secret}!"

    register_secret(secret)

    assert redact(f"bad credentials {secret}!") == "bad credentials [REDACTED]!"
    assert redact(f"{secret}{secret}") == "[REDACTED][REDACTED]"


def test_too_short_a_value_is_not_registered() -> None:
    register_secret("abc")  # redacting it would maim every text holding those letters
    register_secret(None)
    assert redact("abc is fine") == "abc is fine"


@pytest.mark.parametrize("name", [*NAMED_CANARIES, "HUGGING_FACE_HUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD"])
def test_a_variable_whose_name_says_secret_is_redacted(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    value = f"value-of-{name.lower()}-0042"
    monkeypatch.setenv(name, value)
    assert redact(f"the server said {value}.") == "the server said [REDACTED]."


def test_secret_looking_variables_are_redacted_as_soon_as_they_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-first-value-1")
    assert redact("key azure-first-value-1") == "key [REDACTED]"
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-second-value-2")
    assert redact("key azure-second-value-2") == "key [REDACTED]"


#: Credentials written into endpoint URLs (none is in any variable: only the URL holds them).
URL_CANARIES = {
    "password": "canary-url-password-71c3",
    "user": "canary-url-user-0d4e",
    "api-key": "canary-url-apikey-5e2b9d",
    "key": "canary-url-key-8a1f60",
}


def test_credentials_in_an_endpoint_url_reach_no_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a self-hosted gateway: its key is in the URL only
    gateway_key = URL_CANARIES["api-key"]
    with FakeAPI(require_key=gateway_key, echo_key=True) as api:  # echoes the key it was sent everywhere
        host = api.base_url_openai.removeprefix("http://")
        main([
            "run", "--no-progress", "--limit", "4", "--max-attempts", "2", "--concurrency", "2",
            "--out", str(tmp_path / "runs"), "--cache-path", str(tmp_path / "cache" / "responses.sqlite"),
            "-m", f"openai:gpt-4o@http://{host}?api-key={gateway_key}&api-version=2024-06-01",
            "-m", f"openai:other@http://{host}?key={URL_CANARIES['key']}",  # the wrong key: 401, echoed
            "-m", f"openai:custom@http://{URL_CANARIES['user']}:{URL_CANARIES['password']}@{host}",
        ])  # fmt: skip
        answered = {r.model for r in api.requests if r.outcome == "ok"}
    printed = capsys.readouterr()

    # The request still carried the URL's key (the gateway let it through): redacted, not dropped.
    assert answered == {"gpt-4o"}
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert {r.model for r in read_records(run_dir / "records.jsonl") if r.status != "error"} == {"gpt-4o"}

    outputs = {"stdout": printed.out, "stderr": printed.err, "log": caplog.text, **file_texts(tmp_path)}
    config = outputs[str(run_dir / "config.json")]
    assert "?api-key=[REDACTED]&api-version=2024-06-01" in config  # the URL is kept, less its secrets
    assert "http://[REDACTED]@" in config
    for name, value in URL_CANARIES.items():
        leaks = [where for where, text in outputs.items() if value in text or value in where]
        assert leaks == [], f"the URL's {name} leaked into {leaks}"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://alice:pw-123@gpu:8000/v1", "http://[REDACTED]@gpu:8000/v1"),
        ("https://gw.example/v1?api-key=abc123&api-version=2024-06-01",
         "https://gw.example/v1?api-key=[REDACTED]&api-version=2024-06-01"),
        ("openai:m@http://a/v1?key=k1,http://tok@b/v1", "openai:m@http://a/v1?key=[REDACTED],http://[REDACTED]@b/v1"),
        ("from https://h/v1?access_token=xyz (refused)", "from https://h/v1?access_token=[REDACTED] (refused)"),
        ("write to a@b.org, or see https://h/v1/models", "write to a@b.org, or see https://h/v1/models"),
    ],
)  # fmt: skip
def test_redact_url_keeps_where_a_url_points_and_drops_its_credentials(text: str, shown: str) -> None:
    assert redact_url(text) == shown
    assert redact(text) == shown  # what every output goes through


def test_a_canary_in_every_cloud_credential_reaches_no_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    # Azure (key, Entra token), Bedrock (keys in the environment, a profile's keys and session token in
    # the shared credentials file, read by no variable; then a Bedrock API key), Gemini, and Vertex (an
    # access token in a variable whose name says nothing). The server echoes what each request carried.
    pytest.importorskip("boto3")
    from gmai_client.testing.fake_clouds import FakeClouds
    from gmai_client.testing.fake_sigv4 import AwsKeys
    from tests.cloud_kit import CLOUD_VARIABLES

    canaries = {
        "AZURE_OPENAI_API_KEY": "canary-azure-key-7e3b1d9f",
        "AZURE_OPENAI_AD_TOKEN": "canary-entra-token-4a8c2e6b",
        "AWS_SECRET_ACCESS_KEY": "canary-aws-secret-9d1f3b5c",
        "AWS_SESSION_TOKEN": "canary-aws-session-2c6e8a0d",
        "GEMINI_API_KEY": "canary-gemini-key-5b7d9f1a",
        "VERTEX_CRED": "canary-vertex-token-8e0a2c4f",  # api_key_env=VERTEX_CRED: known only as read
    }
    in_files = {"profile secret": "canary-profile-secret-6f8b0d2e", "profile token": "canary-profile-token-1a3c5e7b"}
    for name in CLOUD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in canaries.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "aws-credentials").write_text(
        "[canary]\naws_access_key_id = AKIACANARYPROFILE01\n"
        f"aws_secret_access_key = {in_files['profile secret']}\naws_session_token = {in_files['profile token']}\n"
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIACANARYENVIRON01")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("CLOUD_ML_REGION", "us-east5")
    items = [e for e in iter_items(open_dataset([sample_path()])) if isinstance(e, Item)][:4]
    first = request_key(build_request(items[0], params=SamplingParams()))

    api = FakeAPI(echo_key=True)
    clouds = FakeClouds(
        api, gemini_key=canaries["GEMINI_API_KEY"], google_token=canaries["VERTEX_CRED"],
        bedrock_api_key="canary-bedrock-api-key-3d5f7b9a",
        aws=[AwsKeys("AKIACANARYENVIRON01", canaries["AWS_SECRET_ACCESS_KEY"], canaries["AWS_SESSION_TOKEN"]),
             AwsKeys("AKIACANARYPROFILE01", in_files["profile secret"], in_files["profile token"])],
    )  # fmt: skip
    common = ["run", "--no-progress", "--limit", "4", "--max-attempts", "1", "--concurrency", "2",
              "--cache-path", str(tmp_path / "cache" / "responses.sqlite")]  # fmt: skip
    with api:
        api.inject("500", key=first, times=20)  # item 0 fails for every model, its error echoing the credential
        base = api.base_url
        main([
            *common, "--out", str(tmp_path / "runs"),
            "-m", f"azure:gpt4o-eval@{base}", "-B", "label=azure-key",
            "-m", f"azure:gpt4o-eval@{base}", "-B", "label=azure-entra", "-B", "api_key_env=NO_AZURE_KEY_HERE",
            "-m", f"bedrock:us.anthropic.claude-sonnet-4-5@{base}", "-B", "label=bedrock-env",
            "-m", f"bedrock:us.anthropic.claude-sonnet-4-5@{base}", "-B", "label=bedrock-profile",
            "-B", "profile=canary",
            "-m", f"gemini:gemini-2.5-flash@{base}/v1beta/openai", "-B", "label=gemini",
            "-m", f"vertex:claude-sonnet-4-5@20250929@{base}/v1", "-B", "label=vertex", "-B", "project=p",
            "-B", "api_key_env=VERTEX_CRED",
        ])  # fmt: skip
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name)
        canaries["AWS_BEARER_TOKEN_BEDROCK"] = clouds.bedrock_api_key
        monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", clouds.bedrock_api_key)
        main([*common, "--out", str(tmp_path / "runs-bearer"), "-m", f"bedrock:us.anthropic.claude-sonnet-4-5@{base}"])
    printed = capsys.readouterr()

    calls = {(c.cloud, c.auth) for c in clouds.calls if c.ok}
    assert calls >= {("azure", "api-key"), ("azure", "bearer"), ("bedrock", "sigv4"), ("bedrock", "bearer"),
                     ("gemini", "bearer"), ("vertex", "bearer")}  # fmt: skip
    records = [r for run in ("runs", "runs-bearer") for d in (tmp_path / run).iterdir()
               for r in read_records(d / "records.jsonl")]  # fmt: skip
    assert len([r for r in records if r.status == "error" and "[REDACTED]" in (r.error or "")]) == 7
    assert all(r.prediction.startswith("[your key is [REDACTED]]") for r in records if r.prediction)
    outputs = {"stdout": printed.out, "stderr": printed.err, "log": caplog.text, **file_texts(tmp_path)}
    outputs = {where: text for where, text in outputs.items() if "aws-credentials" not in where}
    for name, value in {**canaries, **in_files}.items():
        leaks = [where for where, text in outputs.items() if value in text]
        assert leaks == [], f"the value of {name} leaked into {leaks}"
