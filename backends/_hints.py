"""Reads a server's "wait this long" hint from response headers, whatever the vendor's dialect.

Backends call ``retry_after_seconds(headers)`` when mapping a 429/503/529 to a RetryableError;
the retry policy then never sends again before the hint expires. (Reading the vendor's headers is
translation of the wire format, so it lives with the backends; the policy sees only the number.)
Understood, most precise first: ``retry-after-ms``; ``Retry-After`` as seconds or an HTTP date;
OpenAI's ``x-ratelimit-reset-requests`` / ``-tokens`` durations ("1s", "6m0s", "250ms");
Anthropic's ``anthropic-ratelimit-*-reset`` RFC 3339 timestamps. Reset hints count only for budgets whose
matching ``-remaining`` header is 0 (the longest of those wins: the request needs every exhausted
budget back); when none says 0, the soonest reset is used.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """ "6m0s" -> 360.0, "250ms" -> 0.25, "1.5" -> 1.5; None when unreadable."""
    text = text.strip().lower()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _seconds_until(moment: datetime, now: float) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, moment.timestamp() - now)


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """A Retry-After value: delta-seconds or an HTTP date."""
    now = time.time() if now is None else now
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return _seconds_until(parsedate_to_datetime(value), now)
    except (TypeError, ValueError, IndexError):
        return None


def retry_after_seconds(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """The wait a response's headers ask for, in seconds, or None when they ask for none."""
    if not headers:
        return None
    now = time.time() if now is None else now
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    if "retry-after" in lowered:
        parsed = parse_retry_after(lowered["retry-after"], now)
        if parsed is not None:
            return parsed
    resets: dict[str, float] = {}  # budget name ("requests", "tokens", ...) -> seconds to reset
    for key, value in lowered.items():
        if key.startswith("x-ratelimit-reset-"):
            duration = parse_duration(value)
            if duration is not None:
                resets[f"x-ratelimit-remaining-{key.removeprefix('x-ratelimit-reset-')}"] = duration
        elif key.startswith("anthropic-ratelimit-") and key.endswith("-reset"):
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            resets[key.removesuffix("-reset") + "-remaining"] = _seconds_until(moment, now)
    if not resets:
        return None
    # Reset headers come with every response; wait for the budgets that are actually exhausted.
    exhausted = [seconds for remaining, seconds in resets.items() if lowered.get(remaining, "").strip() == "0"]
    return max(exhausted) if exhausted else min(resets.values())
