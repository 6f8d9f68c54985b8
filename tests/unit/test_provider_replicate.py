"""ReplicateProvider against recorded prediction answers: wire shape, states, failures."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from shared import webhooks
from shared.providers.aggregator_models import REPLICATE_WIRES, Wire
from shared.providers.base import GenerationRequest, TaskRef, TaskState
from shared.providers.errors import (
    FailureClass,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from shared.providers.replicate import ReplicateProvider, retry_hint
from tests.fixtures.providers.fake_api import FakeProviderApi, fixture

BASE = "https://api.replicate.com"
MODEL = "bytedance/seedance-1-pro"
PID = fixture("replicate/prediction_starting")["id"]
GET = f"{BASE}/v1/predictions/{PID}"
CREATE = f"{BASE}/v1/models/{MODEL}/predictions"
NOW = 1_764_496_900.0
SECRET = fixture("replicate/webhook_secret")["key"]
REQUEST = GenerationRequest(prompt="Slow dolly in on a lighthouse", duration_s=5, seed=3)
REF = TaskRef(provider="replicate", model=MODEL, task_id=PID)


@pytest.fixture
def api() -> FakeProviderApi:
    return FakeProviderApi()


@pytest.fixture
async def client(api: FakeProviderApi) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as c:
        yield c


def replicate(client: httpx.AsyncClient) -> ReplicateProvider:
    return ReplicateProvider(
        client, api_token="r8_test", base_url=BASE, webhook_secret=SECRET, clock=lambda: NOW
    )


async def test_an_official_model_is_created_under_its_model_path_with_a_bearer_token(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("POST", CREATE, status=201, fixture_name="replicate/prediction_starting")
    hook = "https://hooks.example/hooks/replicate/tok"
    ref = await replicate(client).submit(REQUEST.model_copy(update={"callback_url": hook}), MODEL)
    assert ref.task_id == PID
    assert api.sent_json("POST", CREATE) == {
        "input": {
            "prompt": REQUEST.prompt,
            "duration": 5,
            "resolution": "720p",
            "aspect_ratio": "16:9",
            "seed": 3,
        },
        "webhook": hook,
        "webhook_events_filter": ["completed"],
    }
    assert api.sent_headers("POST", CREATE)["authorization"] == "Bearer r8_test"


async def test_wan_uses_its_image_model_and_size_field(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    url = f"{BASE}/v1/models/wan-video/wan-2.5-i2v/predictions"
    api.on("POST", url, status=201, fixture_name="replicate/prediction_starting")
    request = REQUEST.model_copy(update={"image_url": "https://img.example/a.jpg"})
    await replicate(client).submit(request, "wan-video/wan-2.5")
    sent = api.sent_json("POST", url)["input"]
    assert (sent["image"], sent["size"], "aspect_ratio" in sent) == (
        "https://img.example/a.jpg",
        "1280*720",
        False,
    )


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("replicate/prediction_starting", TaskState.QUEUED),
        ("replicate/prediction_processing", TaskState.RUNNING),
        ("replicate/prediction_canceled", TaskState.CANCELLED),
        ("replicate/prediction_unknown", TaskState.UNKNOWN),
    ],
)
async def test_prediction_statuses_map_to_task_states(
    api: FakeProviderApi, client: httpx.AsyncClient, name: str, state: TaskState
) -> None:
    api.on("GET", GET, fixture_name=name)
    assert (await replicate(client).status(REF)).state is state


async def test_a_succeeded_prediction_expires_an_hour_after_completion(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", GET, fixture_name="replicate/prediction_succeeded")
    status = await replicate(client).status(REF)
    assert status.state is TaskState.SUCCEEDED
    output = status.outputs[0]
    assert output.url == fixture("replicate/prediction_succeeded")["output"]
    assert output.expires_at is not None
    assert output.expires_at.isoformat() == "2026-11-30T11:01:10.250000+00:00"


async def test_a_list_output_gives_one_output_per_url(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", GET, fixture_name="replicate/prediction_succeeded_list")
    assert len((await replicate(client).status(REF)).outputs) == 2


async def test_removed_prediction_data_is_an_expired_result(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", GET, fixture_name="replicate/prediction_data_removed")
    status = await replicate(client).status(REF)
    assert status.state is TaskState.EXPIRED
    assert status.failure is not None
    assert status.failure.failure_class is FailureClass.RESULT_EXPIRED


@pytest.mark.parametrize(
    ("name", "failure_class", "code"),
    [
        ("replicate/prediction_failed_e005", FailureClass.MODERATION_INPUT, "E005"),
        ("replicate/prediction_failed_nsfw_output", FailureClass.MODERATION_OUTPUT, None),
        ("replicate/prediction_failed_internal", FailureClass.GENERATION_FAILED, None),
    ],
)
async def test_failed_predictions_are_classified_from_their_error(
    api: FakeProviderApi,
    client: httpx.AsyncClient,
    name: str,
    failure_class: FailureClass,
    code: str | None,
) -> None:
    api.on("GET", GET, fixture_name=name)
    status = await replicate(client).status(REF)
    assert status.state is TaskState.FAILED
    assert status.failure is not None
    assert (status.failure.failure_class, status.failure.provider_code) == (failure_class, code)


@pytest.mark.parametrize(
    ("status", "name", "headers", "failure_class", "error_type", "retry_after"),
    [
        (401, "replicate/error_401", {}, FailureClass.AUTH, ProviderRejected, None),
        (402, "replicate/error_402", {}, FailureClass.QUOTA_EXHAUSTED, ProviderRejected, None),
        (404, "replicate/error_404", {}, FailureClass.NOT_FOUND, ProviderRejected, None),
        (422, "replicate/error_422", {}, FailureClass.INVALID_INPUT, ProviderRejected, None),
        (429, "replicate/error_429", {}, FailureClass.RATE_LIMITED, ProviderUnavailable, 30.0),
        (429, "replicate/error_429", {"retry-after": "4"}, FailureClass.RATE_LIMITED,
         ProviderUnavailable, 4.0),
    ],
)  # fmt: skip
async def test_create_errors_are_classified(
    api: FakeProviderApi,
    client: httpx.AsyncClient,
    status: int,
    name: str,
    headers: dict[str, str],
    failure_class: FailureClass,
    error_type: type[ProviderError],
    retry_after: float | None,
) -> None:
    api.on("POST", CREATE, status=status, fixture_name=name, headers=headers)
    with pytest.raises(error_type) as caught:
        await replicate(client).submit(REQUEST, MODEL)
    assert caught.value.failure_class is failure_class
    assert caught.value.retry_after == retry_after


def test_the_throttle_wording_gives_a_wait() -> None:
    assert retry_hint("Request was throttled. Your rate limit resets in ~30s.") == 30.0
    assert retry_hint("Request was throttled. Expected available in 1 second.") == 1.0
    assert retry_hint("Too many requests") is None


async def test_cancel_posts_to_the_cancel_url_and_a_gone_prediction_is_false(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("POST", f"{GET}/cancel", fixture_name="replicate/prediction_canceled")
    assert await replicate(client).cancel(REF) is True
    api.on(
        "POST", f"{BASE}/v1/predictions/gone/cancel", status=404, fixture_name="replicate/error_404"
    )
    assert await replicate(client).cancel(REF.model_copy(update={"task_id": "gone"})) is False


async def test_a_standard_webhooks_delivery_becomes_a_hint(client: httpx.AsyncClient) -> None:
    body = json.dumps(fixture("replicate/prediction_succeeded")).encode()
    headers = webhooks.sign_headers(SECRET, body, timestamp=int(NOW))
    hint = replicate(client).parse_webhook(headers, body)
    assert (hint.task_id, hint.raw_status) == (PID, "succeeded")


async def test_a_webhook_signed_with_another_secret_is_refused(client: httpx.AsyncClient) -> None:
    body = json.dumps(fixture("replicate/prediction_succeeded")).encode()
    headers = webhooks.sign_headers(webhooks.generate_secret(), body, timestamp=int(NOW))
    with pytest.raises(ProviderRejected) as caught:
        replicate(client).parse_webhook(headers, body)
    assert caught.value.failure_class is FailureClass.AUTH


def test_a_pinned_version_is_created_through_the_predictions_endpoint(
    monkeypatch: pytest.MonkeyPatch, client: httpx.AsyncClient
) -> None:
    pinned = Wire(
        "acme/video:5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa", None
    )
    monkeypatch.setitem(REPLICATE_WIRES, "acme/video", pinned)
    path, body = replicate(client).create_request(REQUEST, "acme/video")
    assert path == "/v1/predictions"
    assert body["version"] == pinned.text.partition(":")[2]  # type: ignore[union-attr]
    assert body["input"]["prompt"] == REQUEST.prompt
