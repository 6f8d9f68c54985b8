"""OpenAI Videos surface of the emulator, driven by a fake clock."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from services.emulator.app import create_app
from services.emulator.settings import EmulatorSettings
from services.emulator.tasks import FakeClock

AUTH = {"Authorization": "Bearer sk-test"}
SECRET = "whsec_dGVzdC1zZWNyZXQtZm9yLW9wZW5haS13ZWJob29rcw=="


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def hooks() -> list[httpx.Request]:
    return []


@pytest.fixture
def client(tmp_path: Path, clock: FakeClock, hooks: list[httpx.Request]) -> Iterator[TestClient]:
    settings = EmulatorSettings(
        data_dir=tmp_path,
        render_seconds=4,
        queue_seconds=1,
        render_scale=0.1,
        lifecycle_tick_seconds=0.01,
        openai_webhook_url="http://hooks.test/openai",
        openai_webhook_secret=SECRET,
    )

    def capture(request: httpx.Request) -> httpx.Response:
        hooks.append(request)
        return httpx.Response(200)

    app = create_app(settings, clock=clock, callback_transport=httpx.MockTransport(capture))
    with TestClient(app) as test_client:
        yield test_client


def create(client: TestClient, prompt: str = "a cat on a skateboard", **extra: str) -> dict:
    resp = client.post(
        "/openai/v1/videos", headers=AUTH, json={"prompt": prompt, "size": "1280x720", **extra}
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_rejects_missing_key_with_openai_error_envelope(client: TestClient) -> None:
    resp = client.post("/openai/v1/videos", json={"prompt": "x"})
    assert resp.status_code == 401
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


def test_video_object_has_every_key_and_moves_through_its_lifecycle(
    client: TestClient, clock: FakeClock
) -> None:
    video = create(client)
    assert set(video) == {
        "id",
        "object",
        "model",
        "status",
        "progress",
        "created_at",
        "completed_at",
        "expires_at",
        "prompt",
        "size",
        "seconds",
        "remixed_from_video_id",
        "error",
    }
    assert (video["status"], video["progress"], video["seconds"], video["model"]) == (
        "queued",
        0,
        "4",
        "sora-2",
    )
    clock.advance(3)
    running = client.get(f"/openai/v1/videos/{video['id']}", headers=AUTH)
    assert running.headers["openai-poll-after-ms"] == "1000"
    assert running.json()["status"] == "in_progress"
    assert running.json()["progress"] == 50
    clock.advance(3)
    done = client.get(f"/openai/v1/videos/{video['id']}", headers=AUTH).json()
    assert done["status"] == "completed"
    assert done["progress"] == 100
    assert done["completed_at"] == int(video["created_at"] + 5)
    assert done["expires_at"] == done["completed_at"] + 3600


def test_accepts_multipart_create_like_the_sdk(client: TestClient) -> None:
    files = {"prompt": (None, "a dog"), "seconds": (None, "8"), "size": (None, "720x1280")}
    resp = client.post("/openai/v1/videos", headers=AUTH, files=files)
    assert resp.status_code == 200, resp.text
    assert (resp.json()["seconds"], resp.json()["size"]) == ("8", "720x1280")


def test_rejects_unknown_size_naming_the_param(client: TestClient) -> None:
    resp = client.post("/openai/v1/videos", headers=AUTH, json={"prompt": "x", "size": "10x10"})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "size"


def test_content_is_refused_until_completed_then_is_a_valid_mp4(
    client: TestClient, clock: FakeClock
) -> None:
    video = create(client)
    early = client.get(f"/openai/v1/videos/{video['id']}/content", headers=AUTH)
    assert early.status_code == 400
    assert early.json()["error"]["code"] == "video_not_ready"
    clock.advance(6)
    resp = client.get(f"/openai/v1/videos/{video['id']}/content", headers=AUTH)
    assert resp.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(resp.content)) as container:
        assert container.streams.video[0].width == 128
        assert container.streams.audio, "sora-2 clips carry audio"
    thumb = client.get(f"/openai/v1/videos/{video['id']}/content?variant=thumbnail", headers=AUTH)
    assert thumb.headers["content-type"] == "image/webp"


def test_content_after_expiry_is_not_found(client: TestClient, clock: FakeClock) -> None:
    video = create(client, prompt="[fail:expired] a bird")
    clock.advance(6)
    done = client.get(f"/openai/v1/videos/{video['id']}", headers=AUTH).json()
    assert done["expires_at"] <= clock.now()
    assert client.get(f"/openai/v1/videos/{video['id']}/content", headers=AUTH).status_code == 404


def test_input_moderation_rejects_at_create(client: TestClient) -> None:
    resp = client.post(
        "/openai/v1/videos", headers=AUTH, json={"prompt": "[fail:moderation_input] x"}
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "moderation_blocked"


def test_output_moderation_fails_after_render_with_error_code(
    client: TestClient, clock: FakeClock
) -> None:
    video = create(client, prompt="[fail:moderation_output] x")
    clock.advance(6)
    done = client.get(f"/openai/v1/videos/{video['id']}", headers=AUTH).json()
    assert done["status"] == "failed"
    assert done["error"]["code"] == "moderation_blocked"


def test_rate_limit_fault_answers_429_with_retry_after(client: TestClient) -> None:
    client.post("/_emulator/config", json={"rate_429": 1.0, "retry_after_seconds": 7})
    resp = client.post("/openai/v1/videos", headers=AUTH, json={"prompt": "x"})
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "7"
    assert resp.json()["error"]["type"] == "rate_limit_exceeded"


def test_malformed_fault_returns_invalid_json(client: TestClient) -> None:
    video = create(client, prompt="[fail:malformed] x")
    resp = client.get(f"/openai/v1/videos/{video['id']}", headers=AUTH)
    with pytest.raises(json.JSONDecodeError):
        resp.json()


def test_lists_with_cursor_and_deletes_finished_videos(
    client: TestClient, clock: FakeClock
) -> None:
    ids = [create(client, prompt=f"clip {i}")["id"] for i in range(3)]
    clock.advance(1)
    page = client.get("/openai/v1/videos?limit=2&order=asc", headers=AUTH).json()
    assert [v["id"] for v in page["data"]] == ids[:2]
    assert page["has_more"] is True
    rest = client.get(f"/openai/v1/videos?after={page['last_id']}&order=asc", headers=AUTH).json()
    assert [v["id"] for v in rest["data"]] == ids[2:]
    assert rest["has_more"] is False
    assert client.delete(f"/openai/v1/videos/{ids[0]}", headers=AUTH).status_code == 400
    clock.advance(6)
    deleted = client.delete(f"/openai/v1/videos/{ids[0]}", headers=AUTH).json()
    assert deleted == {"id": ids[0], "object": "video.deleted", "deleted": True}
    assert client.get(f"/openai/v1/videos/{ids[0]}", headers=AUTH).status_code == 404


def test_remix_of_completed_video_points_back_to_source(
    client: TestClient, clock: FakeClock
) -> None:
    source = create(client)
    clock.advance(6)
    remix = client.post(
        f"/openai/v1/videos/{source['id']}/remix", headers=AUTH, json={"prompt": "now at night"}
    )
    assert remix.json()["remixed_from_video_id"] == source["id"]
    assert remix.json()["size"] == "1280x720"


def test_sends_signed_webhook_that_openai_sdk_verifies(
    client: TestClient, clock: FakeClock, hooks: list[httpx.Request]
) -> None:
    video = create(client)
    clock.advance(6)
    deadline = time.monotonic() + 5
    while not hooks and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hooks, "no webhook delivered"
    request = hooks[0]
    sdk = openai.OpenAI(api_key="sk-test", webhook_secret=SECRET)
    sdk.webhooks.verify_signature(request.content, dict(request.headers))
    event = json.loads(request.content)
    assert (event["type"], event["data"], event["object"]) == (
        "video.completed",
        {"id": video["id"]},
        "event",
    )
