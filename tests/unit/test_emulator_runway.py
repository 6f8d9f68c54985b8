"""Runway surface of the emulator: version header, THROTTLED, expiring outputs, failures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest
from fastapi.testclient import TestClient

from services.emulator.app import create_app
from services.emulator.settings import EmulatorSettings
from services.emulator.tasks import FakeClock

HEADERS = {"Authorization": "Bearer key_test", "X-Runway-Version": "2024-11-06"}
BODY = {"model": "gen4.5", "promptText": "a fox", "ratio": "1280:720", "duration": 2}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(tmp_path: Path, clock: FakeClock) -> Iterator[TestClient]:
    settings = EmulatorSettings(
        data_dir=tmp_path,
        render_seconds=4,
        queue_seconds=1,
        render_scale=0.1,
        result_ttl_seconds=60,
    )
    with TestClient(create_app(settings, clock=clock)) as test_client:
        yield test_client


def create(client: TestClient, **overrides: object) -> str:
    resp = client.post("/runway/v1/text_to_video", headers=HEADERS, json={**BODY, **overrides})
    assert resp.status_code == 200, resp.text
    assert resp.json()["estimatedCost"]["credits"] > 0
    return str(resp.json()["id"])


def status(client: TestClient, task_id: str) -> dict:
    return client.get(f"/runway/v1/tasks/{task_id}", headers=HEADERS).json()


def test_missing_or_wrong_version_header_is_a_400_with_error(client: TestClient) -> None:
    for version in ({}, {"X-Runway-Version": "2023-01-01"}):
        headers = {"Authorization": "Bearer key_test", **version}
        resp = client.post("/runway/v1/text_to_video", headers=headers, json=BODY)
        assert resp.status_code == 400
        assert "X-Runway-Version" in resp.json()["error"]


def test_missing_key_is_401(client: TestClient) -> None:
    resp = client.get("/runway/v1/tasks/x", headers={"X-Runway-Version": "2024-11-06"})
    assert resp.status_code == 401
    assert "error" in resp.json()


def test_task_moves_pending_running_succeeded_with_float_progress(
    client: TestClient, clock: FakeClock
) -> None:
    task_id = create(client)
    first = status(client, task_id)
    assert first["status"] == "PENDING"
    assert first["createdAt"].endswith("Z")
    clock.advance(3)
    running = status(client, task_id)
    assert running["status"] == "RUNNING"
    assert running["progress"] == pytest.approx(0.5)
    clock.advance(3)
    done = status(client, task_id)
    assert done["status"] == "SUCCEEDED"
    assert len(done["output"]) == 1
    assert client.get(done["output"][0]).headers["content-type"] == "video/mp4"


def test_tasks_beyond_the_concurrency_limit_stay_throttled_until_a_slot_frees(
    client: TestClient, clock: FakeClock
) -> None:
    ids = [create(client) for _ in range(3)]
    assert [status(client, i)["status"] for i in ids] == ["PENDING", "PENDING", "THROTTLED"]
    clock.advance(5.5)
    assert [status(client, i)["status"] for i in ids] == ["SUCCEEDED", "SUCCEEDED", "PENDING"]
    other = {**HEADERS, "Authorization": "Bearer key_other"}
    assert client.post("/runway/v1/text_to_video", headers=other, json=BODY).status_code == 200


def test_a_deleted_running_task_answers_as_cancelled_with_its_cost_and_frees_its_slot(
    client: TestClient, clock: FakeClock
) -> None:
    """runwayml's TaskRetrieveResponse types a deleted task as `Cancelled` ("A cancelled or
    deleted task") with a final `cost`, so GET after DELETE is a CANCELLED task, not 404."""
    runway_types = pytest.importorskip("runwayml.types")
    ids = [create(client) for _ in range(3)]
    clock.advance(2)
    assert client.delete(f"/runway/v1/tasks/{ids[0]}", headers=HEADERS).status_code == 204
    cancelled = status(client, ids[0])
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["cost"]["credits"] > 0  # it was RUNNING: no refund
    typed = pydantic.TypeAdapter(runway_types.TaskRetrieveResponse).validate_python(cancelled)
    assert typed.status == "CANCELLED"
    assert status(client, ids[2])["status"] == "PENDING"
    clock.advance(2)
    assert status(client, ids[2])["status"] == "RUNNING"


