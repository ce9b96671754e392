"""Claude on Amazon Bedrock: InvokeModel through the anthropic SDK's ``AsyncAnthropicBedrock``.

Spec ``bedrock:MODEL_ID[@ENDPOINT]``: a Bedrock model id (``anthropic.claude-sonnet-4-5-20250929-v1:0``),
a cross-region inference profile id (``us.anthropic...``, ``eu.``, ``apac.``, ``global.``) or an
inference profile's ARN. Each request is ``POST {endpoint}/model/{id}/invoke``, the id percent-encoded
as the SDK does (an ARN's ``/`` as ``%2F``), signed with AWS Signature Version 4 by botocore.

The body is the Messages body ``AnthropicMessages`` writes, without ``model`` (the path names it)
and with ``anthropic_version`` (``-B anthropic_version=``, default ``bedrock-2023-05-31``, the value
Bedrock's versioned model ids take; the SDK's own default, a newer dated version, is refused by them).
Claude's request rules (the model families table) follow the model an id names: ``global.anthropic.
claude-opus-4-7-v1`` is Opus 4.7's.

Where, first found wins: the region is ``-B region=``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the
profile's region; the endpoint is ``@URL`` (or ``base_url=``), ``ANTHROPIC_BEDROCK_BASE_URL``, else
``https://bedrock-runtime.{region}.amazonaws.com``. The run folder's identity holds the URL called.

Credentials, as the SDK and boto3 read them: a Bedrock API key in ``AWS_BEARER_TOKEN_BEDROCK`` (or the
variable ``api_key_env=`` names), sent as Bearer; else the AWS credential chain of ``-B profile=``
(else ``AWS_PROFILE``): ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, the
shared credentials and config files, SSO, assumed roles, an instance role. The secret key and the
session token are registered as secrets. Keys from the environment are handed to the SDK as they are;
any other source is left to the SDK's own boto3 session, which refreshes expiring credentials.

Errors: the Messages table (``anthropic.py``) by HTTP status, with Bedrock's exception (header
``x-amzn-ErrorType``) as the type, and:

    ThrottlingException (429)                        RateLimited
    ServiceQuotaExceededException (400, "later")     RateLimited
    ModelNotReadyException (429)                     Overloaded
    ServiceUnavailableException (503)                Overloaded
    ModelTimeoutException (408)                      RequestTimeout
    ModelErrorException (424)                        ServerError
    AccessDenied / UnrecognizedClient / InvalidSignature / ExpiredToken (403)   AuthError
    ResourceNotFoundException (404), ValidationException "model identifier is invalid"   ModelNotFound
    ValidationException "on-demand throughput isn't supported"   BadRequest, advising a profile id
    no AWS credentials at all                        AuthError, before anything is sent

No batch API here (Bedrock's batch inference works from S3, not wired in): ``--batch`` leaves a
Bedrock model live.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from gmai_client.errors import (
    AuthError,
    BackendError,
    ConfigError,
    MissingExtra,
    ModelNotFound,
    Overloaded,
    RateLimited,
    ServerError,
    register_secret,
)

try:
    import anthropic
except ImportError as exc:
    raise MissingExtra("bedrock", "bedrock", "anthropic") from exc

from gmai_client.backends._api import Embed, VendorError, endpoint_of, key_variable, short
from gmai_client.backends._hints import retry_after_seconds
from gmai_client.backends.anthropic import AnthropicMessages, AnthropicMessagesOptions
from gmai_client.backends.families import Family, family_of
from gmai_client.config import ModelSpec
from gmai_client.options import option
from gmai_client.types import Image, Request

BEDROCK_VERSION = "bedrock-2023-05-31"
BEARER_ENV = "AWS_BEARER_TOKEN_BEDROCK"  # the SDK's own variable for a Bedrock API key
_CLAUDE_IN_ID = re.compile(r"(?:^|\.)anthropic\.(claude-[^:/]+)")
#: Bedrock's exceptions that a later attempt may pass, whatever their HTTP status says.
_LATER: Mapping[str, type[BackendError]] = {
    "ServiceQuotaExceededException": RateLimited,
    "ModelNotReadyException": Overloaded,
    "ModelErrorException": ServerError,
}


@dataclass(frozen=True)
class BedrockOptions(AnthropicMessagesOptions):
    base_url: str = option(
        "", "the bedrock-runtime endpoint, same as @URL in the spec",
        default_text="$ANTHROPIC_BEDROCK_BASE_URL, else https://bedrock-runtime.REGION.amazonaws.com",
    )  # fmt: skip
    api_key_env: str = key_variable(BEARER_ENV)
    region: str = option("", "the AWS region", default_text="$AWS_REGION, $AWS_DEFAULT_REGION, else the profile's")
    profile: str = option(
        "", "the AWS profile (shared config and credentials files) to sign with", neutral=True,
        default_text="$AWS_PROFILE, else the default chain",
    )  # fmt: skip
    anthropic_version: str = option(BEDROCK_VERSION, "the body's anthropic_version")


class BedrockBackend(AnthropicMessages):
    """Claude on Amazon Bedrock (InvokeModel), SigV4-signed from the AWS credential chain."""

    name = "bedrock"
    Options = BedrockOptions
    default_endpoint = ""  # per region: see from_spec
    endpoint_env = "ANTHROPIC_BEDROCK_BASE_URL"
    root_hint = "https://bedrock-runtime.REGION.amazonaws.com"
    requires = MappingProxyType({"boto3": "bedrock", "botocore": "bedrock"})
    streams_body = False  # SigV4 signs the body: the SDK must hold it whole

    def __init__(self, model: str, *, endpoint: str = "", options: Any = None, region: str = "us-east-1"):
        super().__init__(model, endpoint=endpoint, options=options)
        self.region = region
        # InvokeModel's path: the SDK's own encoding of the id (":" kept, an ARN's "/" encoded).
        self.path = f"/model/{quote(model, safe=':')}/invoke"  # type: ignore[misc]

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, seed: int = 0) -> BedrockBackend:
        if not spec.target:
            raise ConfigError("bedrock needs a model id: bedrock:MODEL_ID[@ENDPOINT]")
        options = cls.parse_options(spec)
        if options.api_key_env != BEARER_ENV and os.environ.get(BEARER_ENV, "").strip():
            # The SDK sends it whenever it is set, whatever it is told: another choice would be ignored.
            raise ConfigError(
                f"bedrock: {BEARER_ENV} is set but api_key_env={options.api_key_env or '(none)'}: the SDK sends "
                f"{BEARER_ENV} as a Bedrock API key whenever it is set; unset it to use another credential"
            )
        region = _region(options)
        default = f"https://bedrock-runtime.{region}.amazonaws.com"
        endpoint, _ = endpoint_of(cls.name, spec.endpoint, options.base_url, default, cls.endpoint_env)
        return cls(spec.target, endpoint=endpoint, options=options, region=region)

    @cached_property
    def family(self) -> Family:
        """Claude's rules for the model an id names (``us.anthropic.claude-opus-4-7-v1`` is
        ``claude-opus-4-7-v1``); an inference profile's ARN names none."""
        named = _CLAUDE_IN_ID.search(self.model)
        return family_of("anthropic", named.group(1) if named else self.model)

    @property
    def url(self) -> str:
        return f"{self.endpoint}{self.path}"

    def identity(self) -> Mapping[str, str]:
        identity = {**super().identity(), "region": self.region, "url": self.url}
        identity["anthropic_version"] = self.options.anthropic_version
        return identity

    def limit_scope(self) -> tuple[str, ...]:
        return (self.name, self.url, self.options.profile or os.environ.get("AWS_PROFILE", ""))

    # ---------------------------------------------------------------- the client and its credentials

    async def start(self) -> None:
        if self._client is None:
            auth = await asyncio.to_thread(self._auth)
            try:
                self._client = anthropic.AsyncAnthropicBedrock(
                    aws_region=self.region, base_url=self.endpoint, max_retries=0, timeout=self.timeout,
                    http_client=self.http_client(), **auth,
                )  # fmt: skip
            except ValueError as exc:  # the SDK's own refusals of a combination of credentials
                raise ConfigError(f"bedrock: {exc}") from None

    def _auth(self) -> dict[str, Any]:
        """The SDK's credential arguments: a Bedrock API key, or what the AWS chain found."""
        key = os.environ.get(self.api_key_env, "").strip() if self.api_key_env else ""
        if key:
            register_secret(key)
            return {"api_key": key}
        import boto3
        import botocore.exceptions

        profile = self.options.profile or None
        try:
            found = boto3.Session(profile_name=profile, region_name=self.region).get_credentials()
        except botocore.exceptions.BotoCoreError as exc:  # an unknown profile, an SSO login to renew, ...
            raise AuthError(f"bedrock: cannot read the AWS credentials: {short(exc, 200)}") from None
        if found is None:
            raise AuthError(
                "bedrock: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile "
                "(-B profile= or AWS_PROFILE), or a Bedrock API key in AWS_BEARER_TOKEN_BEDROCK"
            )
        frozen = found.get_frozen_credentials()
        register_secret(frozen.secret_key)
        register_secret(frozen.token)
        if found.method == "env":  # static keys: given as they are (the SDK caches sessions per process)
            return {"aws_access_key": frozen.access_key, "aws_secret_key": frozen.secret_key,
                    "aws_session_token": frozen.token}  # fmt: skip
        return {"aws_profile": profile} if profile else {}  # the SDK's session refreshes these itself

    # ---------------------------------------------------------------- the wire format

    def request_body(self, request: Request, images: tuple[Image, ...], embed: Embed = str) -> dict[str, Any]:
        body = super().request_body(request, images, embed)
        del body["model"]  # the path names it; Bedrock refuses the key
        return {"anthropic_version": self.options.anthropic_version, **body}

    def vendor_error(self, exc: Any) -> VendorError:
        said = super().vendor_error(exc)
        body = exc.body if isinstance(exc.body, Mapping) else {}
        aws_type = exc.response.headers.get("x-amzn-ErrorType", "").split(":")[0] or str(body.get("__type", ""))
        message = said.message or short(body.get("message") or body.get("Message") or "")
        return VendorError(message, aws_type or said.error_type, said.code, said.quota)

    def map_error(self, exc: Any) -> BackendError:
        error = super().map_error(exc)
        if not isinstance(exc, anthropic.APIStatusError):
            return error
        said = self.vendor_error(exc)
        later = _LATER.get(said.error_type or "")
        if later is not None:
            return later(str(error), status=exc.status_code, retry_after=retry_after_seconds(exc.response.headers))
        if said.error_type == "ValidationException" and "model identifier is invalid" in said.message:
            return ModelNotFound(str(error), status=exc.status_code)
        return error

    def advice(self, status: int, message: str) -> str:
        if "on-demand throughput" in message or "inference profile" in message:
            return " (use a cross-region inference profile id, such as us.MODEL_ID or global.MODEL_ID)"
        return super().advice(status, message)


def _region(options: BedrockOptions) -> str:
    """The region, first found: the option, AWS_REGION, AWS_DEFAULT_REGION, the profile's (boto3)."""
    region = options.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        try:
            import boto3
            import botocore.exceptions
        except ImportError as exc:
            raise MissingExtra("bedrock", "bedrock", "boto3") from exc
        try:
            region = boto3.Session(profile_name=options.profile or None).region_name
        except botocore.exceptions.BotoCoreError as exc:
            raise ConfigError(f"bedrock: cannot read the AWS configuration: {short(exc, 200)}") from None
    if not region:
        raise ConfigError("bedrock: no AWS region: give -B region=, set AWS_REGION, or give the profile a region")
    return region.strip()
