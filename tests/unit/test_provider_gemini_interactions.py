"""InteractionsVideo (gemini-omni-* on the Gemini Interactions API) and GeminiProvider's routing,
against the fixtures in tests/fixtures/providers/gemini_interactions.

The create bodies are checked against google-genai's typed parameters (`CreateModelInteraction`
and its `VideoResponseFormat`): no field the SDK does not know, no enum value it does not list.
"""

from __future__ import annotations

import base64
import json
import typing
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from google.genai.interactions import (
    CreateModelInteraction,
    Model,
    VideoResponseFormat,
    VideoResponseFormatAspectRatio,
    VideoResponseFormatDelivery,
)

from shared.providers.base import GenerationRequest, TaskRef, TaskState, VideoOutput
from shared.providers.errors import FailureClass, ProviderRejected, ProviderUnavailable
from shared.providers.gemini import GeminiProvider
from shared.providers.gemini_interactions import InteractionsVideo
from shared.webhooks import sign_headers
from tests.fixtures.providers.fake_api import FakeProviderApi, fixture

BASE = "https://generativelanguage.googleapis.com"
MODEL = "gemini-omni-flash-preview"
IID = fixture("gemini_interactions/create_in_progress")["id"]
ITEM = f"{BASE}/v1beta/interactions/{IID}"
SECRET = "whsec_dGVzdC1zZWNyZXQ="
NOW = 1_760_000_000.0
REQUEST = GenerationRequest(prompt="A paper boat on a rainy street", duration_s=6)
REF = TaskRef(provider="gemini", model=MODEL, task_id=IID, extra={"surface": "interactions"})


@pytest.fixture
def api() -> FakeProviderApi:
    return FakeProviderApi()


@pytest.fixture
async def client(api: FakeProviderApi) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as c:
        yield c


def adapter(client: httpx.AsyncClient, delivery: str = "inline") -> InteractionsVideo:
    return InteractionsVideo(
        client,
        api_key="g-key",
        base_url=BASE,
        webhook_secret=SECRET,
        delivery=delivery,  # type: ignore[arg-type]
        clock=lambda: NOW,
    )


def literals(annotation: Any) -> set[str]:
    """The string literals of an SDK enum type (`Union[Literal[...], UnrecognizedStr]`)."""
    found: set[str] = set()
    for arg in typing.get_args(annotation) or (annotation,):
        if typing.get_origin(arg) is typing.Literal:
            found.update(typing.get_args(arg))
        elif typing.get_args(arg):
            found |= literals(arg)
    return found


def assert_matches_sdk_schema(body: dict[str, Any]) -> None:
    parsed = CreateModelInteraction.model_validate(body)
    assert not parsed.model_extra, f"fields the SDK does not know: {parsed.model_extra}"
    assert parsed.model in literals(Model)
    video = VideoResponseFormat.model_validate(body["response_format"])
    assert not video.model_extra
    assert video.aspect_ratio in literals(VideoResponseFormatAspectRatio)
    assert video.delivery in literals(VideoResponseFormatDelivery)
    assert video.resolution in literals(VideoResponseFormat.model_fields["resolution"].annotation)
    if parsed.webhook_config is not None:
        assert not parsed.webhook_config.model_extra


