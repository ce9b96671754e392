"""The clouds' routes on the fake model API: Azure OpenAI (and its managed-identity token endpoint),
Amazon Bedrock, Google Vertex AI (and Google's OAuth token endpoint), Gemini's OpenAI-compatible API.

Owns the test doubles the ``azure``, ``bedrock``, ``vertex`` and ``gemini`` backends are tested
against through the real ``openai`` and ``anthropic`` SDKs (and ``azure-identity``, ``botocore``, ``google-auth``).
It mounts on a ``FakeAPI`` (``FakeClouds(api)`` before ``api`` starts): each route checks what
that cloud checks (URL shape, API version, credentials), then hands the body to
``FakeAPI.serve_body`` in the base vendor's dialect, so a cloud's answers, faults, injections,
retry hints and recorded requests are the fake API's own.

Azure OpenAI::

    POST /openai/deployments/{deployment}/chat/completions?api-version=V
         the api-key header or an Entra ID Bearer token (``FakeAPI.require_key`` checks either);
         the deployment is the model (what Azure routes by); no api-version is a 404 as Azure's
    GET  /msi/token?api-version=2019-08-01&resource=R
         App Service's managed-identity endpoint (``IDENTITY_ENDPOINT``, header ``X-IDENTITY-HEADER``
         = ``IDENTITY_HEADER``): ``azure-identity`` gets its Entra ID tokens here, ``entra_token``

Amazon Bedrock (InvokeModel, Claude's Messages body)::

    POST /model/{model_id}/invoke
         signed with SigV4 by ``aws`` (one or several keys, picked by access key id; checked by
         ``fake_sigv4``, an implementation of its own),
         or a Bedrock API key as Bearer (``bedrock_api_key``); the body's ``anthropic_version``
         must be one of ``bedrock_versions`` and it may hold no ``model`` (the path names it), as
         Bedrock's ValidationException says; errors in AWS's shape (``{"message"}`` and the
         ``x-amzn-ErrorType`` header: ThrottlingException for a 429, ...). An error type that ends in
         "Exception" given to ``FakeAPI.inject`` is sent as is (``ServiceQuotaExceededException``).
         The echoed key (``echo_key``) is the session token the request carried.

Google Vertex AI (Claude's Messages body)::

    POST /v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict
         a Bearer token this server issued (``/token``) or ``google_token``; the project must be
         ``vertex_project`` when set; the body's ``anthropic_version`` one of ``vertex_versions``, no
         ``model``; errors of 401/403/404/429/5xx in Google's shape (``{"error": {"code", "message",
         "status"}}``, a 429 with a RetryInfo delay when a Retry-After was asked for), the others as
         Anthropic's passed through. The echoed key is the access token.
    POST /token
         Google's OAuth 2 token endpoint for a service account (the ``token_uri`` of its key file):
         a JWT-bearer grant whose assertion is checked against ``service_account`` (its e-mail, the
         RS256 signature of its public key, the audience, the cloud-platform scope, the time);
         answers an access token valid for an hour

Gemini (OpenAI-compatible)::

    POST /v1beta/openai/chat/completions
         the Chat Completions body; the key as Bearer, which must be ``gemini_key`` when set (else
         400 INVALID_ARGUMENT "API key not valid", reason API_KEY_INVALID, as Gemini answers); errors
         in Google's shape inside a one-element list, as this endpoint sends them: a 429 with a
         RetryInfo delay when a Retry-After was asked for, and a QuotaFailure naming the quota id
         given to ``FakeAPI.inject`` as ``code`` (``GenerateRequestsPerDayPerProjectPerModel``)

Every call to these routes is in ``calls`` (route, path, query, how it was authenticated).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from gmai_client.testing.fake_api import FakeAPI
from gmai_client.testing.fake_sigv4 import AwsKeys, verify
from gmai_client.testing.fake_wire import credentials

#: Bedrock's answer to each HTTP status of the Messages API, as its exception name.
_AWS_ERRORS = {
    400: "ValidationException", 401: "AccessDeniedException", 403: "AccessDeniedException",
    404: "ResourceNotFoundException", 408: "ModelTimeoutException", 424: "ModelErrorException",
    429: "ThrottlingException", 500: "InternalServerException", 503: "ServiceUnavailableException",
}  # fmt: skip
BEDROCK_VERSION = "bedrock-2023-05-31"
VERTEX_VERSION = "vertex-2023-10-16"
#: The audience of a service account's grant, whatever token_uri it is posted to (google-auth's rule).
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
#: Google's canonical status of each HTTP status its fronts answer in their own shape.
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
}  # fmt: skip
#: What Vertex's own front answers in Google's shape (the model's other errors pass through as Anthropic's).
_VERTEX_OWN = frozenset({401, 403, 404, 429, 500, 503})


@dataclass(frozen=True)
class ServiceAccount:
    """The service account whose JWT-bearer grants ``/token`` accepts."""

    email: str
    public_key_pem: bytes


@dataclass(frozen=True)
class CloudCall:
    """One call to a cloud route, as the route saw it (no credential kept)."""

    cloud: str  # "azure", "entra", "bedrock", "vertex", "google-token", "gemini"
    path: str
    query: str
    auth: str  # how it authenticated ("api-key", "bearer", "sigv4", ...) or why it was refused
    ok: bool  # whether the route's own checks passed (the fake API may still answer with an error)


class FakeClouds:
    """The cloud routes, mounted on ``api`` (an extension: ``add_routes``, ``stats``, ``reset``)."""

    def __init__(
        self,
        api: FakeAPI,
        *,
        entra_token: str = "",
        identity_header: str = "fake-identity-header",
        aws: AwsKeys | Collection[AwsKeys] | None = None,
        bedrock_api_key: str = "",
        bedrock_versions: Collection[str] = (BEDROCK_VERSION,),
        service_account: ServiceAccount | None = None,
        google_token: str = "",
        vertex_project: str = "",
        vertex_versions: Collection[str] = (VERTEX_VERSION,),
        gemini_key: str = "",
    ):
        self.api = api
        self.entra_token = entra_token  # what the managed-identity endpoint issues ("" refuses)
        self.identity_header = identity_header
        self.aws = aws  # the keys SigV4 signatures are checked against, by access key id (None: refused)
        self.bedrock_api_key = bedrock_api_key
        self.bedrock_versions = frozenset(bedrock_versions)
        self.service_account = service_account
        self.google_token = google_token  # a token accepted without being issued here ("" none)
        self.vertex_project = vertex_project  # the only project Vertex serves ("" any)
        self.vertex_versions = frozenset(vertex_versions)
        self.gemini_key = gemini_key  # the only key Gemini's route takes ("" any)
        self.issued: list[str] = []  # the access tokens /token gave, in order
        self.token_lifetime = 3599  # seconds; under google-auth's refresh margin (~4 min): refreshed every use
        self._lock = threading.Lock()
        self._calls: list[CloudCall] = []
        api.extensions.append(self)

    # ---------------------------------------------------------------- the extension protocol

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure)
        app.router.add_get("/msi/token", self._managed_identity)
        app.router.add_post("/model/{model:.+}/invoke", self._bedrock)
        vertex = "/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{tail}"
        app.router.add_post(vertex, self._vertex)
        app.router.add_post("/token", self._google_token)
        app.router.add_post("/v1beta/openai/chat/completions", self._gemini)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"clouds": dict(Counter(f"{c.cloud}:{'ok' if c.ok else c.auth}" for c in self._calls))}

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self.issued.clear()

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

    # ---------------------------------------------------------------- Amazon Bedrock

    async def _bedrock(self, http: web.Request) -> web.StreamResponse:
        arrived = (time.monotonic(), time.time())
        raw = await http.read()
        auth, refusal, echo = self._bedrock_auth(http, raw)
        self._record(http, "bedrock", auth, refusal is None)
        if refusal is not None:
            return _aws_error(*refusal)
        try:
            body = json.loads(raw)
        except ValueError:
            return _aws_error(400, "ValidationException", "Malformed input request, please reformat your input")
        version = body.get("anthropic_version") if isinstance(body, dict) else None
        if version not in self.bedrock_versions:
            return _aws_error(400, "ValidationException", f"invalid anthropic_version: {version!r}")
        if "model" in body:
            return _aws_error(400, "ValidationException", "extraneous key [model] is not permitted")
        # The model id as the path carries it (an ARN's "/" arrives as %2F).
        model = unquote(http.raw_path.split("?")[0].split("/")[2])
        body = {k: v for k, v in body.items() if k != "anthropic_version"} | {"model": model}
        answer = await self.api.serve_body(http, "anthropic", body, (("sigv4",), echo), arrived=arrived)
        return _as_aws_error(answer)

    def _bedrock_auth(self, http: web.Request, raw: bytes) -> tuple[str, tuple[int, str, str] | None, tuple[str, ...]]:
        """(how the request authenticated, AWS's refusal or None, the credential a careless server echoes)."""
        authorization = http.headers.get("Authorization", "")
        if authorization.lower().startswith("bearer "):
            key = authorization[7:].strip()
            if self.bedrock_api_key and key == self.bedrock_api_key:
                return "bearer", None, (key,)
            return "bearer refused", (403, "AccessDeniedException", "Invalid API Key format or API key not found"), ()
        accepted = [self.aws] if isinstance(self.aws, AwsKeys) else list(self.aws or ())
        if not accepted:
            return "sigv4 refused", (403, "UnrecognizedClientException", "No credentials are accepted here."), ()
        keys = next((k for k in accepted if f"Credential={k.access_key}/" in authorization), accepted[0])
        path, _, query = http.raw_path.partition("?")
        refusal = verify(keys, http.method, path, query, http.headers, raw, datetime.now(timezone.utc))
        token = http.headers.get("X-Amz-Security-Token", "")
        return ("sigv4" if refusal is None else f"sigv4 refused: {refusal[1]}"), refusal, (token,) if token else ()


    # ---------------------------------------------------------------- Google Vertex AI

    async def _vertex(self, http: web.Request) -> web.StreamResponse:
        arrived = (time.monotonic(), time.time())
        authorization = http.headers.get("Authorization", "")
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
        with self._lock:
            known = token and (token in self.issued or token == self.google_token)
        if not known:
            self._record(http, "vertex", "bearer refused" if token else "no token", False)
            return _google_error(401, "Request had invalid authentication credentials. Expected OAuth 2 access token.")
        project, model_verb = http.match_info["project"], unquote(http.match_info["tail"])
        model, _, verb = model_verb.rpartition(":")
        if self.vertex_project and project != self.vertex_project:
            self._record(http, "vertex", "bearer", False)
            return _google_error(403, f"Permission denied on resource project {project}.")
        self._record(http, "vertex", "bearer", True)
        if verb != "rawPredict":
            return _google_error(400, f"this fake serves rawPredict, not {verb!r}", "INVALID_ARGUMENT")
        try:
            body = await http.json()
        except ValueError as exc:
            return _google_error(400, f"Invalid JSON payload received. {exc}", "INVALID_ARGUMENT")
        version = body.get("anthropic_version") if isinstance(body, dict) else None
        if version not in self.vertex_versions:
            return _google_error(400, f"anthropic_version: invalid value {version!r}", "INVALID_ARGUMENT")
        if "model" in body:
            return _google_error(400, "model: Extra inputs are not permitted", "INVALID_ARGUMENT")
        body = {k: v for k, v in body.items() if k != "anthropic_version"} | {"model": model}
        answer = await self.api.serve_body(http, "anthropic", body, (("bearer",), (token,)), arrived=arrived)
        return _as_google_error(answer, statuses=_VERTEX_OWN)

    async def _google_token(self, http: web.Request) -> web.StreamResponse:
        form = await http.post()
        account = self.service_account
        problem = "no service account" if account is None else _jwt_problem(str(form.get("assertion", "")), account)
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            problem = f"unsupported grant_type {form.get('grant_type')!r}"
        self._record(http, "google-token", problem or "jwt", not problem)
        if problem:
            return web.json_response({"error": "invalid_grant", "error_description": problem}, status=400)
        token = f"ya29.fake-{uuid.uuid4().hex}"
        with self._lock:
            self.issued.append(token)
        return web.json_response({"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"})


    # ---------------------------------------------------------------- Gemini's OpenAI-compatible API

    async def _gemini(self, http: web.Request) -> web.StreamResponse:
        arrived = (time.monotonic(), time.time())
        schemes, keys = credentials(http.headers)
        if self.gemini_key and self.gemini_key not in keys:
            self._record(http, "gemini", "key refused", False)
            info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com"}  # fmt: skip
            reply = _google_error(400, "API key not valid. Please pass a valid API key.", details=[info])
            return web.json_response([json.loads(reply.body)], status=400)  # type: ignore[arg-type]
        self._record(http, "gemini", "+".join(schemes), True)
        try:
            body = await http.json()
        except ValueError as exc:
            return _google_error(400, f"Invalid JSON payload received. {exc}")
        answer = await self.api.serve_body(http, "openai", body, (schemes, keys), arrived=arrived)
        return _as_google_error(answer, wrapped=True)


def _jwt_problem(assertion: str, account: ServiceAccount) -> str:
    """Why a service account's JWT-bearer assertion is refused ("" when it is good)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    try:
        header, payload, signature = (base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) for p in assertion.split("."))
        claims = json.loads(payload)
        key = serialization.load_pem_public_key(account.public_key_pem)
        key.verify(signature, assertion.rpartition(".")[0].encode(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
    except InvalidSignature:
        return "invalid JWT signature"
    except (ValueError, TypeError):
        return "malformed JWT"
    if json.loads(header).get("alg") != "RS256" or claims.get("iss") != account.email:
        return "the JWT is not from the service account"
    if claims.get("aud") != GOOGLE_TOKEN_AUDIENCE or "cloud-platform" not in str(claims.get("scope", "")):
        return "the JWT's audience or scope is wrong"
    if not claims.get("iat", 0) - 300 <= time.time() <= claims.get("exp", 0) + 300:
        return "the JWT has expired"
    return ""


def _google_error(status: int, message: str, google_status: str = "", headers: dict[str, str] | None = None,
                  details: list[dict[str, Any]] | None = None) -> web.Response:  # fmt: skip
    """An error in Google's shape: ``{"error": {"code", "message", "status", "details"?}}``."""
    error: dict[str, Any] = {"code": status, "message": message, "status": google_status or _GOOGLE_STATUS[status]}
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=status, headers=headers)


