"""What the cloud backends' tests share: a run of ``python -m gmai_client run`` as its own process
(the real entry point, its environment given whole), and what it left in the run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmai_client.results.records import read_records
from gmai_client.types import Record

#: The variables of the clouds' credential chains: none of the caller's may leak into a test's run.
CLOUD_VARIABLES = (
    "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_AD_TOKEN", "OPENAI_API_VERSION",
    "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "AZURE_CLIENT_ID", "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_BEARER_TOKEN_BEDROCK", "ANTHROPIC_BEDROCK_BASE_URL",
    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
    "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "ANTHROPIC_VERTEX_PROJECT_ID", "CLOUD_ML_REGION",
    "ANTHROPIC_VERTEX_BASE_URL", "GEMINI_API_KEY", "GOOGLE_API_KEY", "GEMINI_BASE_URL",
)  # fmt: skip


@dataclass(frozen=True)
class CliRun:
    code: int
    stdout: str
    stderr: str
    run_dir: Path | None

    @property
    def records(self) -> list[Record]:
        assert self.run_dir is not None, self.stderr
        return read_records(self.run_dir / "records.jsonl")

    @property
    def config(self) -> dict[str, Any]:
        assert self.run_dir is not None, self.stderr
        return json.loads((self.run_dir / "config.json").read_text())


def clean_environment(home: Path, **variables: str) -> dict[str, str]:
    """This process's environment less every cloud variable, with ``variables`` set and the home
    (where the AWS, Google and Azure tools keep their files) in ``home``."""
    env = {k: v for k, v in os.environ.items() if k not in CLOUD_VARIABLES}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), AWS_EC2_METADATA_DISABLED="true")
    env.update(variables)
    return env


def cli(command: str, args: list[str], out: Path, env: dict[str, str], timeout: float = 240) -> CliRun:
    """``python -m gmai_client COMMAND ARGS`` in its own process, on the bundled sample."""
    argv = [sys.executable, "-m", "gmai_client", command, *args]
    if command == "run":
        argv += ["--no-progress", "--out", str(out), "--cache-path", str(out / "cache.sqlite")]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    folders = [p for p in out.iterdir() if p.is_dir()] if out.is_dir() else []
    return CliRun(done.returncode, done.stdout, done.stderr, folders[0] if len(folders) == 1 else None)
