"""What an API request holds while it is in flight: the item's image once, not copies of it.

A GMAI item carries ~2 MB of base64, and users run hundreds of requests in flight. Each request
held the data URL (a copy of the base64), the JSON body (another) and, while uploading, the
socket's buffer (a third): 8 MB per request in flight, three times a bare SDK loop. The body is now
sent in 64 kB pieces made as they go out, so a request adds little beyond the image it sends.
Measured with tracemalloc in this process, against the fake server in a process of its own.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from collections.abc import Iterator

import pytest

from gmai_client.backends import registry
from gmai_client.config import parse_model_spec
from gmai_client.types import Image, Request
from tests.conftest import ROOT, free_ports

IN_FLIGHT = 12
IMAGE_BYTES = 1_500_000  # ~2 MB of base64, as a row of the released files


@pytest.fixture(scope="module")
def slow_server() -> Iterator[str]:
    """The fake API (reads every body whole, answers after 1 s) in a process of its own."""
    (port,) = free_ports(1)
    command = [sys.executable, "-m", "gmai_client.testing.fake_api", "--port", str(port), "--latency", "1", "--blind"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/_fake/stats", timeout=5).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the fake API did not start")
                time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def requests() -> list[Request]:
    """Distinct images, made before measuring: what the items being asked hold anyway."""
    return [
        Request(
            text="Question: which organ?\nOptions:\nA. liver\nB. lung\n",
            images=(Image(encoded=base64.b64encode(os.urandom(IMAGE_BYTES)).decode("ascii")),),
            item_index=str(n),
        )
        for n in range(IN_FLIGHT)
    ]


@pytest.mark.parametrize("spec", ["openai:fake@{base}/v1", "anthropic:fake@{base}"])
def test_a_request_in_flight_holds_no_copy_of_its_image(
    spec: str, slow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip(spec.split(":")[0])
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-memory-0000")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-memory-0000")
    backend = registry.create(parse_model_spec(spec.format(base=slow_server)))
    batch = requests()

    async def scenario() -> tuple[int, int]:
        await backend.start()
        try:
            await backend.generate(batch[0])  # the connection pool and the SDK warmed up
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            answers = await asyncio.gather(*(backend.generate(r) for r in batch))
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert all(answer.text for answer in answers)
            return before, peak
        finally:
            await backend.close()

    before, peak = asyncio.run(scenario())
    per_request_mb = (peak - before) / IN_FLIGHT / 1e6
    image_mb = len(batch[0].images[0].b64) / 1e6
    # Before: the data URL, the body and the socket's copy, ~3x the image per request.
    assert per_request_mb < 0.25 * image_mb, f"{per_request_mb:.2f} MB per request in flight"
