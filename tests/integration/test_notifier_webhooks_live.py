"""Notifier on the real servers: the delivery store contract on the MongoDB-compatible
server, and a webhook delivered to a local receiver that verifies it with `shared.webhooks`,
retried after a 500, and dead-lettered onto the real Kafka DLQ when the schedule runs out."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from services.notifier.adapters import MongoDeliveryStore
from services.notifier.app import Deps, create_app
from services.notifier.handlers import NotifierContext, on_job_outcome
from services.notifier.pg_store import PgDeliveryStore
from services.notifier.settings import NotifierSettings
from services.notifier.store import DeliveryState
from shared import webhooks
from shared.events import Envelope
from shared.jobs import JobState
from shared.messaging import publish
from shared.metrics import ServiceMetrics
from shared.pg import Pool
from shared.pg_repository import PgJobRepository
from shared.settings import InfraSettings
from shared.tenants import webhook_secret_for
from shared.topics import Topic
from tests.conftest import random_id
from tests.unit.test_notifier_app import completed
from tests.unit.test_notifier_store import CONTRACT
from tests.unit.test_storage_fakes import make_job

pytestmark = pytest.mark.integration
MASTER = "integration-master"


@pytest.fixture
async def mongo_store(infra: InfraSettings) -> Any:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    database = client[random_id("reelforge_notifier").replace("-", "_")]

    def fresh() -> MongoDeliveryStore:
        return MongoDeliveryStore(database[random_id("deliveries")])

    yield fresh
    await client.drop_database(database.name)
    await client.close()


async def test_mongo_delivery_store_meets_the_contract(mongo_store: Any) -> None:
    for check in CONTRACT:
        store = mongo_store()
        await store.ensure_indexes()
        await check(store)


class Receiver:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses, self.verified, self.rejected = statuses, [], []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                try:
                    secret = webhook_secret_for("tenant-a", MASTER)
                    webhooks.verify(secret, body, dict(self.headers))
                    receiver.verified.append(json.loads(body))
                except webhooks.WebhookVerificationError as exc:
                    receiver.rejected.append(str(exc))
                statuses = receiver.statuses
                status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    made: list[Receiver] = []

    def make(statuses: list[int]) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


async def _run_until(predicate: Any, loop_fn: Any, limit_s: float = 20.0) -> None:
    """Run the delivery loop until `predicate` holds (polled: the state is in the database)."""
    task = asyncio.create_task(loop_fn())
    try:
        async with asyncio.timeout(limit_s):
            while not await predicate():  # noqa: ASYNC110 - polling a database, not an event
                await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_webhook_is_verified_retried_after_a_500_and_dead_lettered_when_exhausted(
    pg_repo: PgJobRepository, pg_pool: Pool, receiver_factory: Any
) -> None:
    settings = NotifierSettings().model_copy(
        update={
            "webhook_master_secret": SecretStr(MASTER),
            "retry_schedule_s": (0.2, 0.2),
            "retry_jitter": 0.0,
            "delivery_poll_s": 0.05,
            "egress_allow": "127.0.0.1/32",  # the receivers run on loopback
        }
    )
    store = PgDeliveryStore(pg_pool)  # the default stores, as the notifier runs them
    process = await create_app(settings, Deps(repo=pg_repo, store=store))
    assert process.broker is not None
    await process.broker.start()
    try:
        flaky = receiver_factory([500, 200])
        ok_job = make_job(state=JobState.COMPLETED, callback_url=flaky.url)
        await pg_repo.create(ok_job)
        dead_receiver = receiver_factory([503])
        dead_job = make_job(state=JobState.COMPLETED, callback_url=dead_receiver.url)
        await pg_repo.create(dead_job)
        broker = process.broker

        async def to_kafka(topic: Topic, event: Envelope) -> None:
            await publish(broker, topic, event)

        ctx = NotifierContext(
            repo=pg_repo,
            store=store,
            publish=to_kafka,
            metrics=ServiceMetrics(CollectorRegistry(), "notifier"),
            allow=settings.egress_networks(),
        )
        for job in (ok_job, dead_job):
            await on_job_outcome(ctx, completed(job.job_id))

        async def settled() -> bool:
            states = [(await store.list_for_job(j.job_id))[0].state for j in (ok_job, dead_job)]
            return states == [DeliveryState.DELIVERED, DeliveryState.DEAD]

        await _run_until(settled, process.loops[0])
    finally:
        await process.broker.stop()

    [ok] = await store.list_for_job(ok_job.job_id)
    assert [e.status_code for e in ok.log] == [500, 200]
    assert len(flaky.verified) == 2
    assert flaky.rejected == []
    assert flaky.verified[0]["subject"] == ok_job.job_id
    [dead] = await store.list_for_job(dead_job.job_id)
    assert dead.attempts == 3
    assert "HTTP 503" in (dead.reason or "")
    record = await _dlq_record_for(settings, dead_job.job_id)
    assert record["error_type"] == "WebhookDeliveryFailed"
    assert json.loads(record["payload"])["subject"] == dead_job.job_id


async def _dlq_record_for(settings: NotifierSettings, job_id: str) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        "jobs-finished-dlq",
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            async for msg in consumer:
                if msg.key == job_id.encode():
                    return json.loads(msg.value)
    finally:
        await consumer.stop()
    raise AssertionError("unreachable")
