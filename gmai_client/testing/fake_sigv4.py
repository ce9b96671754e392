"""AWS Signature Version 4, checked the way AWS checks it: the fake Bedrock's half of a signed request.

Written here from AWS's description of SigV4 (not with botocore, which signs on the client side), so
a test that passes shows the client's signature agrees with an independent reading of the rules:

1. the canonical request: method, the path URI-encoded once more (services other than S3 encode
   each segment twice, and the path arrives encoded once), the query sorted and encoded, every
   header the ``SignedHeaders`` list names (lower-cased, values trimmed, inner spaces collapsed),
   that list, and the SHA-256 of the body;
2. the string to sign: ``AWS4-HMAC-SHA256``, ``X-Amz-Date``, the credential scope
   (date/region/service/aws4_request) and the canonical request's SHA-256;
3. the key: HMAC-SHA256 chained from ``"AWS4" + secret`` over date, region, service, aws4_request;
   the signature is the hex HMAC of the string to sign.

``verify`` answers None for a request signed with the given keys, else the error AWS answers:
(HTTP status, exception name, message).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 15 * 60  # AWS refuses a signature older or newer than this
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class AwsKeys:
    """The credentials a fake AWS service accepts, and where it is."""

    access_key: str
    secret_key: str
    session_token: str = ""  # when set, the request must carry it (X-Amz-Security-Token), signed
    region: str = "us-east-1"
    service: str = "bedrock"


Refusal = tuple[int, str, str]  # (HTTP status, AWS exception name, message)


def verify(
    keys: AwsKeys, method: str, raw_path: str, query: str, headers: Mapping[str, str], body: bytes, now: datetime
) -> Refusal | None:
    """None when the request is signed with ``keys`` (and fresh), else AWS's refusal."""
    match = _AUTHORIZATION.match(headers.get("Authorization", "").strip())
    if match is None:
        return 403, "MissingAuthenticationTokenException", "Missing Authentication Token"
    access_key, date, region, service, terminator = (match["credential"].split("/") + [""] * 5)[:5]
    if access_key != keys.access_key:
        return 403, "UnrecognizedClientException", "The security token included in the request is invalid."
    if keys.session_token and headers.get("X-Amz-Security-Token") != keys.session_token:
        return 403, "UnrecognizedClientException", "The security token included in the request is invalid."
    if (region, service, terminator) != (keys.region, keys.service, "aws4_request"):
        return 403, "InvalidSignatureException", f"Credential should be scoped to a valid region ({region})."
    amz_date = headers.get("X-Amz-Date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return 403, "IncompleteSignatureException", "X-Amz-Date is missing or malformed."
    if abs((now - signed_at).total_seconds()) > MAX_SKEW_S or amz_date[:8] != date:
        return 403, "InvalidSignatureException", f"Signature expired: {amz_date} is out of the allowed window."
    signed = match["signed"].split(";")
    if "host" not in signed or (keys.session_token and "x-amz-security-token" not in signed):
        return 403, "InvalidSignatureException", "The host header (and the security token) must be signed."
    canonical = "\n".join([
        method.upper(),
        quote(raw_path or "/", safe="/~"),
        _canonical_query(query),
        "".join(f"{name}:{_header_value(headers, name)}\n" for name in signed),
        match["signed"],
        headers.get("X-Amz-Content-SHA256") or hashlib.sha256(body).hexdigest(),
    ])  # fmt: skip
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + keys.secret_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match["signature"]):
        return 403, "InvalidSignatureException", (
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        )
    return None


def _canonical_query(query: str) -> str:
    pairs = []
    for part in filter(None, query.split("&")):
        name, _, value = part.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _header_value(headers: Mapping[str, str], name: str) -> str:
    values = headers.getall(name, []) if hasattr(headers, "getall") else [headers.get(name, "")]
    return ",".join(_SPACES.sub(" ", str(value).strip()) for value in values)
