"""Shared fixtures. Integration fixtures connect to the real servers that
`python -m deploy.localinfra run -- ...` (what `make test` uses) started, or to the ones
named by KAFKA_BOOTSTRAP_SERVERS / MONGODB_URI / S3_ENDPOINT."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from pymongo import AsyncMongoClient

from shared.blobstore import MinioBlobStore
from shared.mongo_repository import MongoJobRepository
from shared.pg import Pool, connect_pool
from shared.pg_repository import PgJobRepository
from shared.settings import InfraSettings
from tests.pg_fixtures import migrated_database


def random_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def infra() -> InfraSettings:
    return InfraSettings()


@pytest.fixture
async def mongo_repo(infra: InfraSettings) -> AsyncIterator[MongoJobRepository]:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        infra.mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    database = random_id("reelforge_test").replace("-", "_")
    repo = MongoJobRepository.from_client(client, database)  # type: ignore[arg-type]
    await repo.ensure_indexes()
    yield repo
    await client.drop_database(database)
    await client.close()


@pytest.fixture(scope="session")
async def pg_database(infra: InfraSettings) -> AsyncIterator[str]:
    """A throwaway database on the job store's PostgreSQL server, migrated, for this session."""
    uri, drop = await migrated_database(infra.job_store_uri)
    yield uri
    await drop()


@pytest.fixture
async def pg_pool(pg_database: str) -> AsyncIterator[Pool]:
    pool = await connect_pool(pg_database, min_size=1, max_size=12)
    yield pool
    await pool.close()


@pytest.fixture
async def pg_repo(pg_pool: Pool) -> PgJobRepository:
    return PgJobRepository(pg_pool)


@pytest.fixture
async def minio_store(infra: InfraSettings) -> AsyncIterator[MinioBlobStore]:
    settings = infra.model_copy(update={"s3_bucket": random_id("reelforge-test")})
    store = MinioBlobStore.from_settings(settings)
    await store.ensure_bucket()
    yield store
    for info in await store.list_older_than("", _far_future()):
        await store.delete(info.key)
    store._client.remove_bucket(store.bucket)


def _far_future():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime(2999, 1, 1, tzinfo=UTC)
