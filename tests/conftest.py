"""Shared fixtures: small GMAI-format TSV files written by the synthetic generator."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gmai_client.testing.synthetic import write_tsv

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120  # a cold 2-core machine: torch import + tiny model build + Triton + 4 model loads


PRIVATE_ROOT = Path(tempfile.mkdtemp(prefix="gmai-tests-"))  # this session's own home, cache and config dirs


def pytest_configure(config: pytest.Config) -> None:
    """Before any fixture of any scope (a module-scoped run once started before the per-test cache below
    and wrote to the user's cache dir): home, XDG dirs and the response cache point into a private folder."""
    for variable, folder in (
        ("HOME", "home"),
        ("XDG_CACHE_HOME", "home/.cache"),
        ("XDG_CONFIG_HOME", "home/.config"),
        ("XDG_DATA_HOME", "home/.local/share"),
        ("GMAI_CLIENT_CACHE_DIR", "cache"),
    ):
        (PRIVATE_ROOT / folder).mkdir(parents=True, exist_ok=True)
        os.environ[variable] = str(PRIVATE_ROOT / folder)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(PRIVATE_ROOT, ignore_errors=True)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own response cache, never the user's."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("GMAI_CLIENT_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def small_tsv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 synthetic items with a key (VAL-like)."""
    return write_tsv(tmp_path_factory.mktemp("data") / "small.tsv", 60, seed=3, image_size=32)


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    """A hand-written TSV (tab-separated, no quoting needed for these cells)."""
    path.write_text("\n".join("\t".join(row) for row in [header, *rows]) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- a real Triton server (PyTriton)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def has_module(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Server:
    http_port: int
    grpc_port: int
    has_tiny: bool
    startup_s: float

    def endpoint(self, protocol: str) -> str:
        port = self.http_port if protocol == "http" else self.grpc_port
        return f"{protocol}://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    pytest.importorskip("pytriton")
    has_tiny = has_module("torch") and has_module("transformers") and has_module("tokenizers")
    folder = tmp_path_factory.mktemp("triton")
    ready, log = folder / "ready", folder / "server.log"
    http_port, grpc_port = free_ports(2)
    binds = ["echo=echo", "inspect=inspect", "slow=slow:0.3"] + (["tiny=tiny-llava"] if has_tiny else [])
    command = [sys.executable, "-m", "gmai_client.testing.triton_server", "--http-port", str(http_port)]
    command += ["--grpc-port", str(grpc_port), "--ready-file", str(ready), "--max-batch-size", "8"]
    for bind in binds:
        command += ["--bind", bind]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.monotonic()
    with log.open("wb") as out:
        # Its own session, so that a server that ignores SIGTERM can still be killed with its child.
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        while not ready.exists():
            if process.poll() is not None:
                pytest.fail(f"the Triton server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() - started > START_TIMEOUT_S:
                pytest.fail(f"the Triton server was not ready within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield Server(http_port, grpc_port, has_tiny, time.monotonic() - started)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
