"""An outage of the job store or the object store never dead-letters the message being handled.

Each test runs a real consumer group on a throwaway topic of the shared Kafka broker whose
handler needs a PRIVATE server (started with the launcher's code on free ports,
`deploy.localinfra.private`): the shared servers are never stopped. The server is stopped,
a message arrives, the handler fails with the driver's own errors well past
`max_redeliveries`, the server comes back, and the message is handled and nothing is in the
DLQ.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream import AckPolicy
from faststream.kafka import KafkaBroker

from deploy.localinfra.errors import InfraError
from deploy.localinfra.private import PrivateServer, private
from shared.blobstore import MinioBlobStore
from shared.events import JobAccepted
from shared.jobs import Job, JobRequest, new_job_id
from shared.messaging import RetryPolicy, consume, publish
from shared.pg import connect_pool, migrate
from shared.pg_repository import PgJobRepository
from shared.settings import InfraSettings
from shared.topics import Topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
MAX_REDELIVERIES = 2
# Failures seen while the server is down before it is started again: well past the point
# where a poison message would have been dead-lettered.
FAILURES_BEFORE_RESTART = 4 * (MAX_REDELIVERIES + 1)


async def short_sleep(delay: float) -> None:
    await asyncio.sleep(min(delay, 0.05))  # the policy's backoff, shortened for the test


async def until(predicate: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


class Handler:
    """Counts failures by error type; `work` is what the message needs from the server."""

    def __init__(self, work: Callable[[str], Awaitable[None]]) -> None:
        self.work = work
        self.errors: list[str] = []
        self.done: list[str] = []

    async def handle(self, event: JobAccepted) -> None:
        try:
            await self.work(event.subject)
        except Exception as exc:
            self.errors.append(type(exc).__name__)
            raise
        self.done.append(event.subject)


@pytest.fixture
async def topic() -> AsyncIterator[str]:
    bootstrap = InfraSettings().kafka_bootstrap_servers
    name = f"outage-{secrets.token_hex(4)}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(name, 1, 1), NewTopic(f"{name}-dlq", 1, 1)])
    yield name
    await admin.delete_topics([name, f"{name}-dlq"])
    await admin.close()


async def dlq_size(topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=InfraSettings().kafka_bootstrap_servers)
    await consumer.start()
    try:
        part = TopicPartition(f"{topic}-dlq", 0)
        return int((await consumer.end_offsets([part]))[part])
    finally:
        await consumer.stop()


async def run_outage(topic: str, server: PrivateServer, handler: Handler) -> None:
    broker = KafkaBroker(InfraSettings().kafka_bootstrap_servers)
    consume(
        broker,
        Topic.JOBS_ACCEPTED,
        group_id=f"outage-{secrets.token_hex(4)}",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decode=JobAccepted.model_validate_json,
        handle=handler.handle,
        retry=RetryPolicy(attempts=2, sleep=short_sleep),
        max_redeliveries=MAX_REDELIVERIES,
        name=topic,
    )
    await broker.start()
    try:
        await asyncio.to_thread(server.stop)
        await publish(broker, topic, JobAccepted(subject="job_during_outage", tenant_id="t"))
        await until(lambda: len(handler.errors) >= FAILURES_BEFORE_RESTART)
        await asyncio.to_thread(server.start)
        await until(lambda: handler.done == ["job_during_outage"])
    finally:
        await broker.stop()
    assert await dlq_size(topic) == 0, f"dead-lettered during an outage ({handler.errors[:3]})"


def started(name: str, root: Path) -> Any:
    try:
        return private(name, root)
    except InfraError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"no private {name}: {exc}")


async def test_a_job_store_outage_does_not_dead_letter(topic: str, tmp_path: Path) -> None:
    with started("postgres", tmp_path / "pg") as server:
        pool = await connect_pool(server.address, min_size=1, max_size=2, timeout_s=5)
        await migrate(pool)
        repo = PgJobRepository(pool)
        request = JobRequest(prompt="a store outage")
        job = Job(job_id=new_job_id(), tenant_id="t", request=request)
        await repo.create(job)

        async def read_the_job(_: str) -> None:
            assert await repo.get(job.job_id) is not None

        handler = Handler(read_the_job)
        try:
            await run_outage(topic, server, handler)
        finally:
            await pool.close()
    assert handler.errors, "the handler never saw the outage"


async def test_an_object_store_outage_does_not_dead_letter(topic: str, tmp_path: Path) -> None:
    with started("minio", tmp_path / "minio") as server:
        settings = InfraSettings(s3_endpoint=server.address, connect_timeout_s=2)
        blobs = MinioBlobStore.from_settings(settings)
        await blobs.ensure_bucket()

        async def store_a_blob(key: str) -> None:
            await blobs.put_bytes(f"outage/{key}", b"video", "video/mp4")

        handler = Handler(store_a_blob)
        await run_outage(topic, server, handler)
        assert await blobs.stat("outage/job_during_outage") is not None
    assert handler.errors, "the handler never saw the outage"
