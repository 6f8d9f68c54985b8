"""OpenAIVideosProvider against recorded Videos API answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from shared.providers.base import GenerationRequest, TaskRef, TaskState, VideoOutput
from shared.providers.errors import (
    FailureClass,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from shared.providers.openai_videos import OpenAIVideosProvider
from shared.webhooks import sign_headers
from tests.fixtures.providers.fake_api import FakeProviderApi, fixture

BASE = "https://gateway.example/v1"
VID = "video_68d7512d07848190b3e45da0ecbebcde"
SECRET = "whsec_dGVzdC1zZWNyZXQ="
NOW = 1_760_000_000.0
REQUEST = GenerationRequest(prompt="A calico cat playing a piano", duration_s=8)
REF = TaskRef(provider="openai", model="sora-2", task_id=VID)


@pytest.fixture
def api() -> FakeProviderApi:
    return FakeProviderApi()


@pytest.fixture
async def client(api: FakeProviderApi) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as c:
        yield c


def provider(client: httpx.AsyncClient, base_url: str = BASE) -> OpenAIVideosProvider:
    return OpenAIVideosProvider(
        client, api_key="sk-test", base_url=base_url, webhook_secret=SECRET, clock=lambda: NOW
    )


async def test_submit_sends_seconds_and_size_as_strings_and_returns_the_video_id(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("POST", f"{BASE}/videos", fixture_name="openai/create_queued")
    request = REQUEST.model_copy(
        update={"aspect_ratio": "9:16", "image_url": "https://img.example/first.png"}
    )
    ref = await provider(client).submit(request, "sora-2")
    assert ref.task_id == VID
    sent = api.sent_json("POST", f"{BASE}/videos")
    assert sent == {
        "prompt": request.prompt,
        "model": "sora-2",
        "seconds": "8",
        "size": "720x1280",
        "input_reference": {"image_url": "https://img.example/first.png"},
    }
    assert api.sent_headers("POST", f"{BASE}/videos")["authorization"] == "Bearer sk-test"


async def test_submit_maps_1080p_to_the_sora_2_pro_high_sizes_for_sora_2_pro_only(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    """openai-python `types/video_size.py` allows 720x1280, 1280x720, 1024x1792 and 1792x1024
    only; 1920x1080 (sent before, failed first) is answered 400 by the real API."""
    api.on("POST", f"{BASE}/videos", fixture_name="openai/create_queued")
    hd = REQUEST.model_copy(update={"resolution": "1080p", "aspect_ratio": "16:9"})
    await provider(client).submit(hd, "sora-2-pro")
    assert api.sent_json("POST", f"{BASE}/videos")["size"] == "1792x1024"
    tall = hd.model_copy(update={"aspect_ratio": "9:16"})
    await provider(client).submit(tall, "sora-2-pro")
    assert api.sent_json("POST", f"{BASE}/videos")["size"] == "1024x1792"
    with pytest.raises(ProviderRejected) as caught:
        await provider(client).submit(hd, "sora-2")
    assert caught.value.failure_class is FailureClass.INVALID_INPUT


async def test_submit_refuses_sora_2_on_api_openai_com_as_retired(
    client: httpx.AsyncClient,
) -> None:
    with pytest.raises(ProviderRejected, match="2026-09-24") as caught:
        await provider(client, "https://api.openai.com/v1").submit(REQUEST, "sora-2-pro")
    assert caught.value.failure_class is FailureClass.MODEL_RETIRED


async def test_submit_allows_sora_2_through_an_openai_compatible_gateway(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("POST", f"{BASE}/videos", fixture_name="openai/create_queued")
    assert (await provider(client).submit(REQUEST, "sora-2")).task_id == VID


@pytest.mark.parametrize(
    ("status", "name", "headers", "failure_class", "error_type"),
    [
        (
            429,
            "openai/error_429_rate_limit",
            {"retry-after": "20"},
            FailureClass.RATE_LIMITED,
            ProviderUnavailable,
        ),
        (429, "openai/error_429_quota", {}, FailureClass.QUOTA_EXHAUSTED, ProviderRejected),
        (401, "openai/error_401", {}, FailureClass.AUTH, ProviderRejected),
        (400, "openai/error_400_invalid", {}, FailureClass.INVALID_INPUT, ProviderRejected),
        (400, "openai/error_400_moderation", {}, FailureClass.MODERATION_INPUT, ProviderRejected),
        (500, "openai/error_500", {}, FailureClass.PROVIDER_ERROR, ProviderUnavailable),
    ],
)
async def test_submit_classifies_error_answers(
    api: FakeProviderApi,
    client: httpx.AsyncClient,
    status: int,
    name: str,
    headers: dict[str, str],
    failure_class: FailureClass,
    error_type: type[ProviderError],
) -> None:
    api.on("POST", f"{BASE}/videos", status=status, fixture_name=name, headers=headers)
    with pytest.raises(error_type) as caught:
        await provider(client).submit(REQUEST, "sora-2")
    assert caught.value.failure_class is failure_class
    if headers:
        assert caught.value.retry_after == 20.0


async def test_status_reports_progress_as_a_fraction_and_the_poll_hint(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on(
        "GET",
        f"{BASE}/videos/{VID}",
        fixture_name="openai/status_in_progress",
        headers={"openai-poll-after-ms": "2500"},
    )
    status = await provider(client).status(REF)
    assert (status.state, status.raw_status, status.progress) == (
        TaskState.RUNNING,
        "in_progress",
        0.42,
    )
    assert status.poll_after_s == 2.5


async def test_status_of_a_completed_video_points_at_the_content_endpoint_until_expiry(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", f"{BASE}/videos/{VID}", fixture_name="openai/status_completed")
    status = await provider(client).status(REF)
    assert status.state is TaskState.SUCCEEDED
    (output,) = status.outputs
    assert output.url == f"{BASE}/videos/{VID}/content"
    assert output.expires_at is not None
    assert output.expires_at.timestamp() == 1760003720


@pytest.mark.parametrize(
    ("name", "failure_class"),
    [
        ("openai/status_failed_moderation", FailureClass.MODERATION_OUTPUT),
        ("openai/status_failed_internal", FailureClass.GENERATION_FAILED),
    ],
)
async def test_status_of_a_failed_video_classifies_its_error_code(
    api: FakeProviderApi, client: httpx.AsyncClient, name: str, failure_class: FailureClass
) -> None:
    api.on("GET", f"{BASE}/videos/{VID}", fixture_name=name)
    status = await provider(client).status(REF)
    assert status.state is TaskState.FAILED
    assert status.failure is not None
    assert status.failure.failure_class is failure_class


async def test_an_unknown_status_is_unknown_and_keeps_the_raw_value(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", f"{BASE}/videos/{VID}", fixture_name="openai/status_unknown")
    status = await provider(client).status(REF)
    assert (status.state, status.raw_status) == (TaskState.UNKNOWN, "archiving")


async def test_a_malformed_status_body_is_a_transient_provider_error(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", f"{BASE}/videos/{VID}", content=b"{not json")
    with pytest.raises(ProviderUnavailable, match="malformed JSON"):
        await provider(client).status(REF)


async def test_an_unknown_video_is_not_found(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", f"{BASE}/videos/video_nope", status=404, fixture_name="openai/error_404")
    with pytest.raises(ProviderRejected) as caught:
        await provider(client).status(REF.model_copy(update={"task_id": "video_nope"}))
    assert caught.value.failure_class is FailureClass.NOT_FOUND


async def test_download_streams_the_content_with_credentials(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    url = f"{BASE}/videos/{VID}/content"
    api.on("GET", url, content=b"\x00\x00\x00\x18ftypmp42", headers={"content-length": "12"})
    chunks = [c async for c in provider(client).download(REF, VideoOutput(url=url))]
    assert b"".join(chunks) == b"\x00\x00\x00\x18ftypmp42"
    assert api.sent_headers("GET", url)["authorization"] == "Bearer sk-test"


async def test_download_after_expiry_is_result_expired(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    url = f"{BASE}/videos/{VID}/content"
    api.on("GET", url, status=404, fixture_name="openai/error_404")
    output = VideoOutput(url=url, expires_at=datetime.fromtimestamp(NOW - 1, tz=UTC))
    with pytest.raises(ProviderRejected) as caught:
        [c async for c in provider(client).download(REF, output)]
    assert caught.value.failure_class is FailureClass.RESULT_EXPIRED


async def test_delete_removes_the_video_and_cancel_is_not_supported(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("DELETE", f"{BASE}/videos/{VID}", fixture_name="openai/deleted")
    adapter = provider(client)
    assert await adapter.delete(REF) is True
    assert await adapter.cancel(REF) is False
    assert adapter.capabilities.cancel is False


def test_parse_webhook_verifies_the_signature_and_returns_a_hint(client: httpx.AsyncClient) -> None:
    body = json.dumps(fixture("openai/webhook_video_completed")).encode()
    headers = sign_headers(SECRET, body, timestamp=int(NOW))
    hint = provider(client).parse_webhook(headers, body)
    assert (hint.task_id, hint.event_type) == (VID, "video.completed")


def test_parse_webhook_rejects_a_bad_signature_as_auth(client: httpx.AsyncClient) -> None:
    body = json.dumps(fixture("openai/webhook_video_completed")).encode()
    headers = sign_headers("whsec_b3RoZXI=", body, timestamp=int(NOW))
    with pytest.raises(ProviderRejected) as caught:
        provider(client).parse_webhook(headers, body)
    assert caught.value.failure_class is FailureClass.AUTH
