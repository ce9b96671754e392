"""The clouds' routes on the fake model API: Azure OpenAI (and its managed-identity token endpoint).

Owns the test double the ``azure`` backend is tested against through the real ``openai`` SDK
(and ``azure-identity``). It mounts on a ``FakeAPI`` (``FakeClouds(api)`` before ``api`` starts):
each route checks what that cloud checks (URL shape, API version, credentials), then hands the body
to ``FakeAPI.serve_body`` in the base vendor's dialect, so a cloud's answers, faults, injections,
retry hints and recorded requests are the fake API's own.

Azure OpenAI::

    POST /openai/deployments/{deployment}/chat/completions?api-version=V
         the api-key header or an Entra ID Bearer token (``FakeAPI.require_key`` checks either);
         the deployment is the model (what Azure routes by); no api-version is a 404 as Azure's
    GET  /msi/token?api-version=2019-08-01&resource=R
         App Service's managed-identity endpoint (``IDENTITY_ENDPOINT``, header ``X-IDENTITY-HEADER``
         = ``IDENTITY_HEADER``): ``azure-identity`` gets its Entra ID tokens here, ``entra_token``

Every call to these routes is in ``calls`` (route, path, query, how it was authenticated).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gmai_client.testing.fake_api import FakeAPI
from gmai_client.testing.fake_wire import credentials


@dataclass(frozen=True)
class CloudCall:
    """One call to a cloud route, as the route saw it (no credential kept)."""

    cloud: str  # "azure", "entra"
    path: str
    query: str
    auth: str  # how it authenticated ("api-key", "bearer", "identity-header", "") or why it failed
    ok: bool  # whether the route's own checks passed (the fake API may still answer with an error)


class FakeClouds:
    """The cloud routes, mounted on ``api`` (an extension: ``add_routes``, ``stats``, ``reset``)."""

    def __init__(self, api: FakeAPI, *, entra_token: str = "", identity_header: str = "fake-identity-header"):
        self.api = api
        self.entra_token = entra_token  # what the managed-identity endpoint issues ("" refuses)
        self.identity_header = identity_header
        self._lock = threading.Lock()
        self._calls: list[CloudCall] = []
        api.extensions.append(self)

    # ---------------------------------------------------------------- the extension protocol

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure)
        app.router.add_get("/msi/token", self._managed_identity)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"clouds": dict(Counter(f"{c.cloud}:{'ok' if c.ok else c.auth}" for c in self._calls))}

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()

    @property
    def calls(self) -> list[CloudCall]:
        with self._lock:
            return list(self._calls)

    def _record(self, http: web.Request, cloud: str, auth: str, ok: bool) -> None:
        with self._lock:
            self._calls.append(CloudCall(cloud, http.path, http.query_string, auth, ok))

    # ---------------------------------------------------------------- Azure OpenAI

    async def _azure(self, http: web.Request) -> web.StreamResponse:
        arrived = (time.monotonic(), time.time())
        schemes, keys = credentials(http.headers)
        if not http.query.get("api-version"):
            self._record(http, "azure", "no api-version", False)
            return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
        self._record(http, "azure", "+".join(schemes), True)
        try:
            body = await http.json()
        except ValueError as exc:
            return web.json_response({"error": {"code": "BadRequest", "message": str(exc)}}, status=400)
        if isinstance(body, dict):
            body = {**body, "model": http.match_info["deployment"]}  # Azure routes by the deployment
        return await self.api.serve_body(http, "openai", body, (schemes, keys), arrived=arrived)

    async def _managed_identity(self, http: web.Request) -> web.StreamResponse:
        if http.headers.get("X-IDENTITY-HEADER") != self.identity_header:
            self._record(http, "entra", "bad identity header", False)
            return web.json_response({"error": "unauthorized"}, status=401)
        if not self.entra_token:
            self._record(http, "entra", "no identity", False)
            return web.json_response({"statusCode": 400, "message": "No managed identity found"}, status=400)
        self._record(http, "entra", "identity-header", True)
        return web.json_response({
            "access_token": self.entra_token,
            "expires_on": str(int(time.time()) + 3600),
            "resource": http.query.get("resource", ""),
            "token_type": "Bearer",
        })  # fmt: skip
