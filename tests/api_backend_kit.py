"""What the OpenAI and Anthropic backend tests share: the fake API on loopback, one sample
request, and running a backend once (then closing it) as the runner would."""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
from collections.abc import Iterator

import pytest
from PIL import Image as PILImage

from gmai_client import errors
from gmai_client.backends._api import ApiBackend
from gmai_client.data.dataset import iter_items, open_dataset
from gmai_client.data.splits import sample_path
from gmai_client.protocol.prompt import build_request
from gmai_client.testing.fake_api import FakeAPI, Faults
from gmai_client.types import Image, Request, Response, SamplingParams


def serve() -> Iterator[FakeAPI]:
    """A fake API server for a test module (its connection hangs last 10 s)."""
    with FakeAPI(faults=Faults(hang_seconds=10)) as api:
        yield api


def wiped(server: FakeAPI, monkeypatch: pytest.MonkeyPatch, key_env: str, key: str) -> FakeAPI:
    """The module's server, wiped clean for one test; the key set in the environment."""
    monkeypatch.setenv(key_env, key)
    server.reset()
    server.answers, server.fallback, server.require_key = {}, "A", None
    return server


def sample_request() -> Request:
    """A bundled sample item with an image, as the runner would send it."""
    item = next(i for i in itertools.islice(iter_items(open_dataset([sample_path()])), 20) if i.images_b64)
    return build_request(item, params=SamplingParams(temperature=0.3, max_tokens=32, seed=7), system="Be brief.")


def generate(b: ApiBackend, request: Request) -> Response:
    async def go() -> Response:
        try:
            return await b.generate(request)
        finally:
            await b.close()

    return asyncio.run(go())


def fails(b: ApiBackend, request: Request) -> errors.BackendError:
    with pytest.raises(errors.BackendError) as caught:
        generate(b, request)
    return caught.value


def png(width: int, height: int, color: int = 0) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (width, height), (color, 80, 160)).save(out, format="PNG")
    return out.getvalue()


def pixels_sha(image: Image) -> str:
    """What the fake server records of an image it received: the sha256 of its bytes."""
    return hashlib.sha256(image.data).hexdigest()
