"""KlingProvider: JWT auth, the code-in-envelope errors, task mapping and callbacks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest

from shared.providers.base import GenerationRequest, TaskRef, TaskState, VideoOutput
from shared.providers.errors import (
    FailureClass,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from shared.providers.kling import KlingProvider, KlingTokenSource
from tests.fixtures.providers.fake_api import FakeProviderApi, fixture

BASE = "https://api-singapore.klingai.com"
TID = "867283741759111202"
T2V = f"{BASE}/v1/videos/text2video"
REQUEST = GenerationRequest(
    prompt="A paper boat on a rainy street",
    duration_s=5,
    resolution="1080p",
    audio=True,
    external_id="job-1",
    callback_url="https://hooks.example/kling?t=s3cret",
)
SK = "sk-test-0123456789abcdef0123456789abcdef"
REF = TaskRef(provider="kling", model="kling-v2-6", task_id=TID, extra={"kind": "text2video"})


class Clock:
    def __init__(self, now: float = 1_760_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api() -> FakeProviderApi:
    return FakeProviderApi()


@pytest.fixture
async def client(api: FakeProviderApi) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as c:
        yield c


def kling(client: httpx.AsyncClient, clock: Clock | None = None) -> KlingProvider:
    return KlingProvider(
        client, access_key="ak-test", secret_key=SK, base_url=BASE, clock=clock or Clock()
    )


def test_the_jwt_carries_issuer_expiry_and_not_before_signed_with_the_secret_key() -> None:
    clock = Clock()
    token = KlingTokenSource("ak-test", SK, clock).token()
    claims = jwt.decode(
        token, SK, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False}
    )
    assert claims == {"iss": "ak-test", "exp": int(clock.now) + 1800, "nbf": int(clock.now) - 5}
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}


def test_the_jwt_is_reused_until_a_minute_before_it_expires_then_renewed() -> None:
    clock = Clock()
    tokens = KlingTokenSource("ak-test", SK, clock)
    first = tokens.token()
    clock.now += 1800 - 61
    assert tokens.token() == first
    clock.now += 2
    renewed = tokens.token()
    assert renewed != first
    claims = jwt.decode(
        renewed, SK, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False}
    )
    assert claims["exp"] == int(clock.now) + 1800


async def test_submit_sends_duration_as_a_string_mode_sound_and_callback(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("POST", T2V, fixture_name="kling/create")
    ref = await kling(client).submit(REQUEST, "kling-v2-6")
    assert (ref.task_id, ref.extra) == (TID, {"kind": "text2video"})
    sent = api.sent_json("POST", T2V)
    assert sent == {
        "model_name": "kling-v2-6",
        "prompt": REQUEST.prompt,
        "duration": "5",
        "aspect_ratio": "16:9",
        "mode": "pro",
        "sound": "on",
        "callback_url": "https://hooks.example/kling?t=s3cret",
        "external_task_id": "job-1",
    }
    assert api.sent_headers("POST", T2V)["authorization"].startswith("Bearer ey")


async def test_submit_with_an_image_uses_image2video_and_strips_the_data_prefix(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("POST", f"{BASE}/v1/videos/image2video", fixture_name="kling/create")
    request = REQUEST.model_copy(update={"image_url": "data:image/png;base64,iVBORw0KGgo="})
    ref = await kling(client).submit(request, "kling-v3")
    assert ref.extra == {"kind": "image2video"}
    assert api.sent_json("POST", f"{BASE}/v1/videos/image2video")["image"] == "iVBORw0KGgo="


@pytest.mark.parametrize(
    ("status", "name", "failure_class", "error_type"),
    [
        (200, "kling/error_1301_in_200", FailureClass.MODERATION_INPUT, ProviderRejected),
        (400, "kling/error_1301_in_200", FailureClass.MODERATION_INPUT, ProviderRejected),
        (429, "kling/error_1102", FailureClass.QUOTA_EXHAUSTED, ProviderRejected),
        (429, "kling/error_1303", FailureClass.RATE_LIMITED, ProviderUnavailable),
        (401, "kling/error_1004", FailureClass.AUTH, ProviderRejected),
        (500, "kling/error_5000", FailureClass.PROVIDER_ERROR, ProviderUnavailable),
    ],
)
async def test_submit_classifies_by_the_envelope_code_even_under_http_200(
    api: FakeProviderApi,
    client: httpx.AsyncClient,
    status: int,
    name: str,
    failure_class: FailureClass,
    error_type: type[ProviderError],
) -> None:
    api.on("POST", T2V, status=status, fixture_name=name)
    with pytest.raises(error_type) as caught:
        await kling(client).submit(REQUEST, "kling-v2-6")
    assert caught.value.failure_class is failure_class
    assert caught.value.provider_code == str(fixture(name)["code"])


async def test_status_maps_processing_and_unknown_statuses(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", f"{T2V}/{TID}", fixture_name="kling/query_processing")
    assert (await kling(client).status(REF)).state is TaskState.RUNNING
    api.routes.clear()
    api.on("GET", f"{T2V}/{TID}", fixture_name="kling/query_unknown")
    status = await kling(client).status(REF)
    assert (status.state, status.raw_status) == (TaskState.UNKNOWN, "archived")


async def test_status_of_a_succeeded_task_keeps_the_url_for_30_days_after_completion(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", f"{T2V}/{TID}", fixture_name="kling/query_succeed")
    status = await kling(client).status(REF)
    assert status.state is TaskState.SUCCEEDED
    (output,) = status.outputs
    assert output.url is not None
    assert output.url.startswith("https://v15-kling.klingai.com/")
    assert output.expires_at is not None
    assert output.expires_at.timestamp() == 1774805196.166 + 30 * 86_400


@pytest.mark.parametrize(
    ("name", "failure_class"),
    [
        ("kling/query_failed_risk", FailureClass.MODERATION_OUTPUT),
        ("kling/query_failed_other", FailureClass.GENERATION_FAILED),
    ],
)
async def test_status_of_a_failed_task_classifies_its_message(
    api: FakeProviderApi, client: httpx.AsyncClient, name: str, failure_class: FailureClass
) -> None:
    api.on("GET", f"{T2V}/{TID}", fixture_name=name)
    status = await kling(client).status(REF)
    assert status.failure is not None
    assert status.failure.failure_class is failure_class


async def test_an_unknown_task_is_not_found(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", f"{T2V}/{TID}", status=404, fixture_name="kling/error_1203")
    with pytest.raises(ProviderRejected) as caught:
        await kling(client).status(REF)
    assert caught.value.failure_class is FailureClass.NOT_FOUND


async def test_a_malformed_envelope_is_a_transient_provider_error(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", f"{T2V}/{TID}", content=b'{"code":0,"data":')
    with pytest.raises(ProviderUnavailable, match="malformed JSON"):
        await kling(client).status(REF)


async def test_a_refused_result_url_is_result_expired(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    url = fixture("kling/query_succeed")["data"]["task_result"]["videos"][0]["url"]
    api.on("GET", url, status=403, content=b"AccessDenied")
    with pytest.raises(ProviderRejected) as caught:
        [c async for c in kling(client).download(REF, VideoOutput(url=url))]
    assert caught.value.failure_class is FailureClass.RESULT_EXPIRED


def test_a_callback_body_becomes_a_hint_to_recheck_the_task(client: httpx.AsyncClient) -> None:
    body = json.dumps(fixture("kling/callback_succeed")).encode()
    hint = kling(client).parse_webhook({"content-type": "application/json"}, body)
    assert (hint.provider, hint.task_id, hint.raw_status) == ("kling", TID, "succeed")


def test_a_callback_without_task_id_is_rejected(client: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderRejected) as caught:
        kling(client).parse_webhook({}, b'{"task_status": "succeed"}')
    assert caught.value.failure_class is FailureClass.INVALID_INPUT


def test_a_short_secret_key_issued_by_kling_signs_without_a_warning() -> None:
    assert KlingTokenSource("emulator-ak", "emulator-sk", Clock()).token().count(".") == 2
