"""Google's error bodies: `google.rpc.RetryInfo` and `QuotaFailure` in `error.details`.

A Google 429 (RESOURCE_EXHAUSTED) says how long to wait in the body, as
`{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}`, and sends no
Retry-After header; its message ("You exceeded your current quota, please check your plan and
billing details") reads the same for a per-minute limit and a used-up daily quota. So:

    429 with RetryInfo                          -> ProviderUnavailable RATE_LIMITED, retry_after
    429 whose QuotaFailure names a per-day quota
        and no RetryInfo                        -> ProviderRejected QUOTA_EXHAUSTED
    any other 429                               -> ProviderUnavailable RATE_LIMITED
    everything else                             -> shared.providers.http.classify_response
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from shared.providers.errors import (
    FailureClass,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from shared.providers.http import classify_response, error_details, parse_retry_after

RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _details(body: Any) -> list[dict[str, Any]]:
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details or [] if isinstance(d, dict)]


def retry_delay(body: Any) -> float | None:
    """Seconds from the first RetryInfo's `retryDelay` ("12s", "0.5s" or {"seconds", "nanos"})."""
    for detail in _details(body):
        if detail.get("@type") != RETRY_INFO:
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and (match := _DURATION.match(delay)):
            return float(match.group(1))
        if isinstance(delay, dict):
            try:
                return float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
            except (TypeError, ValueError):
                return None
    return None


def daily_quota(body: Any) -> bool:
    for detail in _details(body):
        if detail.get("@type") != QUOTA_FAILURE:
            continue
        for violation in detail.get("violations") or []:
            if (
                isinstance(violation, dict)
                and "perday" in str(violation.get("quotaId", "")).lower()
            ):
                return True
    return False


def classify_google_response(response: httpx.Response, provider: str) -> ProviderError:
    """The `ProviderError` for a Google error response (body already read)."""
    if response.status_code != 429:
        return classify_response(response, provider)
    try:
        body: Any = json.loads(response.content) if response.content else {}
    except (ValueError, UnicodeDecodeError):
        body = {}
    message, code = error_details(body)
    text = f"{provider}: HTTP 429: {message}"
    wait = retry_delay(body)
    if wait is None:
        wait = parse_retry_after(response.headers)
    if wait is None and daily_quota(body):
        return ProviderRejected(FailureClass.QUOTA_EXHAUSTED, text, provider_code=code)
    return ProviderUnavailable(
        FailureClass.RATE_LIMITED, text, provider_code=code, retry_after=wait
    )
