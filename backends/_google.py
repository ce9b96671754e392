"""Google's error bodies, as Vertex AI and the Gemini API answer them (the Vertex and Gemini backends).

``{"error": {"code": 429, "message": ..., "status": "RESOURCE_EXHAUSTED", "details": [...]}}``, or
the same object inside a one-element list (what Gemini's OpenAI-compatible endpoint and some
Vertex gateways send). ``details`` may hold a ``google.rpc.RetryInfo`` (``retryDelay`` "32s": the
wait the server asks for), a ``google.rpc.QuotaFailure`` whose quota ids say which budget is spent
(a per-day quota does not come back within a run, a per-minute one does) and a
``google.rpc.ErrorInfo`` whose reason names the cause (``API_KEY_INVALID`` comes with a 400).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gmai_client.backends._hints import parse_duration


@dataclass(frozen=True)
class GoogleError:
    message: str = ""
    status: str = ""  # RESOURCE_EXHAUSTED, PERMISSION_DENIED, ...
    retry_delay: float | None = None  # seconds, from RetryInfo
    per_day: bool = False  # a QuotaFailure names a daily quota
    reason: str = ""  # an ErrorInfo's reason (API_KEY_INVALID, ...)


def google_error(body: Any) -> GoogleError | None:
    """The Google error in ``body`` (a parsed JSON body, or the SDK's copy of its ``error``), else None."""
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if not isinstance(body, Mapping):
        return None
    error = body.get("error", body)
    if not isinstance(error, Mapping) or not ("status" in error or "details" in error):
        return None
    delay, per_day, reason = None, False, ""
    for detail in error.get("details") or ():
        if not isinstance(detail, Mapping):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("google.rpc.RetryInfo"):
            delay = parse_duration(str(detail.get("retryDelay", "")))
        elif kind.endswith("google.rpc.ErrorInfo"):
            reason = str(detail.get("reason", ""))
        elif kind.endswith("google.rpc.QuotaFailure"):
            ids = [str(v.get("quotaId", "")) for v in detail.get("violations") or () if isinstance(v, Mapping)]
            per_day = any("perday" in quota.lower() for quota in ids)
    return GoogleError(str(error.get("message") or ""), str(error.get("status") or ""), delay, per_day, reason)
