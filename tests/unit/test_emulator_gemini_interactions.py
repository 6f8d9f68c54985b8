"""The emulator's Gemini Interactions surface (gemini-omni-* video), driven by a fake clock."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from fastapi.testclient import TestClient

from services.emulator.app import create_app
from services.emulator.settings import EmulatorSettings
from services.emulator.tasks import FakeClock
from tests.unit.test_emulator_google import first_gemini_webhook

KEY = {"x-goog-api-key": "g-test"}
ROOT = "/gemini/v1beta/interactions"
MODEL = "gemini-omni-flash-preview"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(tmp_path: Path, clock: FakeClock) -> Iterator[TestClient]:
    settings = EmulatorSettings(
        data_dir=tmp_path, render_seconds=2, queue_seconds=0, render_scale=0.1
    )
    with TestClient(create_app(settings, clock=clock)) as test_client:
        yield test_client


def body(prompt: str = "a paper boat", model: str = MODEL, **video: Any) -> dict[str, Any]:
    return {
        "model": model,
        "input": prompt,
        "background": True,
        "response_format": {"type": "video", "duration": "4s", **video},
    }


def create(client: TestClient, **kwargs: Any) -> dict[str, Any]:
    resp = client.post(ROOT, headers=KEY, json=body(**kwargs))
    assert resp.status_code == 200, resp.text
    created: dict[str, Any] = resp.json()
    return created


def video_size(data: bytes) -> tuple[int, int, float]:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        assert container.streams.audio, "Omni videos carry a soundtrack"
        return stream.width, stream.height, (container.duration or 0) / av.time_base


def test_a_background_interaction_runs_then_completes_with_an_inline_mp4(
    client: TestClient, clock: FakeClock
) -> None:
    created = create(client, aspect_ratio="9:16")
    assert created["status"] in ("queued", "in_progress")
    assert created["id"].startswith("v1_")
    clock.advance(1)
    assert client.get(f"{ROOT}/{created['id']}", headers=KEY).json()["status"] == "in_progress"
    clock.advance(2)
    done = client.get(f"{ROOT}/{created['id']}", headers=KEY).json()
    assert done["status"] == "completed"
    assert [s["type"] for s in done["steps"]] == ["user_input", "model_output"]
    block = done["steps"][-1]["content"][0]
    assert (block["type"], block["mime_type"]) == ("video", "video/mp4")
    width, height, seconds = video_size(base64.b64decode(block["data"]))
    assert (width, height) == (72, 128)  # 720x1280 at render_scale 0.1
    assert abs(seconds - 4.0) < 0.2


def test_a_uri_delivery_points_at_a_download_that_needs_the_key(
    client: TestClient, clock: FakeClock
) -> None:
    created = create(client, model="gemini-omni-1.1-flash", delivery="uri", resolution="1080p")
    clock.advance(3)
    done = client.get(f"{ROOT}/{created['id']}", headers=KEY).json()
    block = done["steps"][-1]["content"][0]
    assert "data" not in block
    path = block["uri"].removeprefix("http://testserver")
    assert client.get(path).status_code == 403
    video = client.get(path, headers=KEY)
    assert video.status_code == 200
    assert video_size(video.content)[:2] == (192, 108)


@pytest.mark.parametrize(
    ("payload", "status", "words"),
    [
        (body(resolution="1080p"), 400, "resolution"),
        (body(aspect_ratio="1:1"), 400, "aspect_ratio"),
        (body(duration="12s"), 400, "duration"),
        (body(duration="8"), 400, "duration"),
        (body(model="veo-3.1-generate-preview"), 404, "not found"),
        ({**body(), "background": False}, 400, "background"),
        ({**body(), "response_format": {"type": "text"}}, 400, "video"),
        ({**body(), "input": [{"text": "no type"}]}, 400, "type"),
    ],
)
def test_requests_the_api_would_refuse_answer_4xx_with_a_reason(
    client: TestClient, payload: dict[str, Any], status: int, words: str
) -> None:
    resp = client.post(ROOT, headers=KEY, json=payload)
    assert resp.status_code == status
    error = resp.json()["error"]
    assert isinstance(error["code"], str)
    assert words in error["message"].lower()


def test_a_missing_key_is_refused(client: TestClient) -> None:
    assert client.post(ROOT, json=body()).status_code == 403


def test_a_429_carries_retry_info_in_the_body_and_no_retry_after_header(
    client: TestClient,
) -> None:
    resp = client.post(ROOT, headers=KEY, json=body(prompt="a kite [fail:429]"))
    assert resp.status_code == 429
    assert "retry-after" not in resp.headers
    error = resp.json()["error"]
    assert error["code"] == "resource_exhausted"
    retry = [d for d in error["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]


def test_a_used_up_daily_quota_names_the_per_day_quota_and_gives_no_retry_delay(
    client: TestClient,
) -> None:
    resp = client.post(ROOT, headers=KEY, json=body(prompt="a kite [fail:quota]"))
    assert resp.status_code == 429
    details = resp.json()["error"]["details"]
    assert not [d for d in details if d["@type"].endswith("RetryInfo")]
    quota = [d for d in details if d["@type"].endswith("QuotaFailure")]
    assert "PerDay" in quota[0]["violations"][0]["quotaId"]


def test_input_moderation_is_refused_at_create_and_output_moderation_fails_the_interaction(
    client: TestClient, clock: FakeClock
) -> None:
    refused = client.post(ROOT, headers=KEY, json=body(prompt="x [fail:moderation_input]"))
    assert refused.status_code == 400
    assert "safety" in refused.json()["error"]["message"]
    created = create(client, prompt="x [fail:moderation_output]")
    clock.advance(3)
    done = client.get(f"{ROOT}/{created['id']}", headers=KEY).json()
    assert done["status"] == "failed"
    assert "steps" not in done
    assert "safety" in done["errors"][0]["message"]


def test_cancel_then_delete_forgets_the_interaction(client: TestClient, clock: FakeClock) -> None:
    created = create(client)
    cancelled = client.post(f"{ROOT}/{created['id']}/cancel", headers=KEY)
    assert cancelled.json()["status"] == "cancelled"
    clock.advance(3)
    assert client.get(f"{ROOT}/{created['id']}", headers=KEY).json()["status"] == "cancelled"
    again = client.post(f"{ROOT}/{created['id']}/cancel", headers=KEY)
    assert again.status_code == 400
    assert client.delete(f"{ROOT}/{created['id']}", headers=KEY).json() == {}
    assert client.get(f"{ROOT}/{created['id']}", headers=KEY).status_code == 404


def test_another_key_cannot_see_an_interaction(client: TestClient) -> None:
    created = create(client)
    other = client.get(f"{ROOT}/{created['id']}", headers={"x-goog-api-key": "other"})
    assert other.status_code == 404


def test_a_finished_interaction_is_announced_on_the_static_webhook(
    tmp_path: Path, clock: FakeClock
) -> None:
    created, event = first_gemini_webhook(tmp_path, clock, create)
    assert event["type"] == "interaction.completed"
    assert event["data"]["id"] == created["id"]
