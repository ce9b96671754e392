"""Tests for gmai_client.data.splits: spec forms, and downloads from a fake Hub on loopback."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from gmai_client.data import splits
from gmai_client.data.splits import SplitFile, resolve_data
from gmai_client.errors import ConfigError, DataError

# ------------------------------------------------------------------------------------------ spec forms


def test_sample_resolves_to_bundled_file() -> None:
    import gmai_client

    expected = Path(gmai_client.__file__).parent / "data" / "sample.tsv"
    assert splits.sample_path() == expected
    if not expected.is_file():
        pytest.skip("bundled sample.tsv not generated yet")
    assert resolve_data(["sample"]) == [expected]


def test_missing_sample_is_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(splits, "sample_path", lambda: tmp_path / "nope.tsv")
    with pytest.raises(ConfigError, match="sample"):
        resolve_data(["sample"])


def test_existing_file_any_extension(tmp_path: Path) -> None:
    f = tmp_path / "mine.txt"
    f.write_text("index\tquestion\n")
    assert resolve_data([str(f)], data_dir=tmp_path / "unused") == [f]


def test_directory_natural_sort(tmp_path: Path) -> None:
    for n in (10, 2, 1, 11):
        (tmp_path / f"GMAI_mm_bench_TEST_part_{n}.tsv").write_text("x\n")
    (tmp_path / "notes.md").write_text("not data")
    (tmp_path / "._GMAI_mm_bench_TEST_part_3.tsv").write_text("mac junk")
    got = [p.name for p in resolve_data([str(tmp_path)])]
    assert got == [f"GMAI_mm_bench_TEST_part_{n}.tsv" for n in (1, 2, 10, 11)]


def test_empty_directory_names_it(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path))):
        resolve_data([str(tmp_path)])


def test_unknown_name_suggests_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_data(["GMAI-MMBench_VALL"], data_dir=tmp_path, download=False)
    msg = str(info.value)
    assert "Did you mean 'GMAI-MMBench_VAL'" in msg
    assert "GMAI-MMBench_TEST" in msg and "sample" in msg  # lists the accepted forms


def test_missing_path_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        resolve_data([str(tmp_path / "gone.tsv")])


def test_default_catalog_matches_vlmevalkit() -> None:
    cat = splits.DEFAULT_CATALOG
    assert cat["GMAI-MMBench_VAL"][0].md5 == "254bd581627866f1c499d3d6b4422324"
    parts = cat["GMAI-MMBench_TEST"]
    assert [p.filename for p in parts] == [f"GMAI_mm_bench_TEST_part_{n}.tsv" for n in range(1, 12)]
    assert parts[10].md5 == "d08dc813f0eb6bbab63cae2a9d113c4b"
    assert cat["GMAI_mm_bench_TEST_part_7"] == (parts[6],)
    assert {p.repo_id for p in parts} == {"OpenGVLab/GMAI-MMBench"}


def test_test_split_from_existing_files_in_order(tmp_path: Path) -> None:
    for n in range(1, 12):
        (tmp_path / f"GMAI_mm_bench_TEST_part_{n}.tsv").write_text(f"{n}\n")
    got = resolve_data(["GMAI-MMBench_TEST", "GMAI_mm_bench_TEST_part_3"], data_dir=tmp_path, download=False)
    assert got == [tmp_path / f"GMAI_mm_bench_TEST_part_{n}.tsv" for n in range(1, 12)]  # part 3 not twice


def test_missing_catalog_file_without_download(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_data(["GMAI-MMBench_VAL"], data_dir=tmp_path, download=False)
    assert str(tmp_path / "GMAI-MMBench_VAL.tsv") in str(info.value)
    assert "datasets/VLMEval/GMAI-MMBench/resolve/main/GMAI-MMBench_VAL.tsv" in str(info.value)


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GMAI_DATA_DIR", str(tmp_path / "d"))
    assert splits.default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("GMAI_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert splits.default_data_dir() == tmp_path / "xdg" / "gmai_client"  # platformdirs or fallback, on Linux


def test_verify_uses_stamp_and_catches_corruption(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    body = b"index\tquestion\n1\tq\n"
    f = tmp_path / "X.tsv"
    f.write_bytes(body)
    cat = {"X": (SplitFile("X", "o/r", "X.tsv", hashlib.md5(body).hexdigest()),)}
    assert resolve_data(["X"], data_dir=tmp_path, download=False, verify=True, catalog=cat) == [f]
    assert (tmp_path / "X.tsv.md5ok").is_file()

    def no_hashing(*_a: object, **_k: object) -> str:
        raise AssertionError("a stamped file was hashed again")

    with monkeypatch.context() as m:
        m.setattr(splits, "file_md5", no_hashing)
        assert resolve_data(["X"], data_dir=tmp_path, download=False, verify=True, catalog=cat) == [f]

    f.write_bytes(body + b"2\tcorrupt\n")  # size changes: the stamp no longer vouches
    with pytest.raises(DataError, match="md5 mismatch"):
        resolve_data(["X"], data_dir=tmp_path, download=False, verify=True, catalog=cat)
    # Without verify the file is taken as is: hashing is opt-in for files already on disk.
    assert resolve_data(["X"], data_dir=tmp_path, download=False, catalog=cat) == [f]


# ----------------------------------------------------------------------------- fake Hugging Face Hub

COMMIT = "0123456789abcdef0123456789abcdef01234567"
RESOLVE = re.compile(r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<filename>[^?]+)")


@dataclass
class FakeHub:
    url: str
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (repo_id, filename) -> body
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)

    def gets(self, filename: str) -> int:
        return sum(1 for m, p in self.requests if m == "GET" and p.endswith("/" + filename))


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 so the Hub client's pooled keep-alive connections behave as against the real Hub.
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def _answer(self, with_body: bool) -> None:
            hub.requests.append((self.command, self.path))
            m = RESOLVE.match(self.path)
            body = hub.files.get((m["repo"], unquote(m["filename"]))) if m else None
            if body is None:
                # What the Hub sends for a missing file in an existing repo: huggingface_hub maps
                # X-Error-Code to RemoteEntryNotFoundError.
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            # The HEAD metadata hf_hub_download requires (file_download.get_hf_file_metadata): X-Repo-Commit
            # (else FileMetadataError), ETag (else FileMetadataError), Content-Length for the size check.
            # No X-Xet-Hash header, so it takes the plain HTTP GET path, not Xet storage.
            self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha1(body).hexdigest()}"')
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "text/tab-separated-values")
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self._answer(with_body=False)

        def do_GET(self) -> None:
            self._answer(with_body=True)

    return Handler


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _point_hub_at(monkeypatch: pytest.MonkeyPatch, endpoint: str, tmp_path: Path) -> None:
    """Aim huggingface_hub at ``endpoint`` whether or not it was imported before this test."""
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # constants are read from the environment once, at import: patch them too.
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # An empty hub cache, so a copy the developer has in ~/.cache cannot stand in for a download.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    fake = FakeHub(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(fake)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    _point_hub_at(monkeypatch, fake.url, tmp_path)
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


BODY = b"index\tquestion\tA\tB\tanswer\n1\tWhich organ?\tliver\tlung\tA\n"
MD5 = hashlib.md5(BODY).hexdigest()


def test_download_then_reuse(hub: FakeHub, tmp_path: Path) -> None:
    hub.files[("test-org/fake-bench", "FAKE_part_1.tsv")] = BODY
    cat = {"FAKE": (SplitFile("FAKE_part_1", "test-org/fake-bench", "FAKE_part_1.tsv", MD5),)}
    data_dir = tmp_path / "data"

    got = resolve_data(["FAKE"], data_dir=data_dir, catalog=cat)
    assert got == [data_dir / "FAKE_part_1.tsv"]
    assert got[0].read_bytes() == BODY
    assert hub.gets("FAKE_part_1.tsv") == 1
    assert any(m == "HEAD" for m, _ in hub.requests)
    assert all(p.startswith("/datasets/test-org/fake-bench/resolve/main/") for _, p in hub.requests)
    assert (data_dir / "FAKE_part_1.tsv.md5ok").read_text().split()[0] == MD5

    seen = len(hub.requests)
    assert resolve_data(["FAKE"], data_dir=data_dir, catalog=cat) == got
    assert resolve_data(["FAKE"], data_dir=data_dir, catalog=cat, verify=True) == got
    assert len(hub.requests) == seen  # on disk and stamped: no network at all


def test_verify_redownloads_corrupt_file(hub: FakeHub, tmp_path: Path) -> None:
    hub.files[("o/r", "C.tsv")] = BODY
    cat = {"C": (SplitFile("C", "o/r", "C.tsv", MD5),)}
    resolve_data(["C"], data_dir=tmp_path, catalog=cat)
    (tmp_path / "C.tsv").write_bytes(b"truncated")
    assert resolve_data(["C"], data_dir=tmp_path, catalog=cat, verify=True) == [tmp_path / "C.tsv"]
    assert (tmp_path / "C.tsv").read_bytes() == BODY
    assert hub.gets("C.tsv") == 2


def test_wrong_md5_deletes_download(hub: FakeHub, tmp_path: Path) -> None:
    hub.files[("o/r", "W.tsv")] = BODY
    cat = {"W": (SplitFile("W", "o/r", "W.tsv", "0" * 32),)}
    with pytest.raises(DataError) as info:
        resolve_data(["W"], data_dir=tmp_path, catalog=cat)
    msg = str(info.value)
    assert "W.tsv" in msg and "0" * 32 in msg and MD5 in msg
    assert hub.gets("W.tsv") == 1
    assert not (tmp_path / "W.tsv").exists()
    assert not (tmp_path / "W.tsv.md5ok").exists()


def test_file_missing_on_hub_is_config_error(hub: FakeHub, tmp_path: Path) -> None:
    cat = {"M": (SplitFile("M", "o/r", "M.tsv", MD5),)}
    with pytest.raises(ConfigError) as info:
        resolve_data(["M"], data_dir=tmp_path, catalog=cat)
    assert str(tmp_path / "M.tsv") in str(info.value)
    assert f"{hub.url}/datasets/o/r/resolve/main/M.tsv" in str(info.value)


def test_offline_mode_is_config_error(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub.files[("o/r", "F.tsv")] = BODY
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(pytest.importorskip("huggingface_hub.constants"), "HF_HUB_OFFLINE", True)
    cat = {"F": (SplitFile("F", "o/r", "F.tsv", MD5),)}
    with pytest.raises(ConfigError) as info:
        resolve_data(["F"], data_dir=tmp_path, catalog=cat)
    assert str(tmp_path / "F.tsv") in str(info.value)
    assert hub.requests == []


def test_unreachable_endpoint_is_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"  # bound then released: connections are refused
    _point_hub_at(monkeypatch, endpoint, tmp_path)
    # huggingface_hub retries refused connections with 1-8 s back-off; skip the waiting, not the retries.
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", lambda _s: None)
    cat = {"U": (SplitFile("U", "o/r", "U.tsv", MD5),)}
    with pytest.raises(ConfigError) as info:
        resolve_data(["U"], data_dir=tmp_path / "data", catalog=cat)
    msg = str(info.value)
    assert str(tmp_path / "data" / "U.tsv") in msg
    assert f"{endpoint}/datasets/o/r/resolve/main/U.tsv" in msg
    assert not (tmp_path / "data" / "U.tsv").exists()