def _as_google_error(
    answer: web.StreamResponse, *, wrapped: bool = False, statuses: Collection[int] = tuple(_GOOGLE_STATUS)
) -> web.StreamResponse:
    """The fake API's error answer in Google's shape for ``statuses``; ``wrapped``: inside a
    one-element list (Gemini's OpenAI-compatible endpoint). Others as they are."""
    if not isinstance(answer, web.Response) or answer.status not in statuses:
        return answer
    try:
        error = json.loads(answer.body)["error"]  # type: ignore[arg-type]
        message = str(error["message"])
    except (ValueError, KeyError, TypeError):
        return answer
    kept = {k: v for k, v in answer.headers.items() if k.lower() not in ("content-type", "content-length")}
    details = []
    if answer.status == 429 and "retry-after" in {k.lower() for k in kept}:
        delay = next(v for k, v in kept.items() if k.lower() == "retry-after")
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay}s"})
        kept = {k: v for k, v in kept.items() if k.lower() != "retry-after"}  # Google says it in the body
    quota = error.get("code") if isinstance(error, dict) else None
    if answer.status == 429 and isinstance(quota, str) and "Per" in quota:  # a quota id given to inject
        details.append({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": quota}]})
    reply = _google_error(answer.status, message, headers=kept, details=details)
    if wrapped:
        reply = web.json_response([json.loads(reply.body)], status=answer.status, headers=kept)  # type: ignore[arg-type]
    return reply


def _aws_error(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error as an AWS JSON service answers: ``{"message"}``, the exception in ``x-amzn-ErrorType``."""
    headers = {
        **(headers or {}),
        "x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        "x-amzn-RequestId": str(uuid.uuid4()),
    }
    return web.json_response({"message": message}, status=status, headers=headers)


def _as_aws_error(answer: web.StreamResponse) -> web.StreamResponse:
    """The fake API's Anthropic error answer in Bedrock's shape (a success, or a broken body, as is)."""
    if not isinstance(answer, web.Response) or answer.status < 400 or answer.content_type != "application/json":
        return answer
    try:
        error = json.loads(answer.body)["error"]  # type: ignore[arg-type]
    except (ValueError, KeyError, TypeError):
        return answer
    status = 503 if answer.status == 529 else answer.status  # Bedrock has no 529
    given = str(error.get("type") or "")
    error_type = given if given.endswith("Exception") else _AWS_ERRORS.get(status, "InternalServerException")
    kept = {k: v for k, v in answer.headers.items() if k.lower() not in ("content-type", "content-length")}
    return _aws_error(status, error_type, str(error.get("message") or ""), kept)
