"""A backend of your own in a few dozen lines: here, a client for an in-house HTTP model service.

A backend turns a ``Request`` (prompt text, images, sampling parameters) into a ``Response`` and
maps its failures onto ``gmai_client.errors``; it sets no policy: retries, rate limits, the cache
and concurrency are the runner's. Register it for the command line with an entry point in your
package's pyproject.toml::

    [project.entry-points."gmai_client.backends"]
    inhouse = "my_package.inhouse:InHouseBackend"

then ``python -m gmai_client run --model inhouse:radiology-v2@http://models.internal:9000``.
Or pass an instance from Python, as ``main()`` below does (run this file: it serves a toy model on
127.0.0.1 and evaluates it on the bundled sample, no key, no network).
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from gmai_client import RunConfig, run
from gmai_client.config import ModelSpec
from gmai_client.errors import BadRequest, ConnectionLost, Overloaded, RequestTimeout, ServerError
from gmai_client.types import Request, Response


class InHouseBackend:
    """POST {"prompt", "images": [base64...]} to ENDPOINT/generate; the reply is {"text": ...}."""

    name = "inhouse"
    OPTIONS: Mapping[str, str] = {"timeout": "seconds per request (default 60)"}

    def __init__(self, model: str, endpoint: str, timeout: float = 60.0):
        self.model, self.endpoint, self.timeout = model, endpoint.rstrip("/"), timeout
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec, seed: int = 0) -> InHouseBackend:
        return cls(spec.target, spec.endpoint, float(spec.option("timeout") or 60))

    def identity(self) -> Mapping[str, str]:
        return {"backend": self.name, "model": self.model, "endpoint": self.endpoint}  # the cache key's part

    async def start(self) -> None:
        self._client = httpx.AsyncClient(base_url=self.endpoint, timeout=self.timeout)

    async def generate(self, request: Request) -> Response:
        assert self._client is not None, "start() first"
        body = {
            "model": self.model,
            "prompt": request.text,
            "images": [base64.b64encode(image.data).decode() for image in request.images],
            "max_tokens": request.params.max_tokens,
        }
        try:
            reply = await self._client.post("/generate", json=body)
        except httpx.TimeoutException:
            raise RequestTimeout(f"inhouse: no answer within {self.timeout:g} s") from None
        except httpx.TransportError as exc:
            raise ConnectionLost(f"inhouse: {exc}") from None
        if reply.status_code == 503:
            raise Overloaded("inhouse: busy", status=503)
        if reply.status_code >= 500:
            raise ServerError(f"inhouse: HTTP {reply.status_code}", status=reply.status_code)
        if reply.status_code >= 400:
            raise BadRequest(f"inhouse: HTTP {reply.status_code}: {reply.text[:200]}", status=reply.status_code)
        return Response(text=reply.json()["text"], model=self.model)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class _ToyModel(BaseHTTPRequestHandler):
    """A stand-in service: answers the last option listed in the prompt."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        letters = [line[0] for line in body["prompt"].splitlines() if len(line) > 2 and line[1] == "."]
        answer = json.dumps({"text": f"The answer is {letters[-1] if letters else 'A'}."}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:  # keep the example's output to the results
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ToyModel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    config = RunConfig.build(["inhouse:toy", "random"], out="runs", progress=False, cache=False)
    result = asyncio.run(run(config, backends={"inhouse:toy": InHouseBackend("toy", endpoint)}))
    print(f"{len(result.records)} records in {result.run_dir}")
    server.shutdown()


if __name__ == "__main__":
    main()
