"""Storage settings, wiring through TestKafkaBroker, and retention on the fakes."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta

import pytest
from faststream.kafka import KafkaMessage, TestKafkaBroker

from services.storage import logic
from services.storage.app import Deps, create_app
from services.storage.retention import Retention
from services.storage.settings import StorageSettings
from shared.events import JOB_OUTCOME, JobCompleted
from shared.jobs import JobState, now
from shared.topics import Topic
from tests.fakes import FakeBlobStore, FakeJobRepository, FakeOutboxRelay
from tests.unit.test_media import make_mp4
from tests.unit.test_storage_fakes import FakeProvider, make_job, probe_fake_blob, succeeded


def test_infra_settings_keep_their_plain_names_and_storage_knobs_their_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.example/v1")
    monkeypatch.setenv("STORAGE_RETENTION_DAYS", "7")
    monkeypatch.setenv("RETENTION_BATCH", "3")  # unprefixed: not ours, ignored
    monkeypatch.setenv("STORAGE_METRICS_PORT", "9101")

    settings = StorageSettings()

    assert settings.kafka_bootstrap_servers == "kafka.example:9092"
    assert settings.metrics_port == 9101
    assert settings.provider_settings.openai_base_url == "https://api.openai.example/v1"
    assert settings.retention_days == 7
    assert settings.retention_batch == 500
    assert settings.service_name == "storage"


async def test_a_task_succeeded_message_completes_the_job_through_the_broker() -> None:
    repo, blob = FakeJobRepository(), FakeBlobStore()
    job = make_job()
    await repo.create(job)
    buffer = io.BytesIO()
    make_mp4(buffer)
    deps = Deps(
        repo=repo,
        blob=blob,
        providers={"openai": FakeProvider(data=buffer.getvalue())},
        probe=probe_fake_blob,
    )
    process = await create_app(StorageSettings(), deps)
    assert process.broker is not None
    finished: list[JobCompleted] = []

    @process.broker.subscriber(Topic.JOBS_FINISHED.value, group_id="test-observer")
    async def observe(msg: KafkaMessage) -> None:
        event = JOB_OUTCOME.validate_json(msg.body)
        assert isinstance(event, JobCompleted)
        finished.append(event)

    async with TestKafkaBroker(process.broker) as broker:
        await broker.publish(
            succeeded(job).model_dump_json().encode(),
            Topic.TASKS_SUCCEEDED.value,
            key=job.job_id.encode(),
        )
        relay = FakeOutboxRelay(repo, broker)  # the outbox relay's part
        for _ in range(100):
            await relay.run_once()
            if finished:
                break
            await asyncio.sleep(0.02)

    done = await repo.get(job.job_id)
    assert done is not None
    assert done.state is JobState.COMPLETED
    assert [e.subject for e in finished] == [job.job_id]


async def test_retention_deletes_old_objects_and_marks_the_job() -> None:
    repo, blob = FakeJobRepository(), FakeBlobStore()
    job = make_job(state=JobState.COMPLETED).model_copy(update={"picked_attempt": "a1"})
    await repo.create(job)
    keys = logic.object_keys(job.tenant_id, job.job_id, "a1")
    await blob.put_bytes(keys.video, b"video", "video/mp4")
    await blob.put_bytes(keys.thumbnail, b"jpeg", "image/jpeg")
    await blob.put_bytes("elsewhere/keep.bin", b"x", "application/octet-stream")
    later = now() + timedelta(days=2)
    retention = Retention(repo, blob, timedelta(days=1), clock=lambda: later)

    assert await retention.run_once() == 2

    assert list(blob.objects) == ["elsewhere/keep.bin"]
    assert repo.docs[job.job_id]["result_deleted_at"] == later


async def test_retention_keeps_recent_objects_and_respects_the_batch() -> None:
    repo, blob = FakeJobRepository(), FakeBlobStore()
    for i in range(5):
        await blob.put_bytes(f"videos/t/job_{i}/a1.mp4", b"v", "video/mp4")
    assert await Retention(repo, blob, timedelta(days=1)).run_once() == 0
    later = now() + timedelta(days=2)
    retention = Retention(repo, blob, timedelta(days=1), batch=3, clock=lambda: later)
    assert await retention.run_once() == 3
    assert len(blob.objects) == 2


async def test_retention_loop_stops_when_cancelled() -> None:
    retention = Retention(FakeJobRepository(), FakeBlobStore(), timedelta(days=1), interval_s=60)
    task = asyncio.create_task(retention.loop())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
