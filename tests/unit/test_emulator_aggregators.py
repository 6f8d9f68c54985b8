"""fal and Replicate surfaces of the emulator: strict inputs, lifecycle, cancel, expiry, and
webhooks signed the way each service signs them (checked with the real adapters' verifiers)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from services.emulator.app import create_app
from services.emulator.settings import EmulatorSettings
from services.emulator.tasks import FakeClock
from shared.providers.fal import FalProvider
from shared.providers.replicate import ReplicateProvider
from shared.providers.settings import EMULATOR_FAL_JWKS, ProviderSettings

FAL = {"Authorization": "Key fal-test"}
REP = {"Authorization": "Bearer r8_test"}
SEEDANCE = "/fal/queue/fal-ai/bytedance/seedance/v1/pro/text-to-video"
REP_CREATE = "/replicate/v1/models/bytedance/seedance-1-pro/predictions"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def deliveries() -> list[httpx.Request]:
    return []


@pytest.fixture
def client(
    tmp_path: Path, clock: FakeClock, deliveries: list[httpx.Request]
) -> Iterator[TestClient]:
    settings = EmulatorSettings(
        data_dir=tmp_path,
        render_seconds=4,
        queue_seconds=1,
        render_scale=0.1,
        result_ttl_seconds=60,
        lifecycle_tick_seconds=0.01,
    )

    def capture(request: httpx.Request) -> httpx.Response:
        request.read()
        deliveries.append(request)
        return httpx.Response(200)

    app = create_app(settings, clock=clock, callback_transport=httpx.MockTransport(capture))
    with TestClient(app) as test_client:
        yield test_client


def wait_for(deliveries: list[httpx.Request], count: int) -> None:
    deadline = time.monotonic() + 5
    while len(deliveries) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def fal_submit(client: TestClient, query: str = "", **body: object) -> dict[str, Any]:
    payload = {"prompt": "a kite over dunes", "duration": "5", **body}
    resp = client.post(SEEDANCE + query, headers=FAL, json=payload)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_fal_refuses_a_missing_key_an_unknown_endpoint_and_a_bad_duration(
    client: TestClient,
) -> None:
    assert client.post(SEEDANCE, json={"prompt": "x"}).status_code == 401
    unknown = client.post("/fal/queue/fal-ai/nope/text-to-video", headers=FAL, json={})
    assert unknown.status_code == 404
    bad = client.post(SEEDANCE, headers=FAL, json={"prompt": "x", "duration": "13"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "duration"]
    no_prompt = client.post(SEEDANCE, headers=FAL, json={"duration": "5"})
    assert no_prompt.json()["detail"][0]["type"] == "missing"


def test_fal_request_moves_from_queue_to_a_downloadable_video(
    client: TestClient, clock: FakeClock
) -> None:
    submitted = fal_submit(client)
    status_url = submitted["status_url"].replace("http://testserver", "")
    first = client.get(status_url, headers=FAL)
    assert (first.status_code, first.json()["status"]) == (202, "IN_QUEUE")
    early = client.get(submitted["response_url"].replace("http://testserver", ""), headers=FAL)
    assert early.status_code == 400
    clock.advance(2)
    assert client.get(status_url, headers=FAL).json()["status"] == "IN_PROGRESS"
    clock.advance(5)
    done = client.get(status_url, headers=FAL)
    assert (done.status_code, done.json()["status"]) == (200, "COMPLETED")
    result = client.get(submitted["response_url"].replace("http://testserver", ""), headers=FAL)
    video = client.get(result.json()["video"]["url"].replace("http://testserver", ""))
    assert video.status_code == 200
    assert video.content[4:8] == b"ftyp"
    clock.advance(120)  # past result_ttl_seconds
    assert (
        client.get(result.json()["video"]["url"].replace("http://testserver", "")).status_code
        == 404
    )


def test_fal_cancel_answers_like_the_queue_api(client: TestClient, clock: FakeClock) -> None:
    submitted = fal_submit(client)
    cancel_url = submitted["cancel_url"].replace("http://testserver", "")
    first = client.put(cancel_url, headers=FAL)
    assert (first.status_code, first.json()["status"]) == (202, "CANCELLATION_REQUESTED")
    again = client.put(cancel_url, headers=FAL)
    assert (again.status_code, again.json()["status"]) == (400, "ALREADY_COMPLETED")
    result = client.get(submitted["response_url"].replace("http://testserver", ""), headers=FAL)
    assert result.json()["error_type"] == "client_cancelled"


def test_fal_input_moderation_is_a_stored_422_content_policy_violation(
    client: TestClient, clock: FakeClock
) -> None:
    submitted = fal_submit(client, prompt="a kite [fail:moderation_input]")
    clock.advance(1)
    status = client.get(submitted["status_url"].replace("http://testserver", ""), headers=FAL)
    assert status.json()["error_type"] == "content_policy_violation"
    result = client.get(submitted["response_url"].replace("http://testserver", ""), headers=FAL)
    assert result.status_code == 422
    assert result.json()["detail"][0]["loc"] == ["body", "prompt"]


async def test_fal_webhook_is_signed_with_the_published_key(
    client: TestClient, clock: FakeClock, deliveries: list[httpx.Request]
) -> None:
    published = client.get("/fal/.well-known/jwks.json").json()
    assert published["keys"][0]["x"] in EMULATOR_FAL_JWKS
    submitted = fal_submit(client, query="?fal_webhook=http://hooks.test/hooks/fal")
    clock.advance(10)
    wait_for(deliveries, 1)
    assert len(deliveries) == 1
    async with httpx.AsyncClient() as http:
        adapter = FalProvider(
            http, api_key="k", queue_base_url="http://x", webhook_jwks=EMULATOR_FAL_JWKS,
            clock=clock.now,
        )  # fmt: skip
        hint = adapter.parse_webhook(dict(deliveries[0].headers), deliveries[0].content)
    assert (hint.task_id, hint.raw_status) == (submitted["request_id"], "OK")


def rep_create(client: TestClient, headers: dict[str, str] | None = None, **body: object) -> Any:
    payload = {"input": {"prompt": "a kite", "duration": 5}, **body}
    return client.post(REP_CREATE, headers={**REP, **(headers or {})}, json=payload)


def test_replicate_refuses_bad_tokens_unknown_models_and_invalid_input(client: TestClient) -> None:
    assert client.post(REP_CREATE, json={"input": {"prompt": "x"}}).status_code == 401
    unknown = client.post("/replicate/v1/models/a/b/predictions", headers=REP, json={"input": {}})
    assert (unknown.status_code, unknown.json()["title"]) == (404, "Not found")
    bad = rep_create(client, input={"prompt": "x", "duration": 99})
    assert bad.status_code == 422
    assert bad.json()["invalid_fields"][0]["field"] == "input"


def test_replicate_prediction_lifecycle_and_one_hour_data_removal(
    client: TestClient, clock: FakeClock
) -> None:
    created = rep_create(client)
    assert created.status_code == 201
    pid = created.json()["id"]
    get = f"/replicate/v1/predictions/{pid}"
    assert client.get(get, headers=REP).json()["status"] == "starting"
    clock.advance(2)
    assert client.get(get, headers=REP).json()["status"] == "processing"
    clock.advance(5)
    done = client.get(get, headers=REP).json()
    assert done["status"] == "succeeded"
    video = client.get(done["output"].replace("http://testserver", ""))
    assert video.content[4:8] == b"ftyp"
    clock.advance(120)
    removed = client.get(get, headers=REP).json()
    assert (removed["data_removed"], removed["output"]) == (True, None)
    assert client.get(done["output"].replace("http://testserver", "")).status_code == 404


def test_replicate_prefer_wait_returns_the_finished_prediction(
    client: TestClient, clock: FakeClock
) -> None:
    created = rep_create(
        client,
        headers={"Prefer": "wait=1"},
        input={"prompt": "a [render:0] [queue:0]", "duration": 5},
    )
    assert created.json()["status"] == "succeeded"


def test_replicate_cancel_and_moderation_failures(client: TestClient, clock: FakeClock) -> None:
    pid = rep_create(client).json()["id"]
    cancelled = client.post(f"/replicate/v1/predictions/{pid}/cancel", headers=REP)
    assert cancelled.json()["status"] == "canceled"
    moderated = rep_create(client, input={"prompt": "x [fail:moderation_input]", "duration": 5})
    clock.advance(1)
    body = client.get(f"/replicate/v1/predictions/{moderated.json()['id']}", headers=REP).json()
    assert (body["status"], body["error"].endswith("(E005)")) == ("failed", True)


async def test_replicate_webhook_verifies_with_the_secret_the_api_hands_out(
    client: TestClient, clock: FakeClock, deliveries: list[httpx.Request]
) -> None:
    secret = client.get("/replicate/v1/webhooks/default/secret", headers=REP).json()["key"]
    pid = rep_create(
        client,
        webhook="http://hooks.test/hooks/replicate",
        webhook_events_filter=["completed"],
    ).json()["id"]
    clock.advance(10)
    wait_for(deliveries, 1)
    assert len(deliveries) == 1
    async with httpx.AsyncClient() as http:
        adapter = ReplicateProvider(
            http, api_token="t", base_url="http://x", webhook_secret=secret, clock=clock.now
        )
        hint = adapter.parse_webhook(dict(deliveries[0].headers), deliveries[0].content)
    assert (hint.task_id, hint.raw_status) == (pid, "succeeded")


def test_the_default_replicate_webhook_secret_matches_the_emulators() -> None:
    secret = ProviderSettings().replicate_webhook_secret
    assert secret is not None
    assert secret.get_secret_value() == EmulatorSettings().replicate_webhook_secret
