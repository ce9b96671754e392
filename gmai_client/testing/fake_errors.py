"""The vendors' error answers, as the fake API and its batch APIs send them.

Owns each vendor's error JSON per HTTP status (type, code and message as OpenAI and Anthropic send
them, a gateway's HTML page for a bare 502), with an optional echo of the key a request presented,
and ``outcome_error``: which error answers a request the fake server decided to fail, and how.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gmai_client.testing.fake_faults import Forced

_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key",
          "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found",
          "The model `{model}` does not exist or you do not have access to it."),
    413: ("invalid_request_error", "request_too_large", "Request too large."),
    422: ("invalid_request_error", None, "Unprocessable request."),
    429: ("requests", "rate_limit_exceeded",
          "Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
          "Limit 60, Used 60, Requested 1. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
    529: ("overloaded_error", None, "Overloaded"),
}  # fmt: skip
_OPENAI_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more information "
    "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."
)
_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    422: ("invalid_request_error", "Unprocessable request."),
    429: ("rate_limit_error", "Number of requests has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}
_GATEWAY_HTML = (
    "<html>\r\n<head><title>{status} Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>{status} Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)


def vendor_error(
    api: str,
    status: int,
    *,
    error_type: str | None = None,
    code: str | None = None,
    message: str | None = None,
    model: str = "",
    headers: Mapping[str, str] | None = None,
    echo: str = "",
) -> web.Response:
    """The vendor's own error JSON for ``status`` (a gateway's HTML page for 502); ``echo``, when
    given, is added to the message as the key the request presented."""
    headers = dict(headers or {})
    if status == 502 and error_type is None and message is None:
        text = _GATEWAY_HTML.format(status=502) + (f"<!-- key {echo} -->" if echo else "")
        return web.Response(status=502, text=text, content_type="text/html", headers=headers)
    if api == "openai":
        default_type, default_code, default_message = _OPENAI_ERRORS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None, f"Error {status}.")
        )
        if error_type == "insufficient_quota" or code == "insufficient_quota":
            default_message = _OPENAI_QUOTA_MESSAGE
        error = {
            "message": (message or default_message.format(model=model)) + (f" (key sent: {echo})" if echo else ""),
            "type": error_type or default_type,
            "param": None,
            "code": code if code is not None else default_code,
        }
        headers.setdefault("x-request-id", f"req_fake{random.getrandbits(48):012x}")
        return web.json_response({"error": error}, status=status, headers=headers)
    default_type, default_message = _ANTHROPIC_ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", f"Error {status}.")
    )
    request_id = f"req_fake{random.getrandbits(48):012x}"
    anthropic_error: dict[str, Any] = {
        "type": error_type or default_type,
        "message": (message or default_message.format(model=model)) + (f" (key sent: {echo})" if echo else ""),
    }
    if code is not None:
        anthropic_error["details"] = {"error_code": code}
    headers.setdefault("request-id", request_id)
    return web.json_response(
        {"type": "error", "error": anthropic_error, "request_id": request_id}, status=status, headers=headers
    )


_ANTHROPIC_QUOTA_MESSAGE = (
    "Your credit balance is too low to access the Anthropic API. "
    "Please go to Plans & Billing to upgrade or purchase credits."
)


def outcome_error(
    kind: str, api: str, model: str, forced: Forced | None, headers: Mapping[str, str], echo: str = ""
) -> web.Response | None:
    """The error answer for a request whose outcome is ``kind`` (forced by ``inject`` when ``forced``),
    or None for an outcome answered with a body. ``echo``: the key to name in the message."""
    message = forced.message if forced else None
    if kind == "status":
        assert forced is not None and forced.status is not None
        return vendor_error(
            api, forced.status, error_type=forced.error_type, code=forced.code,
            message=forced.message, model=model, headers=headers, echo=echo,
        )  # fmt: skip
    if kind == "quota":
        if api == "openai":
            return vendor_error(api, 429, error_type="insufficient_quota", code="insufficient_quota",
                                message=message, headers=headers, echo=echo)  # fmt: skip
        return vendor_error(api, 400, message=_ANTHROPIC_QUOTA_MESSAGE, headers=headers, echo=echo)
    if kind == "auth":
        return vendor_error(api, 401, headers=headers, echo=echo)
    if kind == "model_not_found":
        return vendor_error(api, 404, model=model, headers=headers, echo=echo)
    if kind in ("rate_limit", "429", "429-date", "429-ms", "429-reset"):
        return vendor_error(api, 429, model=model, headers=headers, message=message, echo=echo)
    if kind in ("500", "502", "503", "529"):
        return vendor_error(api, int(kind), headers=headers, message=message, echo=echo)
    return None
