"""on_job_outcome on the fakes, the settings, and the delivery log / replay API."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.notifier.app import Deps, create_app
from services.notifier.handlers import NotifierContext, on_job_outcome
from services.notifier.settings import NotifierSettings
from services.notifier.store import AttemptLog, DeliveryState
from shared.events import Envelope, JobCompleted, JobFailed, JobUpdated
from shared.jobs import JobState, StoredVideo, now
from shared.messaging import PermanentError
from shared.metrics import ServiceMetrics
from shared.providers.base import Failure
from shared.providers.errors import FailureClass
from shared.topics import Topic
from tests.fakes import FakeJobRepository
from tests.unit.test_notifier_store import FakeDeliveryStore, make_delivery
from tests.unit.test_storage_fakes import make_job

VIDEO = StoredVideo(bucket="b", object_key="videos/t/j/a1.mp4", sha256="0" * 64, size_bytes=1)


def completed(job_id: str) -> JobCompleted:
    return JobCompleted(
        subject=job_id,
        tenant_id="tenant-a",
        attempt_id="a1",
        provider="openai",
        model="sora-2",
        video=VIDEO,
        cost_usd=0.8,
    )


Sent = list[tuple[Topic, Envelope]]


async def make_ctx(callback_url: str | None) -> tuple[NotifierContext, Sent, str]:
    repo, store = FakeJobRepository(), FakeDeliveryStore()
    job = make_job(state=JobState.COMPLETED, callback_url=callback_url)
    await repo.create(job)
    sent: list[tuple[Topic, Envelope]] = []

    async def publish(topic: Topic, event: Envelope) -> None:
        sent.append((topic, event))

    ctx = NotifierContext(
        repo=repo,
        store=store,
        publish=publish,
        metrics=ServiceMetrics(CollectorRegistry(), "notifier"),
    )
    return ctx, sent, job.job_id


async def test_outcome_with_a_callback_queues_one_delivery_even_when_redelivered() -> None:
    ctx, sent, job_id = await make_ctx("https://hooks.example/reelforge")
    event = completed(job_id)

    await on_job_outcome(ctx, event)
    await on_job_outcome(ctx, event)

    [delivery] = await ctx.store.list_for_job(job_id)
    assert delivery.id == f"{job_id}:reelforge.job.completed"
    assert delivery.state is DeliveryState.PENDING
    assert delivery.url == "https://hooks.example/reelforge"
    assert JobCompleted.model_validate_json(delivery.body) == event
    assert delivery.event_id == event.id
    updates = [e for t, e in sent if t is Topic.JOB_UPDATES]
    assert all(isinstance(u, JobUpdated) and u.state is JobState.COMPLETED for u in updates)


async def test_failed_job_without_callback_only_updates_the_live_stream() -> None:
    ctx, sent, job_id = await make_ctx(None)
    failure = Failure(failure_class=FailureClass.MODERATION_INPUT, message="refused")

    await on_job_outcome(ctx, JobFailed(subject=job_id, tenant_id="tenant-a", failure=failure))

    assert await ctx.store.list_for_job(job_id) == []
    [(topic, update)] = sent
    assert topic is Topic.JOB_UPDATES
    assert isinstance(update, JobUpdated)
    assert update.state is JobState.FAILED


async def test_outcome_of_an_unknown_job_is_permanent() -> None:
    ctx, _, _ = await make_ctx(None)
    with pytest.raises(PermanentError):
        await on_job_outcome(ctx, completed("job_missing"))


def test_notifier_settings_prefix_and_plain_master_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_MASTER_SECRET", "m-secret")
    monkeypatch.setenv("MONGODB_URI", "mongodb://db.example:27017/")
    monkeypatch.setenv("NOTIFIER_ADMIN_TOKEN", "adm")
    monkeypatch.setenv("NOTIFIER_RETRY_SCHEDULE_S", "[0.1, 0.2]")
    settings = NotifierSettings()
    assert settings.webhook_master_secret.get_secret_value() == "m-secret"
    assert settings.mongodb_uri == "mongodb://db.example:27017/"
    assert settings.admin_token.get_secret_value() == "adm"
    assert settings.retry_schedule_s == (0.1, 0.2)
    assert settings.service_name == "notifier"


async def api_client(store: FakeDeliveryStore, token: str) -> httpx.AsyncClient:
    settings = NotifierSettings().model_copy(update={"admin_token": SecretStr(token)})
    process = await create_app(settings, Deps(repo=FakeJobRepository(), store=store))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=process.http), base_url="http://t")


async def test_delivery_log_and_replay_need_the_admin_token() -> None:
    store = FakeDeliveryStore()
    delivery = make_delivery()
    await store.insert(delivery)
    [claimed] = await store.claim_due(delivery.next_attempt_at, 60, 1)
    entry = AttemptLog(at=now(), status_code=410, duration_ms=1.0)
    await store.finish_attempt(
        delivery.id, claimed.lease or "", entry, DeliveryState.DEAD, reason="gone"
    )
    auth = {"authorization": "Bearer adm"}
    async with await api_client(store, "adm") as client:
        query = {"job_id": delivery.job_id}
        assert (await client.get("/v1/deliveries", params=query)).status_code == 401
        listed = await client.get("/v1/deliveries", params=query, headers=auth)
        assert [d["state"] for d in listed.json()] == ["dead"]
        replayed = await client.post(f"/v1/deliveries/{delivery.id}/replay", headers=auth)
        assert replayed.status_code == 200
        assert replayed.json()["state"] == "pending"
        again = await client.post(f"/v1/deliveries/{delivery.id}/replay", headers=auth)
        assert again.status_code == 409
        missing = await client.post("/v1/deliveries/nope/replay", headers=auth)
        assert missing.status_code == 404
    assert store.docs[delivery.id].state is DeliveryState.PENDING


async def test_admin_api_is_disabled_without_a_token() -> None:
    async with await api_client(FakeDeliveryStore(), "") as client:
        response = await client.get(
            "/v1/deliveries", params={"job_id": "x"}, headers={"authorization": "Bearer "}
        )
        assert response.status_code == 403