async def test_submit_sends_a_background_video_interaction_the_sdk_schema_accepts(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on(
        "POST", f"{BASE}/v1beta/interactions", fixture_name="gemini_interactions/create_in_progress"
    )
    request = REQUEST.model_copy(
        update={"callback_url": "https://hooks.example/g?t=s", "external_id": "job-1"}
    )
    ref = await adapter(client).submit(request, MODEL)
    body = api.sent_json("POST", f"{BASE}/v1beta/interactions")
    assert_matches_sdk_schema(body)
    assert body["model"] == MODEL
    assert body["input"] == REQUEST.prompt
    assert body["background"] is True
    assert body["response_format"] == {
        "type": "video",
        "aspect_ratio": "16:9",
        "resolution": "720p",
        "duration": "6s",
        "delivery": "inline",
    }
    assert body["webhook_config"] == {
        "uris": ["https://hooks.example/g?t=s"],
        "user_metadata": {"external_id": "job-1"},
    }
    assert api.requests[-1].headers["x-goog-api-key"] == "g-key"
    assert ref == REF


async def test_submit_sends_a_first_frame_as_an_image_content_block(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on(
        "POST", f"{BASE}/v1beta/interactions", fixture_name="gemini_interactions/create_in_progress"
    )
    request = REQUEST.model_copy(update={"image_url": "data:image/png;base64,iVBORw0KGgo="})
    await adapter(client, delivery="uri").submit(request, MODEL)
    body = api.sent_json("POST", f"{BASE}/v1beta/interactions")
    assert_matches_sdk_schema(body)
    assert body["input"] == [
        {"type": "text", "text": REQUEST.prompt},
        {"type": "image", "data": "iVBORw0KGgo=", "mime_type": "image/png"},
    ]
    assert body["response_format"]["delivery"] == "uri"


async def test_a_completed_interaction_yields_its_inline_video_decoded_on_download(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", ITEM, fixture_name="gemini_interactions/get_completed_inline")
    provider = adapter(client)
    status = await provider.status(REF)
    assert status.state is TaskState.SUCCEEDED
    assert status.raw_status == "completed"
    assert status.outputs == (VideoOutput(index=0, url=None, mime_type="video/mp4"),)
    data = b"".join([chunk async for chunk in provider.download(REF, status.outputs[0])])
    block = fixture("gemini_interactions/get_completed_inline")["steps"][-1]["content"][0]
    assert data == base64.b64decode(block["data"])


async def test_a_uri_delivery_is_downloaded_with_the_key_on_the_api_origin_only(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", ITEM, fixture_name="gemini_interactions/get_completed_uri")
    status = await adapter(client).status(REF)
    assert status.state is TaskState.SUCCEEDED
    uri = "https://generativelanguage.googleapis.com/v1beta/files/omni123:download?alt=media"
    assert [o.url for o in status.outputs] == [uri]
    api.on("GET", uri, status=302, headers={"location": "https://cdn.example/v.mp4"})
    api.on("GET", "https://cdn.example/v.mp4", content=b"mp4-bytes")
    data = b"".join([c async for c in adapter(client).download(REF, status.outputs[0])])
    assert data == b"mp4-bytes"
    assert api.requests[-2].headers["x-goog-api-key"] == "g-key"
    assert "x-goog-api-key" not in api.requests[-1].headers


@pytest.mark.parametrize(
    ("name", "state", "failure_class"),
    [
        ("create_in_progress", TaskState.RUNNING, None),
        ("get_cancelled", TaskState.CANCELLED, None),
        ("get_failed_safety_output", TaskState.FAILED, FailureClass.MODERATION_OUTPUT),
        ("get_failed_safety_input", TaskState.FAILED, FailureClass.MODERATION_INPUT),
        ("get_failed_step_error", TaskState.FAILED, FailureClass.PROVIDER_ERROR),
        ("get_completed_without_video", TaskState.FAILED, FailureClass.GENERATION_FAILED),
    ],
)
async def test_interaction_statuses_map_to_task_states_and_failure_classes(
    api: FakeProviderApi,
    client: httpx.AsyncClient,
    name: str,
    state: TaskState,
    failure_class: FailureClass | None,
) -> None:
    api.on("GET", ITEM, fixture_name=f"gemini_interactions/{name}")
    status = await adapter(client).status(REF)
    assert status.state is state
    assert (status.failure.failure_class if status.failure else None) is failure_class


async def test_an_unknown_status_keeps_polling_as_unknown(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", ITEM, json_body={"id": IID, "status": "requires_continuation"})
    status = await adapter(client).status(REF)
    assert (status.state, status.raw_status) == (TaskState.UNKNOWN, "requires_continuation")


async def test_a_429_with_retry_info_is_a_rate_limit_with_googles_delay(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", ITEM, status=429, fixture_name="gemini_interactions/error_429_retry_info")
    with pytest.raises(ProviderUnavailable) as caught:
        await adapter(client).status(REF)
    assert caught.value.failure_class is FailureClass.RATE_LIMITED
    assert caught.value.retry_after == 17.0


async def test_a_429_on_a_daily_quota_without_retry_info_is_quota_exhausted(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("POST", f"{BASE}/v1beta/interactions", status=429,
           fixture_name="gemini_interactions/error_429_daily_quota")  # fmt: skip
    with pytest.raises(ProviderRejected) as caught:
        await adapter(client).submit(REQUEST, MODEL)
    assert caught.value.failure_class is FailureClass.QUOTA_EXHAUSTED


@pytest.mark.parametrize(
    ("status", "name", "failure_class"),
    [
        (400, "error_400", FailureClass.INVALID_INPUT),
        (404, "error_404", FailureClass.NOT_FOUND),
    ],
)
async def test_error_envelopes_with_string_codes_are_classified(
    api: FakeProviderApi,
    client: httpx.AsyncClient,
    status: int,
    name: str,
    failure_class: FailureClass,
) -> None:
    api.on("GET", ITEM, status=status, fixture_name=f"gemini_interactions/{name}")
    with pytest.raises(ProviderRejected) as caught:
        await adapter(client).status(REF)
    assert caught.value.failure_class is failure_class
    assert caught.value.provider_code == fixture(f"gemini_interactions/{name}")["error"]["code"]


async def test_cancel_posts_to_the_cancel_route_and_delete_forgets_a_gone_interaction(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("POST", f"{ITEM}/cancel", fixture_name="gemini_interactions/get_cancelled")
    api.on("DELETE", ITEM, status=404, fixture_name="gemini_interactions/error_404")
    provider = adapter(client)
    assert await provider.cancel(REF) is True
    assert await provider.delete(REF) is True
    assert [(r.method, str(r.url)) for r in api.requests] == [
        ("POST", f"{ITEM}/cancel"),
        ("DELETE", ITEM),
    ]


def signed(event: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    body = json.dumps(event).encode()
    return sign_headers(SECRET, body, timestamp=int(NOW)), body


async def test_gemini_provider_routes_each_model_family_to_its_surface(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    provider = GeminiProvider(
        client, api_key="g-key", base_url=BASE, webhook_secret=SECRET, clock=lambda: NOW
    )
    api.on(
        "POST", f"{BASE}/v1beta/interactions", fixture_name="gemini_interactions/create_in_progress"
    )
    veo_url = f"{BASE}/v1beta/models/veo-3.1-generate-preview:predictLongRunning"
    api.on("POST", veo_url, fixture_name="gemini/create_operation")
    omni = await provider.submit(REQUEST, "gemini-omni-1.1-flash")
    veo = await provider.submit(REQUEST, "veo-3.1-generate-preview")
    assert omni.extra == {"surface": "interactions"}
    assert veo.task_id.startswith("models/veo-3.1-generate-preview/operations/")
    # A ref stored without the surface marker (older record) still resolves by its model.
    api.on("GET", ITEM, fixture_name="gemini_interactions/get_cancelled")
    bare = TaskRef(provider="gemini", model="gemini-omni-1.1-flash", task_id=IID)
    assert (await provider.status(bare)).state is TaskState.CANCELLED
    assert await provider.cancel(veo) is False

    headers, body = signed(fixture("gemini_interactions/webhook_interaction_completed"))
    hint = provider.parse_webhook(headers, body)
    assert (hint.task_id, hint.event_type, hint.raw_status) == (
        IID,
        "interaction.completed",
        "completed",
    )
    headers, body = signed(fixture("gemini/webhook_video_generated"))
    assert provider.parse_webhook(headers, body).event_type == "video.generated"


def test_a_webhook_with_a_bad_signature_is_refused_as_auth(client: httpx.AsyncClient) -> None:
    headers, body = signed(fixture("gemini_interactions/webhook_interaction_completed"))
    with pytest.raises(ProviderRejected) as caught:
        adapter(client).parse_webhook(headers, body + b" ")
    assert caught.value.failure_class is FailureClass.AUTH
