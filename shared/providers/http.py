"""The HTTP edge every adapter shares: httpx exceptions and error responses become
`ProviderError`s here, once, and result bytes are streamed with truncation and expiry checks.

Classification of an error response (`classify_response`)::

    401, 403                 -> ProviderRejected AUTH
    404                      -> ProviderRejected NOT_FOUND
    408                      -> ProviderUnavailable TIMEOUT
    409                      -> ProviderUnavailable PROVIDER_ERROR   (the OpenAI SDK retries it)
    400, 422, other 4xx      -> ProviderRejected INVALID_INPUT, or MODERATION_INPUT when the
                                body talks about moderation / safety
    429                      -> ProviderUnavailable RATE_LIMITED (retry_after from Retry-After /
                                retry-after-ms), or ProviderRejected QUOTA_EXHAUSTED when the
                                body talks about quota / credits / arrears and gives no wait
    5xx                      -> ProviderUnavailable PROVIDER_ERROR

QUOTA_EXHAUSTED is raised as `ProviderRejected` because its retry advice says "not on the same
provider"; waiting does not refill a prepaid balance.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from shared import webhooks
from shared.providers.errors import (
    FailureClass,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
DOWNLOAD_CHUNK_BYTES = 1 << 20
EXPIRY_MARGIN_S = 60.0
MAX_REDIRECTS = 5
MAX_RAW_STRING = 512

Clock = Callable[[], float]

_MODERATION_WORDS = ("moderation", "safety", "content policy", "content_policy", "sensitive")
# Wording of a used-up balance. Bare "quota" is not enough: Google's per-minute 429
# (RESOURCE_EXHAUSTED) says "check quota" and is a rate limit.
_QUOTA_WORDS = ("insufficient_quota", "current quota", "credit", "arrears", "billing", "balance")


@contextlib.asynccontextmanager
async def map_provider_errors(provider: str) -> AsyncIterator[None]:
    """Translate httpx transport exceptions raised inside the block into `ProviderUnavailable`."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ProviderUnavailable(
            FailureClass.TIMEOUT,
            f"{provider}: request timed out ({type(exc).__name__})",
            outcome_unknown=_maybe_sent(exc),
        ) from exc
    except httpx.TransportError as exc:
        raise ProviderUnavailable(
            FailureClass.PROVIDER_ERROR,
            f"{provider}: transport error: {type(exc).__name__}: {exc}",
            outcome_unknown=_maybe_sent(exc),
        ) from exc


def _maybe_sent(exc: httpx.TransportError) -> bool:
    """Whether the request may have reached the provider: everything but a failure to
    connect (or to get a pooled connection) leaves that open."""
    return not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, `Retry-After` (seconds or an HTTP date), else None."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lowered.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / divisor)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if not value:
        return None
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    when = email.utils.mktime_tz(parsed)
    return max(0.0, when - (time.time() if now is None else now))


def decode_json(response: httpx.Response, provider: str) -> dict[str, Any]:
    """The response body as a JSON object; a malformed body is a transient provider error,
    with an unknown outcome under a 2xx (the provider did the work, its answer is lost)."""
    try:
        value = json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProviderUnavailable(
            FailureClass.PROVIDER_ERROR,
            f"{provider}: malformed JSON in HTTP {response.status_code} response "
            f"({len(response.content)} bytes, starts {response.content[:60]!r})",
            outcome_unknown=response.is_success,
        ) from exc
    if not isinstance(value, dict):
        raise ProviderUnavailable(
            FailureClass.PROVIDER_ERROR,
            f"{provider}: expected a JSON object, got {type(value).__name__}",
            outcome_unknown=response.is_success,
        )
    return value


def error_details(body: Any) -> tuple[str, str | None]:
    """(message, provider code) from any of the providers' error envelopes."""
    if not isinstance(body, dict):
        return (str(body)[:300], None)
    err = body.get("error")
    if isinstance(err, dict):
        code = err.get("code") if err.get("code") is not None else err.get("status")
        status = err.get("status")
        message = str(err.get("message") or err.get("type") or err)
        if status and str(status) not in message and code != status:
            message = f"{status}: {message}"
        return (message, None if code is None else str(code))
    if isinstance(err, str):
        return (err, None)
    message = body.get("message") or body.get("detail") or body.get("title") or json.dumps(body)
    code = body.get("code")
    return (str(message)[:500], None if code is None else str(code))


def _mentions(text: str, words: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in words)


def classify_response(response: httpx.Response, provider: str) -> ProviderError:
    """The `ProviderError` for an error response whose body has already been read."""
    status = response.status_code
    try:
        body: Any = json.loads(response.content) if response.content else {}
    except (ValueError, UnicodeDecodeError):
        body = response.content[:300].decode("utf-8", "replace")
    message, code = error_details(body)
    text = f"{provider}: HTTP {status}: {message}"
    retry_after = parse_retry_after(response.headers)
    if status in (401, 403):
        return ProviderRejected(FailureClass.AUTH, text, provider_code=code)
    if status == 404:
        return ProviderRejected(FailureClass.NOT_FOUND, text, provider_code=code)
    if status == 408:
        return ProviderUnavailable(FailureClass.TIMEOUT, text, provider_code=code)
    if status == 409:
        return ProviderUnavailable(FailureClass.PROVIDER_ERROR, text, provider_code=code)
    if status == 429:
        wording = f"{message} {code or ''}"
        if retry_after is None and _mentions(wording, _QUOTA_WORDS):
            return ProviderRejected(FailureClass.QUOTA_EXHAUSTED, text, provider_code=code)
        return ProviderUnavailable(
            FailureClass.RATE_LIMITED, text, provider_code=code, retry_after=retry_after
        )
    if status >= 500:
        return ProviderUnavailable(
            FailureClass.PROVIDER_ERROR, text, provider_code=code, retry_after=retry_after
        )
    if _mentions(f"{message} {code or ''}", _MODERATION_WORDS):
        return ProviderRejected(FailureClass.MODERATION_INPUT, text, provider_code=code)
    return ProviderRejected(FailureClass.INVALID_INPUT, text, provider_code=code)


