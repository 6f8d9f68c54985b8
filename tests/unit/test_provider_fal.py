"""FalProvider against recorded queue answers: wire shape, states and failure classes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.providers.base import GenerationRequest, TaskRef, TaskState
from shared.providers.errors import (
    FailureClass,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from shared.providers.fal import FalProvider, app_id
from shared.providers.fal_webhooks import jwks_of, sign
from tests.fixtures.providers.fake_api import FakeProviderApi, fixture

BASE = "https://queue.fal.run"
MODEL = "fal-ai/bytedance/seedance/v1/pro"
RID = fixture("fal/submit")["request_id"]
ROOT = f"{BASE}/fal-ai/bytedance/requests/{RID}"
NOW = 1_760_000_000.0
KEY = Ed25519PrivateKey.from_private_bytes(b"k" * 32)
JWKS = json.dumps(jwks_of(KEY, "test"))
REQUEST = GenerationRequest(prompt="Slow dolly in on a lighthouse", duration_s=5, seed=7)
REF = TaskRef(provider="fal", model=MODEL, task_id=RID, extra={"app": "fal-ai/bytedance"})


@pytest.fixture
def api() -> FakeProviderApi:
    return FakeProviderApi()


@pytest.fixture
async def client(api: FakeProviderApi) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as c:
        yield c


def fal(client: httpx.AsyncClient, jwks: str | None = JWKS) -> FalProvider:
    return FalProvider(
        client, api_key="fal-test", queue_base_url=BASE, webhook_jwks=jwks, clock=lambda: NOW
    )


def test_the_app_id_drops_the_endpoint_subpath() -> None:
    assert app_id("fal-ai/minimax/hailuo-02/pro/text-to-video") == "fal-ai/minimax"
    assert app_id("fal-ai/wan-25-preview/image-to-video") == "fal-ai/wan-25-preview"


async def test_submit_posts_the_model_input_with_a_key_header_and_the_webhook_query(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    hook = "https://hooks.example/hooks/fal/tok"
    url = (
        f"{BASE}/{MODEL}/text-to-video?fal_webhook=https%3A%2F%2Fhooks.example%2Fhooks%2Ffal%2Ftok"
    )
    api.on("POST", url, fixture_name="fal/submit")
    ref = await fal(client).submit(REQUEST.model_copy(update={"callback_url": hook}), MODEL)
    assert (ref.task_id, ref.extra["app"]) == (RID, "fal-ai/bytedance")
    assert api.sent_json("POST", url) == {
        "prompt": REQUEST.prompt,
        "duration": "5",
        "resolution": "720p",
        "aspect_ratio": "16:9",
        "seed": 7,
    }
    assert api.sent_headers("POST", url)["authorization"] == "Key fal-test"


async def test_submit_with_an_image_uses_the_image_endpoint_and_its_field(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    url = f"{BASE}/fal-ai/luma-dream-machine/ray-2/image-to-video"
    api.on("POST", url, fixture_name="fal/submit")
    request = REQUEST.model_copy(update={"image_url": "https://img.example/a.jpg"})
    ref = await fal(client).submit(request, "fal-ai/luma-dream-machine/ray-2")
    sent = api.sent_json("POST", url)
    assert (sent["image_url"], sent["duration"]) == ("https://img.example/a.jpg", "5s")
    assert ref.extra["app"] == "fal-ai/luma-dream-machine"


async def test_audio_is_sent_as_generate_audio_where_the_model_takes_it(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    url = f"{BASE}/bytedance/seedance-2.0/fast/text-to-video"
    api.on("POST", url, fixture_name="fal/submit")
    ref = await fal(client).submit(
        REQUEST.model_copy(update={"audio": True}), "bytedance/seedance-2.0/fast"
    )
    assert api.sent_json("POST", url)["generate_audio"] is True
    assert ref.extra["app"] == "bytedance/seedance-2.0"


async def test_a_model_without_an_image_endpoint_refuses_an_image(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    request = REQUEST.model_copy(update={"image_url": "https://img.example/a.jpg"})
    with pytest.raises(ProviderRejected) as caught:
        await fal(client).submit(request, "bytedance/seedance-2.0/fast")
    assert caught.value.failure_class is FailureClass.INVALID_INPUT
    assert api.requests == []


async def test_a_resolution_the_model_lacks_is_refused_before_any_call(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    request = REQUEST.model_copy(update={"resolution": "1080p"})
    with pytest.raises(ProviderRejected) as caught:
        await fal(client).submit(request, "bytedance/seedance-2.0/fast")
    assert caught.value.failure_class is FailureClass.INVALID_INPUT
    assert api.requests == []


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("fal/status_in_queue", TaskState.QUEUED),
        ("fal/status_in_progress", TaskState.RUNNING),
        ("fal/status_unknown", TaskState.UNKNOWN),
    ],
)
async def test_pending_statuses_map_without_fetching_the_result(
    api: FakeProviderApi, client: httpx.AsyncClient, name: str, state: TaskState
) -> None:
    api.on("GET", f"{ROOT}/status", fixture_name=name)
    status = await fal(client).status(REF)
    assert status.state is state
    assert [r.url.path for r in api.requests] == [f"/fal-ai/bytedance/requests/{RID}/status"]


async def test_completed_fetches_the_result_and_reports_the_video_url(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", f"{ROOT}/status", fixture_name="fal/status_completed")
    api.on("GET", ROOT, fixture_name="fal/result")
    status = await fal(client).status(REF)
    assert status.state is TaskState.SUCCEEDED
    assert status.outputs[0].url == fixture("fal/result")["video"]["url"]
    assert status.outputs[0].expires_at is not None


@pytest.mark.parametrize(
    ("status_name", "code", "result_name", "failure_class"),
    [
        ("fal/status_completed_error", 422, "fal/error_content_policy_input",
         FailureClass.MODERATION_INPUT),
        ("fal/status_completed_error", 422, "fal/error_content_policy_output",
         FailureClass.MODERATION_OUTPUT),
        ("fal/status_completed_error", 422, "fal/error_validation_422", FailureClass.INVALID_INPUT),
        ("fal/status_completed_timeout", 504, "fal/error_request_timeout", FailureClass.TIMEOUT),
        ("fal/status_completed_timeout", 503, "fal/error_runner_scheduling",
         FailureClass.TIMEOUT),
    ],
)  # fmt: skip
async def test_a_failed_request_is_classified_from_its_stored_error(
    api: FakeProviderApi,
    client: httpx.AsyncClient,
    status_name: str,
    code: int,
    result_name: str,
    failure_class: FailureClass,
) -> None:
    api.on("GET", f"{ROOT}/status", fixture_name=status_name)
    api.on("GET", ROOT, status=code, fixture_name=result_name)
    status = await fal(client).status(REF)
    assert status.state is TaskState.FAILED
    assert status.failure is not None
    assert status.failure.failure_class is failure_class


async def test_a_request_error_without_a_status_flag_uses_the_error_type(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", f"{ROOT}/status", fixture_name="fal/status_completed")
    api.on("GET", ROOT, status=422, fixture_name="fal/error_content_policy_input")
    status = await fal(client).status(REF)
    assert status.failure is not None
    assert status.failure.failure_class is FailureClass.MODERATION_INPUT


async def test_a_gateway_5xx_on_the_result_of_a_good_request_is_transient(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", f"{ROOT}/status", fixture_name="fal/status_completed")
    api.on("GET", ROOT, status=502, content=b"<html>bad gateway</html>")
    with pytest.raises(ProviderUnavailable) as caught:
        await fal(client).status(REF)
    assert caught.value.failure_class is FailureClass.PROVIDER_ERROR


@pytest.mark.parametrize(
    ("status", "name", "headers", "failure_class", "error_type", "retry_after"),
    [
        (401, "fal/error_401", {}, FailureClass.AUTH, ProviderRejected, None),
        (404, "fal/error_404", {}, FailureClass.NOT_FOUND, ProviderRejected, None),
        (429, "fal/error_429", {"retry-after": "7"}, FailureClass.RATE_LIMITED,
         ProviderUnavailable, 7.0),
        (422, "fal/error_validation_422", {}, FailureClass.INVALID_INPUT, ProviderRejected, None),
        (422, "fal/error_content_policy_input", {}, FailureClass.MODERATION_INPUT,
         ProviderRejected, None),
        (503, "fal/error_runner_scheduling", {}, FailureClass.PROVIDER_ERROR,
         ProviderUnavailable, None),
    ],
)  # fmt: skip
async def test_submit_errors_are_classified(
    api: FakeProviderApi,
    client: httpx.AsyncClient,
    status: int,
    name: str,
    headers: dict[str, str],
    failure_class: FailureClass,
    error_type: type[ProviderError],
    retry_after: float | None,
) -> None:
    api.on("POST", f"{BASE}/{MODEL}/text-to-video", status=status, fixture_name=name,
           headers=headers)  # fmt: skip
    with pytest.raises(error_type) as caught:
        await fal(client).submit(REQUEST, MODEL)
    assert caught.value.failure_class is failure_class
    assert caught.value.retry_after == retry_after


async def test_a_locked_account_with_an_exhausted_balance_is_quota_not_auth(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on(
        "POST", f"{BASE}/{MODEL}/text-to-video", status=403, fixture_name="fal/error_403_balance"
    )
    with pytest.raises(ProviderRejected) as caught:
        await fal(client).submit(REQUEST, MODEL)
    assert caught.value.failure_class is FailureClass.QUOTA_EXHAUSTED


@pytest.mark.parametrize(
    ("code", "name", "cancelled"),
    [(202, "fal/cancel_requested", True), (400, "fal/cancel_already_completed", False)],
)
async def test_cancel_reports_whether_fal_accepted_it(
    api: FakeProviderApi, client: httpx.AsyncClient, code: int, name: str, cancelled: bool
) -> None:
    api.on("PUT", f"{ROOT}/cancel", status=code, fixture_name=name)
    assert await fal(client).cancel(REF) is cancelled


def _signed(body: bytes, *, timestamp: float = NOW, key: Ed25519PrivateKey = KEY) -> dict[str, str]:
    return sign(key, RID, "user-1", int(timestamp), body)


async def test_a_signed_webhook_becomes_a_hint(client: httpx.AsyncClient) -> None:
    body = json.dumps(fixture("fal/webhook_ok")).encode()
    hint = fal(client).parse_webhook(_signed(body), body)
    assert (hint.task_id, hint.raw_status, hint.event_type) == (RID, "OK", "request.ok")


@pytest.mark.parametrize(
    "tamper",
    ["body", "other_key", "old", "missing_header", "no_keys"],
)
async def test_a_webhook_that_does_not_verify_is_refused(
    client: httpx.AsyncClient, tamper: str
) -> None:
    body = json.dumps(fixture("fal/webhook_ok")).encode()
    headers = _signed(body)
    jwks: str | None = JWKS
    if tamper == "body":
        body = body.replace(b'"OK"', b'"ERROR"')
    elif tamper == "other_key":
        headers = _signed(body, key=Ed25519PrivateKey.from_private_bytes(b"o" * 32))
    elif tamper == "old":
        headers = _signed(body, timestamp=NOW - 301)
    elif tamper == "missing_header":
        del headers["x-fal-webhook-user-id"]
    else:
        jwks = None
    with pytest.raises(ProviderRejected) as caught:
        fal(client, jwks).parse_webhook(headers, body)
    assert caught.value.failure_class is FailureClass.AUTH
