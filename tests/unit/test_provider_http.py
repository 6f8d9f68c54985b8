"""The shared HTTP edge: error classification, Retry-After, malformed JSON, streamed downloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from shared.providers.errors import (
    FailureClass,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from shared.providers.http import (
    HttpEdge,
    classify_response,
    decode_json,
    map_provider_errors,
    parse_retry_after,
    trim_raw,
)
from tests.fixtures.providers.fake_api import FakeProviderApi, fixture

NOW = 1_760_000_000.0
URL = "https://cdn.example/video.mp4"


def response(
    status: int, body: object = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize(
    ("status", "body", "failure_class", "error_type"),
    [
        (401, fixture("openai/error_401"), FailureClass.AUTH, ProviderRejected),
        (403, fixture("gemini/error_403"), FailureClass.AUTH, ProviderRejected),
        (404, fixture("runway/error_404"), FailureClass.NOT_FOUND, ProviderRejected),
        (400, fixture("openai/error_400_invalid"), FailureClass.INVALID_INPUT, ProviderRejected),
        (422, {"error": "bad"}, FailureClass.INVALID_INPUT, ProviderRejected),
        (
            400,
            fixture("openai/error_400_moderation"),
            FailureClass.MODERATION_INPUT,
            ProviderRejected,
        ),
        (400, fixture("gemini/error_400_safety"), FailureClass.MODERATION_INPUT, ProviderRejected),
        (
            429,
            fixture("openai/error_429_rate_limit"),
            FailureClass.RATE_LIMITED,
            ProviderUnavailable,
        ),
        (429, fixture("openai/error_429_quota"), FailureClass.QUOTA_EXHAUSTED, ProviderRejected),
        (429, fixture("gemini/error_429"), FailureClass.RATE_LIMITED, ProviderUnavailable),
        (429, {"error": "Not enough credits"}, FailureClass.QUOTA_EXHAUSTED, ProviderRejected),
        (500, fixture("openai/error_500"), FailureClass.PROVIDER_ERROR, ProviderUnavailable),
        (503, fixture("gemini/error_503"), FailureClass.PROVIDER_ERROR, ProviderUnavailable),
    ],
)
def test_classifies_error_responses_by_status_and_body(
    status: int, body: object, failure_class: FailureClass, error_type: type[ProviderError]
) -> None:
    error = classify_response(response(status, body), "test")
    assert isinstance(error, error_type)
    assert error.failure_class is failure_class


def test_a_429_with_retry_after_is_rate_limited_even_when_the_body_mentions_billing() -> None:
    body = fixture("openai/error_429_quota")
    error = classify_response(response(429, body, {"Retry-After": "7"}), "t")
    assert error.failure_class is FailureClass.RATE_LIMITED
    assert error.retry_after == 7.0


def test_reads_retry_after_as_seconds_milliseconds_or_an_http_date() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
    when = datetime.fromtimestamp(NOW, tz=UTC) + timedelta(seconds=30)
    assert parse_retry_after({"Retry-After": format_datetime(when, usegmt=True)}, NOW) == 30.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_a_malformed_json_body_is_a_transient_provider_error_with_a_clear_message() -> None:
    with pytest.raises(ProviderUnavailable, match="malformed JSON") as caught:
        decode_json(httpx.Response(200, content=b'{"status": "comp'), "test")
    assert caught.value.failure_class is FailureClass.PROVIDER_ERROR


def test_a_non_json_error_page_is_still_classified_by_status() -> None:
    error = classify_response(httpx.Response(502, content=b"<html>Bad gateway</html>"), "t")
    assert error.failure_class is FailureClass.PROVIDER_ERROR


async def test_timeouts_become_timeout_and_connection_errors_become_provider_error() -> None:
    with pytest.raises(ProviderUnavailable) as timed_out:
        async with map_provider_errors("t"):
            raise httpx.ReadTimeout("slow")
    with pytest.raises(ProviderUnavailable) as refused:
        async with map_provider_errors("t"):
            raise httpx.ConnectError("refused")
    assert timed_out.value.failure_class is FailureClass.TIMEOUT
    assert refused.value.failure_class is FailureClass.PROVIDER_ERROR


@pytest.mark.parametrize(
    ("raised", "maybe_sent"),
    [
        (httpx.ReadTimeout("answer late"), True),
        (httpx.RemoteProtocolError("closed mid-answer"), True),
        (httpx.ReadError("reset"), True),
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("no route"), False),
        (httpx.PoolTimeout("no connection free"), False),
    ],
)
async def test_an_error_after_the_request_may_have_reached_the_provider_has_an_unknown_outcome(
    raised: httpx.TransportError, maybe_sent: bool
) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        async with map_provider_errors("t"):
            raise raised
    assert caught.value.outcome_unknown is maybe_sent


@pytest.mark.parametrize(("status", "unknown"), [(200, True), (201, True), (502, False)])
def test_an_unreadable_body_under_a_2xx_has_an_unknown_outcome(status: int, unknown: bool) -> None:
    cut = httpx.Response(status, content=b'{"id": "vid')
    with pytest.raises(ProviderUnavailable) as caught:
        decode_json(cut, "t")
    assert caught.value.outcome_unknown is unknown


def test_trims_long_strings_out_of_raw_payloads() -> None:
    trimmed = trim_raw({"videos": [{"bytesBase64Encoded": "A" * 5000, "mimeType": "video/mp4"}]})
    assert trimmed == {
        "videos": [{"bytesBase64Encoded": "<5000 chars trimmed>", "mimeType": "video/mp4"}]
    }


async def collect(edge: HttpEdge, url: str = URL, **kwargs: object) -> bytes:
    return b"".join([chunk async for chunk in edge.stream(url, chunk_bytes=4, **kwargs)])  # type: ignore[arg-type]


async def test_streams_a_download_in_chunks() -> None:
    api = FakeProviderApi().on("GET", URL, content=b"0123456789", headers={"content-length": "10"})
    async with api.client() as client:
        assert await collect(HttpEdge(client, "t")) == b"0123456789"


async def test_a_body_shorter_than_its_content_length_is_a_truncated_download() -> None:
    api = FakeProviderApi().on("GET", URL, content=b"01234", headers={"content-length": "10"})
    async with api.client() as client:
        with pytest.raises(ProviderUnavailable, match="truncated") as caught:
            await collect(HttpEdge(client, "t"))
    assert caught.value.failure_class is FailureClass.PROVIDER_ERROR


@pytest.mark.parametrize("status", [403, 404])
async def test_a_refused_download_past_its_expiry_is_result_expired(status: int) -> None:
    api = FakeProviderApi().on("GET", URL, status=status, json_body={"error": "gone"})
    expired = datetime.fromtimestamp(NOW - 10, tz=UTC)
    async with api.client() as client:
        with pytest.raises(ProviderRejected) as caught:
            await collect(HttpEdge(client, "t", clock=lambda: NOW), expires_at=expired)
    assert caught.value.failure_class is FailureClass.RESULT_EXPIRED


async def test_a_404_long_before_expiry_is_not_found_not_expired() -> None:
    api = FakeProviderApi().on("GET", URL, status=404, json_body={"error": "nope"})
    later = datetime.fromtimestamp(NOW + 3600, tz=UTC)
    async with api.client() as client:
        with pytest.raises(ProviderRejected) as caught:
            await collect(HttpEdge(client, "t", clock=lambda: NOW), expires_at=later)
    assert caught.value.failure_class is FailureClass.NOT_FOUND


async def test_a_410_is_always_result_expired() -> None:
    api = FakeProviderApi().on("GET", URL, status=410, json_body={"error": "gone"})
    async with api.client() as client:
        with pytest.raises(ProviderRejected) as caught:
            await collect(HttpEdge(client, "t"))
    assert caught.value.failure_class is FailureClass.RESULT_EXPIRED


async def test_follows_redirects_and_drops_credentials_when_leaving_the_origin() -> None:
    other = "https://storage.example/blob.mp4"
    api = (
        FakeProviderApi()
        .on("GET", URL, status=302, headers={"location": other})
        .on("GET", other, content=b"abc", headers={"content-length": "3"})
    )
    async with api.client() as client:
        body = await collect(HttpEdge(client, "t"), headers={"x-goog-api-key": "secret"})
    assert body == b"abc"
    assert "x-goog-api-key" not in api.sent_headers("GET", other)