def test_a_deleted_succeeded_task_loses_its_outputs(client: TestClient, clock: FakeClock) -> None:
    task_id = create(client)
    clock.advance(6)
    url = status(client, task_id)["output"][0]
    assert client.delete(f"/runway/v1/tasks/{task_id}", headers=HEADERS).status_code == 204
    assert status(client, task_id)["status"] == "CANCELLED"
    assert "output" not in status(client, task_id)
    assert client.get(url).status_code == 404


def test_a_pending_task_deleted_is_refunded(client: TestClient) -> None:
    ids = [create(client) for _ in range(3)]
    assert client.delete(f"/runway/v1/tasks/{ids[2]}", headers=HEADERS).status_code == 204
    assert status(client, ids[2]) | {"createdAt": None} == {
        "id": ids[2],
        "createdAt": None,
        "status": "CANCELLED",
        "cost": {"credits": 0},
    }


@pytest.mark.parametrize(
    ("path", "overrides", "field"),
    [
        ("text_to_video", {"model": "gen4_aleph"}, "model"),
        ("text_to_video", {"model": "gen3a_turbo"}, "model"),
        ("text_to_video", {"model": "gen4_turbo"}, "model"),  # image_to_video only
        ("text_to_video", {"ratio": "960:960"}, "ratio"),
        ("text_to_video", {"ratio": "1920:1080"}, "ratio"),
        ("text_to_video", {"duration": 11}, "duration"),
        ("text_to_video", {"model": "veo3.1", "duration": 5}, "duration"),
        ("image_to_video", {"ratio": "1:1"}, "ratio"),
    ],
)
def test_refuses_models_ratios_and_durations_runway_does_not_serve(
    client: TestClient, path: str, overrides: dict[str, object], field: str
) -> None:
    body = {**BODY, "promptImage": "https://img.example/a.png", **overrides}
    resp = client.post(f"/runway/v1/{path}", headers=HEADERS, json=body)
    assert resp.status_code == 400
    assert resp.json()["error"].startswith(f"{field}:")


def test_accepts_what_the_sdk_types_allow(client: TestClient) -> None:
    for path, overrides in (
        ("text_to_video", {"model": "veo3.1_fast", "ratio": "1920:1080", "duration": 8}),
        ("image_to_video", {"model": "gen4_turbo", "ratio": "960:960", "duration": 10}),
    ):
        body = {**BODY, "promptImage": "https://img.example/a.png", **overrides}
        resp = client.post(f"/runway/v1/{path}", headers=HEADERS, json=body)
        assert resp.status_code == 200, resp.text


def test_output_urls_expire_and_a_fresh_get_signs_new_ones(
    client: TestClient, clock: FakeClock
) -> None:
    task_id = create(client)
    clock.advance(6)
    old_url = status(client, task_id)["output"][0]
    clock.advance(61)
    assert client.get(old_url).status_code == 403
    fresh = status(client, task_id)["output"][0]
    assert fresh != old_url
    assert client.get(fresh).status_code == 200


@pytest.mark.parametrize(
    ("trigger", "code"),
    [
        ("[fail:moderation_input]", "INPUT_PREPROCESSING.SAFETY.TEXT"),
        ("[fail:moderation_output]", "SAFETY.OUTPUT.VIDEO"),
        ("[fail:internal]", "INTERNAL.BAD_OUTPUT.CODE01"),
    ],
)
def test_failed_tasks_carry_failure_and_failure_code(
    client: TestClient, clock: FakeClock, trigger: str, code: str
) -> None:
    task_id = create(client, promptText=f"{trigger} a fox")
    clock.advance(6)
    failed = status(client, task_id)
    assert failed["status"] == "FAILED"
    assert failed["failureCode"] == code
    assert failed["failure"]


def test_expired_fault_hands_out_already_expired_urls(client: TestClient, clock: FakeClock) -> None:
    task_id = create(client, promptText="[fail:expired] a fox")
    clock.advance(6)
    assert client.get(status(client, task_id)["output"][0]).status_code == 403


def test_invalid_body_is_a_400_with_error(client: TestClient) -> None:
    resp = client.post(
        "/runway/v1/text_to_video", headers=HEADERS, json={"model": "gen4.5", "ratio": "1280:720"}
    )
    assert resp.status_code == 400
    assert "promptText" in resp.json()["error"]
