"""The intake HTTP API on fakes and faststream's in-memory broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from faststream.kafka import KafkaBroker, TestKafkaBroker
from prometheus_client import CollectorRegistry

from services.intake.api import mount
from services.intake.handlers import IntakeDeps, on_request_job
from services.intake.live import LiveUpdates
from services.intake.settings import IntakeSettings
from services.storage import logic as storage_logic
from services.storage.retention import Retention
from shared.events import JobAccepted, RequestJob
from shared.jobs import JobRequest, JobState, StoredVideo, now
from shared.messaging import PermanentError
from shared.metrics import ServiceMetrics
from shared.providers.base import VideoProvider
from shared.tenants import TenantDirectory
from tests.fakes import FakeBlobStore, FakeJobRepository, FakeWebhookIds

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}
BODY = {"prompt": "a fox in the snow", "duration_s": 5, "policy": "explicit", "provider": "kling"}


class Harness:
    def __init__(
        self,
        settings: IntakeSettings | None = None,
        providers: dict[str, VideoProvider] | None = None,
    ) -> None:
        self.repo = FakeJobRepository()
        self.broker = KafkaBroker("127.0.0.1:1")
        self.accepted: list[JobAccepted] = []
        self.registry = CollectorRegistry()

        @self.broker.subscriber("jobs-accepted", group_id="test", ack_policy="ack")
        async def seen(body: dict[str, Any]) -> None:
            self.accepted.append(JobAccepted.model_validate(body))

        self.deps = IntakeDeps(
            settings=settings or IntakeSettings(),
            repo=self.repo,
            broker=self.broker,
            blobs=FakeBlobStore(),
            metrics=ServiceMetrics(self.registry, "intake"),
            tenants=TenantDirectory("key-a:ta,key-b:tb"),
            providers=providers or {},
            openai_base_url="https://gateway.example/v1",
            webhook_ids=FakeWebhookIds(),
        )
        self.app = FastAPI()
        mount(self.app, self.deps, LiveUpdates())


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    async with TestKafkaBroker(harness.broker):
        yield harness


@pytest.fixture
async def client(h: Harness) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=h.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as c:
        yield c


async def test_creates_a_job_and_its_announcement_in_one_write(
    h: Harness, client: httpx.AsyncClient
) -> None:
    response = await client.post("/v1/jobs", json=BODY, headers=A)
    assert response.status_code == 202
    job = response.json()
    assert job["state"] == "accepted" and job["quote_usd"] > 0
    assert job["route"][0]["provider"] == "kling"
    # The JobAccepted is in the outbox with the job (the relay publishes it), not sent aside.
    assert [e.subject for e in h.repo.announced("jobs-accepted")] == [job["job_id"]]
    again = await client.post("/v1/jobs", json=BODY, headers=A)
    assert again.status_code == 202
    assert len(h.repo.announced("jobs-accepted")) == 2  # no key: a second job
    assert h.registry.get_sample_value("reelforge_jobs_created_total", {"source": "http"}) == 2


async def test_same_idempotency_key_and_body_replays_the_job(
    h: Harness, client: httpx.AsyncClient
) -> None:
    first = await client.post("/v1/jobs", json=BODY, headers={**A, "Idempotency-Key": "k"})
    second = await client.post("/v1/jobs", json=BODY, headers={**A, "Idempotency-Key": "k"})
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["job_id"] == first.json()["job_id"]
    assert len(h.repo.docs) == 1


async def test_same_idempotency_key_with_another_body_is_a_conflict(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/v1/jobs", json=BODY, headers={**A, "Idempotency-Key": "k"})
    other = await client.post(
        "/v1/jobs", json={**BODY, "prompt": "a cat"}, headers={**A, "Idempotency-Key": "k"}
    )
    assert other.status_code == 409
    assert "different request body" in other.json()["detail"]


async def test_requests_no_model_can_serve_are_refused_with_reasons(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/jobs", json={**BODY, "duration_s": 20}, headers=A)
    assert response.status_code == 422
    assert "duration 20s not in [5, 10]" in response.json()["detail"]["refused"]["kling/kling-v2-6"]


async def test_invalid_bodies_and_missing_keys_get_clear_4xx(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/jobs", json=BODY)).status_code == 401
    bad = await client.post("/v1/jobs", json={**BODY, "duration_s": "long"}, headers=A)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "duration_s"]


async def test_a_tenant_cannot_see_or_cancel_another_tenants_job(client: httpx.AsyncClient) -> None:
    job_id = (await client.post("/v1/jobs", json=BODY, headers=A)).json()["job_id"]
    assert (await client.get(f"/v1/jobs/{job_id}", headers=B)).status_code == 404
    assert (await client.post(f"/v1/jobs/{job_id}/cancel", headers=B)).status_code == 404
    assert (await client.get("/v1/jobs", headers=B)).json()["jobs"] == []
    assert (await client.get(f"/v1/jobs/{job_id}", headers=A)).status_code == 200


async def test_cancel_ends_an_active_job_once(client: httpx.AsyncClient) -> None:
    job_id = (await client.post("/v1/jobs", json=BODY, headers=A)).json()["job_id"]
    first = await client.post(f"/v1/jobs/{job_id}/cancel", headers=A)
    assert first.status_code == 200 and first.json()["state"] == "cancelled"
    again = await client.post(f"/v1/jobs/{job_id}/cancel", headers=A)
    assert again.status_code == 409


async def test_lists_jobs_by_state_in_pages(client: httpx.AsyncClient) -> None:
    ids = [(await client.post("/v1/jobs", json=BODY, headers=A)).json()["job_id"] for _ in range(3)]
    await client.post(f"/v1/jobs/{ids[0]}/cancel", headers=A)
    page = (await client.get("/v1/jobs", params={"limit": 2}, headers=A)).json()
    assert len(page["jobs"]) == 2 and page["next_cursor"]
    rest = (
        await client.get("/v1/jobs", params={"limit": 2, "cursor": page["next_cursor"]}, headers=A)
    ).json()
    assert len(rest["jobs"]) == 1
    cancelled = (await client.get("/v1/jobs", params={"state": "cancelled"}, headers=A)).json()
    assert [j["job_id"] for j in cancelled["jobs"]] == [ids[0]]


async def test_video_is_a_redirect_once_stored_and_409_before(client: httpx.AsyncClient) -> None:
    job_id = (await client.post("/v1/jobs", json=BODY, headers=A)).json()["job_id"]
    assert (await client.get(f"/v1/jobs/{job_id}/video", headers=A)).status_code == 409


async def test_video_after_retention_deleted_it_is_410_with_the_reason(
    h: Harness, client: httpx.AsyncClient
) -> None:
    job_id = (await client.post("/v1/jobs", json=BODY, headers=A)).json()["job_id"]
    keys = storage_logic.object_keys("ta", job_id, "a1")
    blobs = h.deps.blobs
    await blobs.put_bytes(keys.video, b"video", "video/mp4")
    await blobs.put_bytes(keys.thumbnail, b"jpeg", "image/jpeg")
    stored = StoredVideo(
        bucket="fake",
        object_key=keys.video,
        sha256="0" * 64,
        size_bytes=5,
        thumbnail_key=keys.thumbnail,
    )
    await h.repo.update(job_id, {"result": stored, "picked_attempt": "a1"})
    assert (await client.get(f"/v1/jobs/{job_id}/video", headers=A)).status_code == 307

    later = now() + timedelta(days=31)
    assert await Retention(h.repo, blobs, timedelta(days=30), clock=lambda: later).run_once() == 2

    for params in ({}, {"thumbnail": "true"}):
        gone = await client.get(f"/v1/jobs/{job_id}/video", params=params, headers=A)
        assert gone.status_code == 410
        assert "deleted by retention" in gone.json()["detail"]


async def test_video_whose_object_vanished_unmarked_is_410_not_a_dead_link(
    h: Harness, client: httpx.AsyncClient
) -> None:
    """Retention deletes, then marks the job: a crash in between leaves the mark unset."""
    job_id = (await client.post("/v1/jobs", json=BODY, headers=A)).json()["job_id"]
    stored = StoredVideo(bucket="fake", object_key="videos/gone.mp4", sha256="0" * 64, size_bytes=5)
    await h.repo.update(job_id, {"result": stored})
    gone = await client.get(f"/v1/jobs/{job_id}/video", headers=A)
    assert gone.status_code == 410
    assert "no longer stored" in gone.json()["detail"]


async def test_kafka_requests_use_the_same_path_and_bad_ones_are_dead_lettered(h: Harness) -> None:
    command = RequestJob(subject="idem-1", tenant_id="ta", request=JobRequest(**BODY))
    await on_request_job(h.deps, command)
    await on_request_job(h.deps, command)  # redelivery: nothing new
    assert len(h.repo.docs) == 1
    assert next(iter(h.repo.docs.values()))["state"] == JobState.ACCEPTED.value
    with pytest.raises(PermanentError, match="unknown tenant"):
        await on_request_job(h.deps, command.model_copy(update={"tenant_id": "nobody"}))
    impossible = RequestJob(
        subject="idem-2", tenant_id="ta", request=JobRequest(**{**BODY, "duration_s": 20})
    )
    with pytest.raises(PermanentError, match="duration 20s"):
        await on_request_job(h.deps, impossible)
