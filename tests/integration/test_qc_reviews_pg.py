"""The ReviewStore contract (`tests/unit/test_qc_review_store.py`) on the real servers:
`PgReviewStore` on a throwaway PostgreSQL database (JOB_STORE_URI's server, migrated) and
`MongoReviewStore` on the MongoDB-compatible server; plus, on PostgreSQL, the races only a
real server shows (concurrent deciders: one winner; concurrent refiners: one refinement)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.qc.adapters import MongoReviewStore
from services.qc.pg_reviews import PgReviewStore
from services.qc.reviews import Refinement, ReviewStatus, ReviewStore
from shared.pg import Pool
from shared.settings import InfraSettings
from tests.conftest import random_id
from tests.unit.test_qc_review_store import REVIEW_CONTRACT, make_review

pytestmark = pytest.mark.integration
Check = Callable[[ReviewStore], Awaitable[None]]


@pytest.fixture
async def pool(pg_pool: Pool) -> Pool:
    """The session's migrated database (tests/conftest.py), this store's table emptied."""
    await pg_pool.execute("TRUNCATE reviews")
    return pg_pool


@pytest.fixture
def store(pool: Pool) -> PgReviewStore:
    return PgReviewStore(pool)


@pytest.mark.parametrize("check", REVIEW_CONTRACT, ids=lambda check: check.__name__)
async def test_pg_review_store_meets_the_contract(store: PgReviewStore, check: Check) -> None:
    await store.ensure_indexes()
    await check(store)


@pytest.mark.parametrize("check", REVIEW_CONTRACT, ids=lambda check: check.__name__)
async def test_mongo_review_store_meets_the_contract(infra: InfraSettings, check: Check) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        infra.mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    database = random_id("reelforge_qc_contract").replace("-", "_")
    try:
        store = MongoReviewStore.from_client(client, database)
        await store.ensure_indexes()
        await check(store)
    finally:
        await client.drop_database(database)
        await client.close()


async def test_concurrent_decisions_have_exactly_one_winner(store: PgReviewStore) -> None:
    for _ in range(10):
        review = make_review()
        await store.add(review)
        verdicts = [ReviewStatus.APPROVED, ReviewStatus.REJECTED] * 4
        results = await asyncio.gather(
            *(
                store.decide(review.review_id, review.tenant_id, status, f"reviewer {n}")
                for n, status in enumerate(verdicts)
            )
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        stored = await store.get(review.review_id, review.tenant_id)
        assert stored is not None
        assert (stored.status, stored.feedback, stored.decided_at) == (
            winners[0].status,
            winners[0].feedback,
            winners[0].decided_at,
        )


async def test_concurrent_refinements_record_one(store: PgReviewStore) -> None:
    review = make_review()
    await store.add(review)
    attempts = [Refinement(request_key=f"refine-{n}") for n in range(8)]
    results = await asyncio.gather(*(store.set_refinement(review.review_id, r) for r in attempts))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    stored = await store.get(review.review_id, review.tenant_id)
    assert stored is not None
    assert stored.refinement == winners[0].refinement


async def test_concurrent_adds_of_one_pick_insert_once(store: PgReviewStore) -> None:
    review = make_review()
    results = await asyncio.gather(*(store.add(review) for _ in range(8)))
    assert results.count(True) == 1
    assert [r.review_id for r in await store.list_for_job(review.job_id, review.tenant_id)] == [
        review.review_id
    ]