def trim_raw(value: Any, limit: int = MAX_RAW_STRING) -> Any:
    """A copy of a JSON payload with long strings (inline base64 video) cut down to a note."""
    if isinstance(value, dict):
        return {k: trim_raw(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [trim_raw(v, limit) for v in value]
    if isinstance(value, str) and len(value) > limit:
        return f"<{len(value)} chars trimmed>"
    return value


def from_unix(seconds: float | int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(float(seconds), tz=UTC)


def same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.netloc) == (pb.scheme, pb.netloc)


class HttpEdge:
    """One provider's view of the shared `httpx.AsyncClient`: JSON calls and streamed downloads."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        provider: str,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        clock: Clock = time.time,
    ) -> None:
        self.client = client
        self.provider = provider
        self.timeout = timeout
        self.clock = clock

    async def call(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        json_body: Any = None,
        allow_statuses: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send one request; an error status (not in `allow_statuses`) raises its ProviderError."""
        async with map_provider_errors(self.provider):
            response = await self.client.request(
                method, url, headers=dict(headers), json=json_body, timeout=self.timeout
            )
        if response.status_code >= 400 and response.status_code not in allow_statuses:
            raise classify_response(response, self.provider)
        return response

    async def call_json(
        self, method: str, url: str, *, headers: Mapping[str, str], json_body: Any = None
    ) -> tuple[dict[str, Any], httpx.Response]:
        response = await self.call(method, url, headers=headers, json_body=json_body)
        return decode_json(response, self.provider), response

    async def stream(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        expires_at: datetime | None = None,
        signed_url: bool = False,
        chunk_bytes: int = DOWNLOAD_CHUNK_BYTES,
    ) -> AsyncIterator[bytes]:
        """Stream a result; never buffers it. Redirects are followed by hand so that credential
        headers are dropped when the redirect leaves the original origin (httpx only strips
        `Authorization`, not `x-goog-api-key`).

        403/404/410 count as RESULT_EXPIRED when the URL is `signed_url` (it carries its own
        authorisation, so a refusal means the link is gone), when the status is 410, or when
        `expires_at` is past or within a minute."""
        current, current_headers = url, dict(headers or {})
        for _ in range(MAX_REDIRECTS + 1):
            async with (
                map_provider_errors(self.provider),
                self.client.stream(
                    "GET", current, headers=current_headers, timeout=self.timeout
                ) as response,
            ):
                if response.is_redirect and "location" in response.headers:
                    target = urljoin(current, response.headers["location"])
                    if not same_origin(current, target):
                        current_headers = {}
                    current = target
                    continue
                if response.status_code >= 400:
                    await response.aread()
                    raise self._download_error(response, expires_at, signed_url)
                async for chunk in self._checked_chunks(response, chunk_bytes):
                    yield chunk
                return
        raise ProviderUnavailable(
            FailureClass.PROVIDER_ERROR, f"{self.provider}: too many redirects downloading {url}"
        )

    async def _checked_chunks(
        self, response: httpx.Response, chunk_bytes: int
    ) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in response.aiter_bytes(chunk_bytes):
            received += len(chunk)
            yield chunk
        expected = response.headers.get("content-length", "")
        if not expected.isdigit():
            return
        # Content-Length counts bytes on the wire: compare wire bytes when the body is encoded.
        encoded = response.headers.get("content-encoding", "identity") != "identity"
        got = response.num_bytes_downloaded if encoded else received
        if got < int(expected):
            raise ProviderUnavailable(
                FailureClass.PROVIDER_ERROR,
                f"{self.provider}: truncated download: {got} of {expected} bytes",
            )

    def _download_error(
        self, response: httpx.Response, expires_at: datetime | None, signed_url: bool
    ) -> ProviderError:
        status = response.status_code
        near_expiry = expires_at is not None and (
            expires_at.timestamp() - EXPIRY_MARGIN_S <= self.clock()
        )
        if status == 410 or (status in (403, 404) and (signed_url or near_expiry)):
            return ProviderRejected(
                FailureClass.RESULT_EXPIRED,
                f"{self.provider}: result no longer downloadable (HTTP {status})",
                provider_code=str(status),
            )
        return classify_response(response, self.provider)


def iter_b64_chunks(
    encoded: str, chunk_chars: int = 4 * (DOWNLOAD_CHUNK_BYTES // 3)
) -> Iterator[str]:
    """Slices of a base64 string that each decode on their own (multiples of 4 characters)."""
    step = max(4, chunk_chars - chunk_chars % 4)
    for start in range(0, len(encoded), step):
        yield encoded[start : start + step]


def verified_event(
    provider: str, secret: str | None, headers: Mapping[str, str], body: bytes, clock: Clock
) -> dict[str, Any]:
    """The JSON event of a Standard Webhooks delivery whose signature verifies."""
    if not secret:
        raise ProviderRejected(FailureClass.AUTH, f"{provider}: no webhook secret configured")
    try:
        webhooks.verify(secret, body, headers, now=clock)
    except webhooks.WebhookVerificationError as exc:
        raise ProviderRejected(FailureClass.AUTH, f"{provider}: webhook rejected: {exc}") from exc
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise ProviderRejected(
            FailureClass.INVALID_INPUT, f"{provider}: webhook is not JSON"
        ) from exc
    if not isinstance(event, dict):
        raise ProviderRejected(FailureClass.INVALID_INPUT, f"{provider}: webhook is not an object")
    return event
