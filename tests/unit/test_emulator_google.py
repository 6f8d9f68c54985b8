"""Gemini API and Vertex AI Veo surfaces of the emulator, driven by a fake clock."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import httpx
import pytest
from fastapi.testclient import TestClient

from services.emulator.app import create_app
from services.emulator.settings import EmulatorSettings
from services.emulator.tasks import FakeClock
from shared.webhooks import verify

KEY = {"x-goog-api-key": "g-test"}
BEARER = {"Authorization": "Bearer ya29.test"}
VERTEX = (
    "/vertex/v1/projects/p1/locations/us-central1/publishers/google/models/veo-3.1-generate-001"
)


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


def start(client: TestClient, prompt: str = "a lighthouse", **params: object) -> dict:
    body = {"instances": [{"prompt": prompt}], "parameters": {"durationSeconds": 4, **params}}
    resp = client.post(
        "/gemini/v1beta/models/veo-3.1-generate-preview:predictLongRunning", headers=KEY, json=body
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_gemini_requires_an_api_key_with_google_envelope(client: TestClient) -> None:
    resp = client.post("/gemini/v1beta/models/veo-3.1-generate-preview:predictLongRunning", json={})
    assert resp.status_code == 403
    assert resp.json()["error"]["status"] == "PERMISSION_DENIED"
    assert resp.json()["error"]["code"] == 403


def test_gemini_operation_omits_done_until_finished_then_serves_the_file(
    client: TestClient, clock: FakeClock
) -> None:
    op = start(client)
    assert re.fullmatch(r"models/veo-3.1-generate-preview/operations/[a-z0-9]{12}", op["name"])
    assert "done" not in op
    clock.advance(3)
    done = client.get(f"/gemini/v1beta/{op['name']}", params={"key": "g-test"}).json()
    assert done["done"] is True
    samples = done["response"]["generateVideoResponse"]["generatedSamples"]
    path = samples[0]["video"]["uri"].removeprefix("http://testserver")
    video = client.get(path, headers=KEY)
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(video.content)) as container:
        assert container.streams.audio, "Veo 3 on the Gemini API always has audio"


def test_gemini_accepts_snake_case_parameters(client: TestClient, clock: FakeClock) -> None:
    body = {
        "instances": [{"prompt": "x"}],
        "parameters": {"duration_seconds": 4, "aspect_ratio": "9:16", "sample_count": 2},
    }
    op = client.post(
        "/gemini/v1beta/models/veo-3.1-generate-preview:predictLongRunning", headers=KEY, json=body
    ).json()
    clock.advance(3)
    done = client.get(f"/gemini/v1beta/{op['name']}", headers=KEY).json()
    assert len(done["response"]["generateVideoResponse"]["generatedSamples"]) == 2


def test_gemini_output_moderation_is_a_done_operation_without_samples(
    client: TestClient, clock: FakeClock
) -> None:
    op = start(client, prompt="[fail:moderation_output] x")
    clock.advance(3)
    result = client.get(f"/gemini/v1beta/{op['name']}", headers=KEY).json()["response"][
        "generateVideoResponse"
    ]
    assert "generatedSamples" not in result
    assert result["raiMediaFilteredCount"] > 0
    assert result["raiMediaFilteredReasons"]


def test_gemini_internal_failure_is_an_rpc_status_error(
    client: TestClient, clock: FakeClock
) -> None:
    op = start(client, prompt="[fail:internal] x")
    clock.advance(3)
    done = client.get(f"/gemini/v1beta/{op['name']}", headers=KEY).json()
    assert done["done"] is True
    assert done["error"]["code"] == 13
    assert "response" not in done


def test_gemini_rejects_bad_duration_as_invalid_argument(client: TestClient) -> None:
    body = {"instances": [{"prompt": "x"}], "parameters": {"durationSeconds": 30}}
    resp = client.post(
        "/gemini/v1beta/models/veo-3.1-generate-preview:predictLongRunning", headers=KEY, json=body
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_vertex_requires_credentials(client: TestClient) -> None:
    resp = client.post(f"{VERTEX}:predictLongRunning", json={"instances": [{"prompt": "x"}]})
    assert resp.status_code == 401
    assert resp.json()["error"]["status"] == "UNAUTHENTICATED"


def test_vertex_returns_inline_bytes_without_storage_uri(
    client: TestClient, clock: FakeClock
) -> None:
    body = {
        "instances": [{"prompt": "x"}],
        "parameters": {"durationSeconds": 4, "generateAudio": False},
    }
    op = client.post(f"{VERTEX}:predictLongRunning", headers=BEARER, json=body).json()
    assert op["name"].startswith(
        "projects/p1/locations/us-central1/publishers/google/models/veo-3.1-generate-001/operations/"
    )
    pending = client.post(
        f"{VERTEX}:fetchPredictOperation", headers=BEARER, json={"operationName": op["name"]}
    )
    assert "done" not in pending.json()
    clock.advance(3)
    done = client.post(
        f"{VERTEX}:fetchPredictOperation", headers=BEARER, json={"operationName": op["name"]}
    ).json()
    video = done["response"]["videos"][0]
    data = base64.b64decode(video["bytesBase64Encoded"])
    with av.open(io.BytesIO(data)) as container:
        assert not container.streams.audio


def test_vertex_writes_gcs_uri_served_by_the_emulator(client: TestClient, clock: FakeClock) -> None:
    body = {
        "instances": [{"prompt": "x"}],
        "parameters": {"durationSeconds": 4, "storageUri": "gs://bkt/out/"},
    }
    express = "/vertex/v1beta1/publishers/google/models/veo-3.1-generate-001"
    op = client.post(f"{express}:predictLongRunning", headers=KEY, json=body).json()
    clock.advance(3)
    done = client.post(
        f"{express}:fetchPredictOperation", headers=KEY, json={"operationName": op["name"]}
    ).json()
    uri = done["response"]["videos"][0]["gcsUri"]
    assert uri.startswith("gs://bkt/out/")
    assert (
        client.get(f"/vertex/gcs/{uri.removeprefix('gs://')}").headers["content-type"]
        == "video/mp4"
    )
    assert client.get("/vertex/gcs/bkt/out/nope/sample_0.mp4").status_code == 404


def first_gemini_webhook(
    tmp_path: Path, clock: FakeClock, begin: Callable[[TestClient], dict]
) -> tuple[dict, dict]:
    """Run `begin` on an emulator whose Gemini static webhook is set, let the task finish and
    return what `begin` answered and the first delivered event, its signature verified."""
    seen: list[httpx.Request] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    secret = "whsec_Z2VtaW5pLXdlYmhvb2stdGVzdC1zZWNyZXQ="
    settings = EmulatorSettings(
        data_dir=tmp_path,
        render_seconds=2,
        queue_seconds=0,
        render_scale=0.1,
        lifecycle_tick_seconds=0.01,
        gemini_webhook_url="http://hooks.test/g",
        gemini_webhook_secret=secret,
    )
    app = create_app(settings, clock=clock, callback_transport=httpx.MockTransport(capture))
    with TestClient(app) as client:
        started = begin(client)
        clock.advance(3)
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
    assert seen, "no webhook delivered"
    verify(secret, seen[0].content, dict(seen[0].headers))
    return started, json.loads(seen[0].content)


def test_gemini_static_webhook_is_standard_webhooks_signed(
    tmp_path: Path, clock: FakeClock
) -> None:
    op, event = first_gemini_webhook(tmp_path, clock, start)
    assert event["type"] == "video.generated"
    assert event["data"]["operation_name"] == op["name"]
