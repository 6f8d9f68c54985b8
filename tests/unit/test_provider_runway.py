"""RunwayProvider against recorded task answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from shared.providers.base import GenerationRequest, TaskRef, TaskState, VideoOutput
from shared.providers.errors import (
    FailureClass,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from shared.providers.runway import RunwayProvider
from tests.fixtures.providers.fake_api import FakeProviderApi, fixture

BASE = "https://api.dev.runwayml.com"
TID = "17f20503-6c24-4c16-946b-35dbbce2af2f"
TASK = f"{BASE}/v1/tasks/{TID}"
NOW = 1_760_000_000.0
REQUEST = GenerationRequest(prompt="Slow dolly in on a lighthouse", duration_s=5, seed=42)
REF = TaskRef(provider="runway", model="gen4.5", task_id=TID)
OLD_URL = fixture("runway/task_succeeded")["output"][0]
FRESH_URL = fixture("runway/task_succeeded_fresh")["output"][0]


@pytest.fixture
def api() -> FakeProviderApi:
    return FakeProviderApi()


@pytest.fixture
async def client(api: FakeProviderApi) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as c:
        yield c


def runway(client: httpx.AsyncClient) -> RunwayProvider:
    return RunwayProvider(client, api_key="key_test", base_url=BASE, clock=lambda: NOW)


async def test_submit_text_to_video_sends_the_versioned_camel_case_body(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("POST", f"{BASE}/v1/text_to_video", fixture_name="runway/create")
    ref = await runway(client).submit(REQUEST, "gen4.5")
    assert ref.task_id == TID
    assert api.sent_json("POST", f"{BASE}/v1/text_to_video") == {
        "model": "gen4.5",
        "promptText": REQUEST.prompt,
        "ratio": "1280:720",
        "duration": 5,
        "seed": 42,
    }
    assert api.sent_headers("POST", f"{BASE}/v1/text_to_video")["x-runway-version"] == "2024-11-06"


async def test_submit_with_an_image_uses_image_to_video(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("POST", f"{BASE}/v1/image_to_video", fixture_name="runway/create")
    request = REQUEST.model_copy(
        update={"image_url": "https://img.example/a.jpg", "aspect_ratio": "9:16"}
    )
    await runway(client).submit(request, "gen4_turbo")
    sent = api.sent_json("POST", f"{BASE}/v1/image_to_video")
    assert (sent["promptImage"], sent["ratio"]) == ("https://img.example/a.jpg", "720:1280")


@pytest.mark.parametrize(
    ("status", "name", "headers", "failure_class", "error_type"),
    [
        (400, "runway/error_400", {}, FailureClass.INVALID_INPUT, ProviderRejected),
        (401, "runway/error_401", {}, FailureClass.AUTH, ProviderRejected),
        (
            429,
            "runway/error_429",
            {"Retry-After": "30"},
            FailureClass.RATE_LIMITED,
            ProviderUnavailable,
        ),
        (502, "runway/error_404", {}, FailureClass.PROVIDER_ERROR, ProviderUnavailable),
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
    api.on("POST", f"{BASE}/v1/text_to_video", status=status, fixture_name=name, headers=headers)
    with pytest.raises(error_type) as caught:
        await runway(client).submit(REQUEST, "gen4.5")
    assert caught.value.failure_class is failure_class


@pytest.mark.parametrize(
    ("name", "state", "progress"),
    [
        ("runway/task_pending", TaskState.QUEUED, None),
        ("runway/task_throttled", TaskState.THROTTLED, None),
        ("runway/task_running", TaskState.RUNNING, 0.37),
        ("runway/task_unknown", TaskState.UNKNOWN, None),
    ],
)
async def test_status_maps_pending_throttled_running_and_unknown_tasks_with_a_5s_poll_hint(
    api: FakeProviderApi,
    client: httpx.AsyncClient,
    name: str,
    state: TaskState,
    progress: float | None,
) -> None:
    api.on("GET", TASK, fixture_name=name)
    status = await runway(client).status(REF)
    assert (status.state, status.progress) == (state, progress)
    assert status.raw_status == fixture(name)["status"]
    assert status.poll_after_s == 5.0


async def test_status_of_a_succeeded_task_lists_expiring_output_urls(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", TASK, fixture_name="runway/task_succeeded")
    status = await runway(client).status(REF)
    (output,) = status.outputs
    assert output.url == OLD_URL
    assert output.expires_at is not None
    assert output.expires_at.timestamp() == NOW + 86_400


@pytest.mark.parametrize(
    ("name", "failure_class"),
    [
        ("runway/task_failed_safety_input", FailureClass.MODERATION_INPUT),
        ("runway/task_failed_safety_output", FailureClass.MODERATION_INPUT),
        ("runway/task_failed_bad_output", FailureClass.GENERATION_FAILED),
        ("runway/task_failed_asset", FailureClass.INVALID_INPUT),
        ("runway/task_failed_unlisted", FailureClass.GENERATION_FAILED),
        ("runway/task_cancelled", FailureClass.CANCELLED),
    ],
)
async def test_status_of_a_failed_task_classifies_its_failure_code(
    api: FakeProviderApi, client: httpx.AsyncClient, name: str, failure_class: FailureClass
) -> None:
    api.on("GET", TASK, fixture_name=name)
    status = await runway(client).status(REF)
    assert status.state.terminal
    assert status.failure is not None
    assert status.failure.failure_class is failure_class


async def test_download_refreshes_an_expired_url_once_from_the_task(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", OLD_URL, status=403, content=b"<Error>AccessDenied</Error>")
    api.on("GET", TASK, fixture_name="runway/task_succeeded_fresh")
    api.on("GET", FRESH_URL, content=b"fresh-video", headers={"content-length": "11"})
    chunks = [c async for c in runway(client).download(REF, VideoOutput(url=OLD_URL))]
    assert b"".join(chunks) == b"fresh-video"


async def test_download_is_result_expired_when_the_refreshed_url_is_refused_too(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", OLD_URL, status=403, content=b"denied")
    api.on("GET", TASK, fixture_name="runway/task_succeeded_fresh")
    api.on("GET", FRESH_URL, status=404, content=b"gone")
    with pytest.raises(ProviderRejected) as caught:
        [c async for c in runway(client).download(REF, VideoOutput(url=OLD_URL))]
    assert caught.value.failure_class is FailureClass.RESULT_EXPIRED


async def test_download_is_result_expired_when_the_task_is_gone(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", OLD_URL, status=403, content=b"denied")
    api.on("GET", TASK, status=404, fixture_name="runway/error_404")
    with pytest.raises(ProviderRejected) as caught:
        [c async for c in runway(client).download(REF, VideoOutput(url=OLD_URL))]
    assert caught.value.failure_class is FailureClass.RESULT_EXPIRED


async def test_a_truncated_download_is_a_transient_provider_error(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", OLD_URL, content=b"half", headers={"content-length": "8"})
    with pytest.raises(ProviderUnavailable, match="truncated"):
        [c async for c in runway(client).download(REF, VideoOutput(url=OLD_URL))]


async def test_cancel_deletes_the_task_and_reports_a_missing_task_as_not_cancelled(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("DELETE", TASK, status=204)
    assert await runway(client).cancel(REF) is True
    api.routes.clear()
    api.on("DELETE", TASK, status=404, fixture_name="runway/error_404")
    assert await runway(client).cancel(REF) is False


async def test_a_malformed_task_body_is_a_transient_provider_error(
    api: FakeProviderApi, client: httpx.AsyncClient
) -> None:
    api.on("GET", TASK, content=b"<html>oops")
    with pytest.raises(ProviderUnavailable, match="malformed JSON"):
        await runway(client).status(REF)
