"""Prove each real server is live with a real round trip (the first part of `make demo`)."""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Awaitable, Callable

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.blobstore import MinioBlobStore
from shared.settings import InfraSettings
from shared.stores import open_job_store


async def kafka(s: InfraSettings) -> str:
    topic = f"proof-{secrets.token_hex(3)}"
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
        producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap_servers, acks="all")
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=s.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await producer.start()
        await consumer.start()
        try:
            await producer.send_and_wait(topic, b"hello from reelforge")
            record = await asyncio.wait_for(consumer.getone(), 15)
        finally:
            await producer.stop()
            await consumer.stop()
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    return f"created topic {topic}, round-tripped {record.value!r}, deleted it"


async def job_store(s: InfraSettings) -> str:
    """Open the job store as a service does (migrations included), then one atomic round trip
    through the outbox table inside a transaction that is rolled back."""
    store = await open_job_store(s, pool_size=2)
    try:
        if store.pool is None:
            hello = await store.mongo.admin.command("hello")
            return f"{store.kind}: wire version {hello.get('maxWireVersion')}"
        async with store.pool.acquire() as conn:
            version = await conn.fetchval("SHOW server_version")
            migrations = await conn.fetchval("SELECT max(version) FROM schema_migrations")
            tx = conn.transaction()
            await tx.start()
            event_id = secrets.token_hex(6)
            await conn.execute(
                "INSERT INTO outbox (event_id, topic, key, payload) VALUES ($1, 'proof', 'k', '')",
                event_id,
            )
            back = await conn.fetchval("SELECT event_id FROM outbox WHERE event_id = $1", event_id)
            await tx.rollback()
    finally:
        await store.close()
    return f"PostgreSQL {version}, schema at migration {migrations}, wrote and read back {back}"


async def minio(s: InfraSettings) -> str:
    store = MinioBlobStore.from_settings(s)
    await store.ensure_bucket()
    key = f"proof/{secrets.token_hex(4)}.txt"
    await store.put_bytes(key, b"hello from reelforge", "text/plain")
    url = await store.presigned_get(key, 60)
    async with httpx.AsyncClient() as client:
        fetched = (await client.get(url)).content
    await store.delete(key)
    return f"put {key} and fetched {fetched!r} through a presigned URL"


async def prometheus(s: InfraSettings) -> str:
    async with httpx.AsyncClient(timeout=10, base_url=s.prometheus_url) as client:
        ready = (await client.get("/-/ready")).status_code
        answer = (await client.get("/api/v1/query", params={"query": "up"})).json()
    return f"ready ({ready}), `up` query answered with {len(answer['data']['result'])} series"


async def main() -> int:
    settings = InfraSettings()
    checks: list[tuple[str, Callable[[InfraSettings], Awaitable[str]]]] = [
        ("kafka", kafka),
        ("job store", job_store),
        ("minio", minio),
        ("prometheus", prometheus),
    ]
    failed = 0
    for name, check in checks:
        started = time.perf_counter()
        try:
            detail = await asyncio.wait_for(check(settings), 30)
            print(f"  {name:<10} live: {detail} ({(time.perf_counter() - started) * 1000:.0f} ms)")
        except Exception as exc:  # a proof reports every failure, then the demo stops
            failed += 1
            print(f"  {name:<10} FAILED: {type(exc).__name__}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    print("live proof of each server:")
    sys.exit(asyncio.run(main()))
