"""A backend of your own in a few dozen lines: here, a client for an in-house HTTP model service.

A backend derives from ``gmai_client.Backend``: it names itself, says what decides its answers
(``identity``), turns a ``Request`` into a ``Response`` and maps its failures onto the project's
errors; retries, rate limits, the cache and concurrency are the runner's. Its ``-B key=value``
options are a dataclass: parsed, checked and listed by ``python -m gmai_client backends`` for you.
Register it for the command line with an entry point in your package's pyproject.toml::

    [project.entry-points."gmai_client.backends"]
    inhouse = "my_package.inhouse:InHouseBackend"

then ``python -m gmai_client run --model inhouse:radiology-v2@http://models.internal:9000 -B timeout=30``.
Or pass an instance from Python, as ``main()`` below does (run this file: it serves a toy model on
127.0.0.1 and evaluates it on the bundled sample, no key, no network).
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from gmai_client import Backend, BackendOptions, ModelSpec, Request, Response, RunConfig, option, parse_model_spec, run
from gmai_client.errors import BadRequest, ConnectionLost, Overloaded, RequestTimeout, ServerError


@dataclass(frozen=True)
class InHouseOptions(BackendOptions):
    timeout: float = option(60.0, "seconds to wait for one answer", above=0, neutral=True)


class InHouseBackend(Backend):
    """POST {"prompt", "images": [base64...]} to ENDPOINT/generate; the reply is {"text": ...}."""

    name = "inhouse"
    Options = InHouseOptions

    def __init__(self, spec: ModelSpec, options: InHouseOptions, *, seed: int = 0):
        self.model, self.endpoint = spec.target, spec.endpoint.rstrip("/")
        self.client = httpx.AsyncClient(base_url=self.endpoint, timeout=options.timeout)

    def identity(self) -> dict[str, str]:
        return {"backend": self.name, "model": self.model, "endpoint": self.endpoint}  # the cache key's part

    async def generate(self, request: Request) -> Response:
        body = {"model": self.model, "prompt": request.text, "max_tokens": request.params.max_tokens}
        body["images"] = [image.b64 for image in request.images]
        try:
            reply = await self.client.post("/generate", json=body)
        except httpx.TimeoutException:
            raise RequestTimeout(f"inhouse: no answer from {self.endpoint}") from None
        except httpx.TransportError as exc:
            raise ConnectionLost(f"inhouse: {exc}") from None
        if reply.status_code == 503:
            raise Overloaded("inhouse: busy", status=503)
        if reply.status_code >= 400:
            kind = ServerError if reply.status_code >= 500 else BadRequest
            raise kind(f"inhouse: HTTP {reply.status_code}: {reply.text[:200]}", status=reply.status_code)
        return Response(text=reply.json()["text"], model=self.model)

    async def close(self) -> None:
        await self.client.aclose()


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
    backend = InHouseBackend.from_spec(parse_model_spec(f"inhouse:toy@http://127.0.0.1:{server.server_address[1]}"))
    config = RunConfig.build(["inhouse:toy", "random"], out="runs", progress=False, cache=False)
    result = asyncio.run(run(config, backends={"inhouse:toy": backend}))
    print(f"{len(result.records)} records in {result.run_dir}")
    server.shutdown()


if __name__ == "__main__":
    main()
