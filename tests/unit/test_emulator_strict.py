"""The emulator refuses what the real APIs refuse, with their status and error body (issue 13):
OpenAI sizes/seconds/models, Veo durations/resolutions/personGeneration and shut-down models,
Google-style 429s with RetryInfo in the body, Gemini file downloads through a redirect (Kling's
limits are in test_emulator_kling.py, Runway's in test_emulator_runway.py)."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.emulator.app import create_app
from services.emulator.openai_api import MODELS, SECONDS, SIZES
from services.emulator.settings import EmulatorSettings
from services.emulator.tasks import FakeClock
from shared.providers.errors import FailureClass, ProviderRejected, ProviderUnavailable
from shared.providers.http import classify_response

OPENAI = {"Authorization": "Bearer sk-test"}
KEY = {"x-goog-api-key": "g-test"}
GEMINI = "/gemini/v1beta/models/{model}:predictLongRunning"
VERTEX = "/vertex/v1/projects/p1/locations/us-central1/publishers/google/models/{model}"


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


def test_openai_enums_match_the_installed_sdk() -> None:
    video_types = pytest.importorskip("openai.types")
    assert set(SIZES) == set(typing.get_args(video_types.VideoSize))
    assert set(SECONDS) == set(typing.get_args(video_types.VideoSeconds))
    literal = next(a for a in typing.get_args(video_types.VideoModel) if a is not str)
    assert set(MODELS) == set(typing.get_args(literal))


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"size": "1920x1080", "model": "sora-2-pro"}, "size"),
        ({"size": "1080x1920", "model": "sora-2-pro"}, "size"),
        ({"size": "1792x1024", "model": "sora-2"}, "size"),
        ({"seconds": "16"}, "seconds"),
        ({"seconds": "5"}, "seconds"),
        ({"model": "sora-1"}, "model"),
    ],
)
def test_openai_refuses_values_outside_the_published_enums(
    client: TestClient, fields: dict[str, str], param: str
) -> None:
    resp = client.post("/openai/v1/videos", headers=OPENAI, json={"prompt": "x", **fields})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        param,
        "invalid_value",
    )
    assert error["message"].startswith(f"Invalid value: '{fields[param]}'.")


def test_openai_accepts_the_sora_2_pro_high_size(client: TestClient) -> None:
    body = {"prompt": "x", "model": "sora-2-pro", "size": "1792x1024", "seconds": "12"}
    resp = client.post("/openai/v1/videos", headers=OPENAI, json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["size"] == "1792x1024"


def veo(client: TestClient, path: str, instance: dict[str, object], **params: object) -> dict:
    body = {"instances": [{"prompt": "a lighthouse", **instance}], "parameters": params}
    resp = client.post(path, headers=KEY, json=body)
    return {"status": resp.status_code, **resp.json()}


@pytest.mark.parametrize(
    ("params", "instance"),
    [
        ({"durationSeconds": 5}, {}),
        ({"durationSeconds": 6, "resolution": "1080p"}, {}),
        ({"durationSeconds": 4, "resolution": "4k"}, {}),
        ({"durationSeconds": 8, "personGeneration": "allow_adult"}, {}),
        (
            {"durationSeconds": 8, "personGeneration": "allow_all"},
            {"image": {"bytesBase64Encoded": "AAAA", "mimeType": "image/png"}},
        ),
    ],
)
def test_gemini_refuses_veo_combinations_the_api_refuses(
    client: TestClient, params: dict[str, object], instance: dict[str, object]
) -> None:
    answer = veo(client, GEMINI.format(model="veo-3.1-generate-preview"), instance, **params)
    assert answer["status"] == 400
    assert answer["error"]["status"] == "INVALID_ARGUMENT"


def test_gemini_accepts_1080p_at_8_seconds(client: TestClient) -> None:
    path = GEMINI.format(model="veo-3.1-generate-preview")
    answer = veo(client, path, {}, durationSeconds=8, resolution="1080p")
    assert answer["status"] == 200, answer


@pytest.mark.parametrize(
    "model", ["veo-2.0-generate-001", "veo-3.0-generate-001", "veo-3.0-fast-generate-001"]
)
def test_shut_down_veo_models_are_not_found_on_both_surfaces(
    client: TestClient, model: str
) -> None:
    for path in (GEMINI.format(model=model), VERTEX.format(model=model) + ":predictLongRunning"):
        answer = veo(client, path, {}, durationSeconds=8)
        assert answer["status"] == 404, path
        assert answer["error"]["status"] == "NOT_FOUND"
        assert model in answer["error"]["message"]


def test_a_google_429_carries_retry_info_in_the_body_and_no_retry_after_header(
    client: TestClient,
) -> None:
    client.post("/_emulator/config", json={"retry_after_seconds": 32})
    body = {"instances": [{"prompt": "x [fail:429]"}], "parameters": {"durationSeconds": 4}}
    resp = client.post(GEMINI.format(model="veo-3.1-generate-preview"), headers=KEY, json=body)
    assert resp.status_code == 429
    assert "retry-after" not in resp.headers
    error = resp.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    kinds = {d["@type"].rsplit(".", 1)[-1]: d for d in error["details"]}
    assert kinds["RetryInfo"]["retryDelay"] == "32s"
    assert "PerMinute" in kinds["QuotaFailure"]["violations"][0]["quotaId"]
    classified = classify_response(resp, "gemini")
    assert isinstance(classified, ProviderUnavailable)
    assert classified.failure_class is FailureClass.RATE_LIMITED
    assert classified.retry_after == 32.0


def test_a_google_quota_fault_is_a_per_day_violation(client: TestClient) -> None:
    body = {"instances": [{"prompt": "x [fail:quota]"}], "parameters": {"durationSeconds": 4}}
    resp = client.post(GEMINI.format(model="veo-3.1-generate-preview"), headers=KEY, json=body)
    assert resp.status_code == 429
    classified = classify_response(resp, "gemini")
    assert isinstance(classified, ProviderRejected)
    assert classified.failure_class is FailureClass.QUOTA_EXHAUSTED


def test_gemini_file_download_redirects_to_a_signed_url_that_needs_no_key(
    client: TestClient, clock: FakeClock
) -> None:
    path = GEMINI.format(model="veo-3.1-generate-preview")
    name = veo(client, path, {}, durationSeconds=4)["name"]
    clock.advance(3)
    done = client.get(f"/gemini/v1beta/{name}", headers=KEY).json()
    uri = done["response"]["generateVideoResponse"]["generatedSamples"][0]["video"]["uri"]
    first = client.get(uri, headers=KEY, follow_redirects=False)
    assert first.status_code == 302
    location = first.headers["location"]
    assert "/gemini/blobs/" in location
    video = client.get(location, follow_redirects=False)
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert client.get(location.replace("sig=", "sig=x"), follow_redirects=False).status_code == 403
    assert client.get(uri, follow_redirects=False).status_code == 403  # no key, no redirect
