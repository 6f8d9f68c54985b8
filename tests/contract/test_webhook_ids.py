"""The webhook replay guard (`services.intake.adapters.WebhookIds`), one suite run on the fake,
on PostgreSQL (migration 4) and on a MongoDB-compatible server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient

from services.intake.adapters import MongoWebhookIds, PgWebhookIds, WebhookIds
from shared.pg import Pool
from shared.settings import InfraSettings
from tests.conftest import random_id
from tests.fakes import FakeWebhookIds

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEEP = timedelta(minutes=10)


class WebhookIdsContract:
    @pytest.fixture
    def ids(self) -> WebhookIds:
        raise NotImplementedError

    async def test_an_id_is_new_once_within_its_window(self, ids: WebhookIds) -> None:
        wid = random_id("msg")
        assert await ids.remember("openai", wid, T0 + KEEP, T0)
        assert not await ids.remember("openai", wid, T0 + KEEP, T0 + timedelta(minutes=1))

    async def test_ids_are_per_provider(self, ids: WebhookIds) -> None:
        wid = random_id("msg")
        assert await ids.remember("openai", wid, T0 + KEEP, T0)
        assert await ids.remember("gemini", wid, T0 + KEEP, T0)

    async def test_an_expired_id_is_taken_again(self, ids: WebhookIds) -> None:
        wid = random_id("msg")
        assert await ids.remember("openai", wid, T0 + KEEP, T0)
        later = T0 + KEEP + timedelta(seconds=1)
        assert await ids.remember("openai", wid, later + KEEP, later)
        assert not await ids.remember("openai", wid, later + KEEP, later)

    async def test_concurrent_deliveries_of_one_id_have_one_winner(self, ids: WebhookIds) -> None:
        wid = random_id("msg")
        results = await asyncio.gather(
            *(ids.remember("openai", wid, T0 + KEEP, T0) for _ in range(8))
        )
        assert sum(results) == 1


class TestFakeWebhookIds(WebhookIdsContract):
    @pytest.fixture
    def ids(self) -> WebhookIds:
        return FakeWebhookIds()


@pytest.mark.integration
class TestPgWebhookIds(WebhookIdsContract):
    @pytest.fixture
    def ids(self, pg_pool: Pool) -> WebhookIds:
        return PgWebhookIds(pg_pool)


@pytest.mark.integration
class TestMongoWebhookIds(WebhookIdsContract):
    @pytest.fixture
    async def ids(self, infra: InfraSettings) -> AsyncIterator[WebhookIds]:
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            infra.mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=5000
        )
        database = random_id("reelforge_test").replace("-", "_")
        yield MongoWebhookIds(client[database]["webhook_ids"])
        await client.drop_database(database)
        await client.close()
