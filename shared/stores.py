"""Opening the job store a service runs on, chosen by the scheme of `JOB_STORE_URI`:
`postgresql://` (the embedded default) or `mongodb://` / `mongodb+srv://` (production).

Every service gets the same three things from it: the `JobRepository`, a health check, and
the outbox relay loop (on PostgreSQL one process at a time publishes; see `shared.outbox`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from faststream.kafka import KafkaBroker

from shared.errors import ConfigurationError
from shared.outbox import OutboxEvent, PgOutboxRelay
from shared.pg import Pool, connect_pool, migrate, pool_check, redacted
from shared.pg_repository import PgJobRepository
from shared.repository import JobRepository
from shared.runtime import (
    BackgroundLoop,
    HealthCheck,
    ServiceProcess,
    connect_mongo,
    mongo_check,
)
from shared.settings import InfraSettings

log = logging.getLogger(__name__)
POSTGRES_SCHEMES = ("postgresql", "postgres")
MONGO_SCHEMES = ("mongodb", "mongodb+srv")


@dataclass
class JobStore:
    kind: str
    repo: JobRepository
    check: HealthCheck
    close: Callable[[], Awaitable[None]]
    pool: Pool | None = None
    mongo: Any = None  # AsyncMongoClient when kind == "mongodb"
    database: str | None = None
    _relay: Any = None

    def relay_loop(self, broker: KafkaBroker) -> BackgroundLoop:
        """The background loop that publishes this store's outbox through `broker`."""

        async def send(event: OutboxEvent) -> None:
            await broker.publish(
                event.payload, event.topic, key=event.key.encode(), headers=event.headers
            )

        if self.pool is not None:
            self._relay = PgOutboxRelay(self.pool, send)
        else:
            from shared.mongo_outbox import MongoOutboxRelay

            assert self.mongo is not None and self.database is not None
            self._relay = MongoOutboxRelay(self.mongo[self.database]["jobs"], send)

        async def outbox_relay() -> None:
            await self._relay.run()

        return outbox_relay


def store_kind(uri: str) -> str:
    scheme = urlsplit(uri).scheme
    if scheme in POSTGRES_SCHEMES:
        return "postgresql"
    if scheme in MONGO_SCHEMES:
        return "mongodb"
    raise ConfigurationError(
        "JOB_STORE_URI",
        f"unknown scheme in {redacted(uri)!r}: use postgresql:// (default) or mongodb://",
    )


async def open_job_store(settings: InfraSettings, *, pool_size: int = 10) -> JobStore:
    uri = settings.job_store_uri
    if store_kind(uri) == "postgresql":
        pool = await connect_pool(uri, timeout_s=settings.connect_timeout_s, max_size=pool_size)
        try:
            await migrate(pool)
        except Exception:
            await pool.close()
            raise

        async def close_pool() -> None:
            await asyncio.wait_for(pool.close(), 10)

        return JobStore("postgresql", PgJobRepository(pool), pool_check(pool), close_pool, pool)
    from shared.mongo_repository import MongoJobRepository, check_atomic_server

    client = await connect_mongo(settings, uri, setting="JOB_STORE_URI")
    try:
        await check_atomic_server(client, settings.allow_non_atomic_store)
        repo = MongoJobRepository.from_client(client, settings.mongodb_database)
        await repo.ensure_indexes()
    except Exception:
        await client.close()
        raise
    return JobStore(
        "mongodb",
        repo,
        mongo_check(client),
        client.close,
        mongo=client,
        database=settings.mongodb_database,
    )


def attach(store: JobStore, process: ServiceProcess) -> None:
    """Give a `ServiceProcess` the store's health check, its outbox relay and its close."""
    process.checks[store.kind] = store.check
    if process.broker is not None:
        process.loops.append(store.relay_loop(process.broker))
    process.on_stop.append(store.close)
