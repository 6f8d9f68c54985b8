"""Kling surface of the emulator: JWT auth codes, envelope, lifecycle, callbacks, limits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from services.emulator.app import create_app
from services.emulator.settings import EmulatorSettings
from services.emulator.tasks import FakeClock

AK, SK = "ak-test", "sk-test-0123456789-0123456789-0123456789"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def callbacks() -> list[dict]:
    return []


@pytest.fixture
def client(tmp_path: Path, clock: FakeClock, callbacks: list[dict]) -> Iterator[TestClient]:
    settings = EmulatorSettings(
        data_dir=tmp_path,
        render_seconds=4,
        queue_seconds=1,
        render_scale=0.1,
        kling_access_key=AK,
        kling_secret_key=SK,
        lifecycle_tick_seconds=0.01,
    )

    def capture(request: httpx.Request) -> httpx.Response:
        callbacks.append(json.loads(request.content))
        return httpx.Response(200)

    app = create_app(settings, clock=clock, callback_transport=httpx.MockTransport(capture))
    with TestClient(app) as test_client:
        yield test_client


def auth(clock: FakeClock, **claims: object) -> dict[str, str]:
    now = int(clock.now())
    payload = {"iss": AK, "exp": now + 1800, "nbf": now - 5, **claims}
    secret = str(payload.pop("_secret", SK))
    return {"Authorization": "Bearer " + jwt.encode(payload, secret, algorithm="HS256")}


def create(client: TestClient, clock: FakeClock, **body: object) -> dict:
    resp = client.post(
        "/kling/v1/videos/text2video", headers=auth(clock), json={"prompt": "a kite", **body}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["code"] == 0, resp.text
    return resp.json()["data"]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 1001),
        ("bad-signature", 1002),
        ("wrong-issuer", 1002),
        ("not-yet-valid", 1003),
        ("expired", 1004),
    ],
)
def test_jwt_problems_answer_401_with_kling_codes(
    client: TestClient, clock: FakeClock, headers: object, code: int
) -> None:
    variants = {
        "bad-signature": auth(clock, _secret="x" * 40),
        "wrong-issuer": auth(clock, iss="someone-else"),
        "not-yet-valid": auth(clock, nbf=int(clock.now()) + 60),
        "expired": auth(clock, exp=int(clock.now()) - 1),
    }
    sent = variants[headers] if isinstance(headers, str) else headers
    resp = client.post("/kling/v1/videos/text2video", headers=sent, json={"prompt": "x"})
    assert resp.status_code == 401
    assert resp.json()["code"] == code
    assert set(resp.json()) == {
        "code",
        "message",
        "request_id",
        "data",
    }


def test_a_token_stops_working_once_the_clock_passes_exp(
    client: TestClient, clock: FakeClock
) -> None:
    headers = auth(clock)
    assert client.get("/kling/v1/videos/text2video", headers=headers).status_code == 200
    clock.advance(1801)
    assert client.get("/kling/v1/videos/text2video", headers=headers).json()["code"] == 1004


def test_task_lifecycle_with_ms_timestamps_and_string_duration(
    client: TestClient, clock: FakeClock
) -> None:
    data = create(client, clock, duration="5", external_task_id="ext-1")
    assert data["task_status"] == "submitted"
    assert data["task_id"].isdigit()
    assert data["created_at"] == int(clock.now() * 1000)
    clock.advance(2)
    by_external = client.get("/kling/v1/videos/text2video/ext-1", headers=auth(clock)).json()[
        "data"
    ]
    assert by_external["task_status"] == "processing"
    assert by_external["task_id"] == data["task_id"]
    clock.advance(4)
    done = client.get(f"/kling/v1/videos/text2video/{data['task_id']}", headers=auth(clock)).json()[
        "data"
    ]
    video = done["task_result"]["videos"][0]
    assert done["task_status"] == "succeed"
    assert video["duration"] == "5.0"
    assert client.get(video["url"]).headers["content-type"] == "video/mp4"


def test_lists_tasks_newest_first_with_paging(client: TestClient, clock: FakeClock) -> None:
    ids = [create(client, clock, prompt=f"clip {i}")["task_id"] for i in range(3)]
    page = client.get(
        "/kling/v1/videos/text2video?pageNum=1&pageSize=2", headers=auth(clock)
    ).json()["data"]
    assert [t["task_id"] for t in page] == ids[::-1][:2]


def test_content_safety_rejects_at_create_with_1301(client: TestClient, clock: FakeClock) -> None:
    resp = client.post(
        "/kling/v1/videos/text2video",
        headers=auth(clock),
        json={"prompt": "[fail:moderation_input] x"},
    )
    assert resp.status_code == 400
    assert resp.json()["code"] == 1301


def test_output_moderation_fails_with_status_message(client: TestClient, clock: FakeClock) -> None:
    data = create(client, clock, prompt="[fail:moderation_output] x")
    clock.advance(6)
    done = client.get(f"/kling/v1/videos/text2video/{data['task_id']}", headers=auth(clock)).json()[
        "data"
    ]
    assert done["task_status"] == "failed"
    assert done["task_status_msg"]


def test_rate_limit_answers_429_with_code_1302(client: TestClient, clock: FakeClock) -> None:
    client.post("/_emulator/config", json={"create_rpm": 1})
    create(client, clock)
    resp = client.post("/kling/v1/videos/text2video", headers=auth(clock), json={"prompt": "x"})
    assert resp.status_code == 429
    assert resp.json()["code"] == 1302
    assert resp.headers["retry-after"]


def test_callback_receives_bare_data_on_every_status_change(
    client: TestClient, clock: FakeClock, callbacks: list[dict]
) -> None:
    data = create(client, clock, callback_url="http://hooks.test/kling")
    for step in (2, 4):
        clock.advance(step)
        deadline = time.monotonic() + 5
        while len(callbacks) < (1 if step == 2 else 2) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert [c["task_status"] for c in callbacks] == ["processing", "succeed"]
    assert all(c["task_id"] == data["task_id"] and "code" not in c for c in callbacks)


def test_an_armed_answer_lost_rate_creates_the_task_and_garbles_its_answer(
    client: TestClient, clock: FakeClock
) -> None:
    assert client.post("/_emulator/config", json={"rate_answer_lost": 1.0}).status_code == 200
    resp = client.post(
        "/kling/v1/videos/text2video",
        headers=auth(clock),
        json={"prompt": "a kite", "external_task_id": "ours-1"},
    )
    assert resp.status_code == 200
    assert resp.content == b'{"id": "trunc'  # the answer is lost: a cut-off body
    (task,) = client.get("/_emulator/tasks", params={"provider": "kling"}).json()["tasks"]
    assert task["external_id"] == "ours-1"
    client.post("/_emulator/config", json={"reset": True})
    found = client.get("/kling/v1/videos/text2video/ours-1", headers=auth(clock))
    assert found.json()["data"]["task_id"] == task["id"]
