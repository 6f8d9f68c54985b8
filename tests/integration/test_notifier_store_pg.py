"""`PgDeliveryStore` on a real PostgreSQL server (a throwaway database on JOB_STORE_URI's
server, migrated): the DeliveryStore contract that the fake and `MongoDeliveryStore` meet,
and the guarantees across replicas that only a real server can show (concurrent claimers
never share a delivery; a lease records one attempt)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from services.notifier.pg_store import PgDeliveryStore
from services.notifier.store import AttemptLog, DeliveryState, DeliveryStore
from shared.jobs import now
from shared.pg import Pool
from tests.unit.test_notifier_store import CONTRACT, make_delivery

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(pg_pool: Pool) -> Pool:
    """The session's migrated database (tests/conftest.py), this store's table emptied."""
    await pg_pool.execute("TRUNCATE deliveries")
    return pg_pool


@pytest.fixture
def store(pool: Pool) -> PgDeliveryStore:
    return PgDeliveryStore(pool)


@pytest.mark.parametrize("check", CONTRACT, ids=lambda check: check.__name__)
async def test_pg_delivery_store_meets_the_contract(
    pool: Pool, check: Callable[[DeliveryStore], Awaitable[None]]
) -> None:
    store = PgDeliveryStore(pool)
    await store.ensure_indexes()
    await check(store)


async def test_concurrent_claims_never_share_a_delivery(store: PgDeliveryStore) -> None:
    at = now()
    deliveries = [make_delivery(at=at - timedelta(seconds=n)) for n in range(60)]
    for delivery in deliveries:
        assert await store.insert(delivery)
    claims = await asyncio.gather(*(store.claim_due(at, lease_s=60, limit=15) for _ in range(6)))
    claimed = [d for batch in claims for d in batch]
    ids = [d.id for d in claimed]
    assert len(ids) == len(set(ids)), "a delivery was claimed twice"
    # Whatever was skipped while locked is still due; nothing is lost.
    rest = await store.claim_due(at, lease_s=60, limit=100)
    assert sorted(ids + [d.id for d in rest]) == sorted(d.id for d in deliveries)
    leases = [d.lease for d in claimed + rest]
    assert None not in leases
    assert len(set(leases)) == len(leases), "lease tokens must be distinct per delivery"
    for batch in claims:  # each batch is oldest-due first
        due = [next(x for x in deliveries if x.id == d.id).next_attempt_at for d in batch]
        assert due == sorted(due)
    # Every claimant holds the lease of what it got: every attempt can be recorded, once.
    entry = AttemptLog(at=at, status_code=200, duration_ms=1.0)
    for d in claimed + rest:
        assert await store.finish_attempt(d.id, d.lease or "", entry, DeliveryState.DELIVERED)
    assert await store.count_pending() == 0


async def test_claims_under_contention_hand_out_each_delivery_once(store: PgDeliveryStore) -> None:
    """Many rounds of many small claimers racing over a few due rows."""
    at = now()
    for _ in range(10):
        fresh = [make_delivery(at=at) for _ in range(5)]
        for delivery in fresh:
            await store.insert(delivery)
        claims = await asyncio.gather(*(store.claim_due(at, lease_s=60, limit=2) for _ in range(8)))
        ids = [d.id for batch in claims for d in batch]
        assert len(ids) == len(set(ids))
        assert set(ids) <= {d.id for d in fresh}
        entry = AttemptLog(at=at, status_code=200, duration_ms=1.0)
        for batch in claims:
            for d in batch:
                await store.finish_attempt(d.id, d.lease or "", entry, DeliveryState.DELIVERED)
        await store.claim_due(at, lease_s=60, limit=100)  # leftovers leave the due set


async def test_a_lease_records_exactly_one_attempt(store: PgDeliveryStore) -> None:
    at = now()
    delivery = make_delivery(at=at)
    await store.insert(delivery)
    [claimed] = await store.claim_due(at, lease_s=60, limit=1)
    entries = [AttemptLog(at=at, status_code=500 + n, duration_ms=float(n)) for n in range(8)]
    results = await asyncio.gather(
        *(
            store.finish_attempt(
                delivery.id,
                claimed.lease or "",
                entry,
                DeliveryState.PENDING,
                at + timedelta(seconds=5),
                f"HTTP {entry.status_code}",
            )
            for entry in entries
        )
    )
    assert results.count(True) == 1
    stored = await store.get(delivery.id)
    assert stored is not None
    assert stored.attempts == 1
    assert len(stored.log) == 1
    winner = entries[results.index(True)]
    assert stored.log[0] == winner
    assert stored.reason == f"HTTP {winner.status_code}"
    assert stored.lease is None


async def test_finish_attempt_keeps_the_log_in_order_and_marks_delivery(
    store: PgDeliveryStore,
) -> None:
    at = now()
    delivery = make_delivery(at=at)
    await store.insert(delivery)
    for n in range(3):
        [claimed] = await store.claim_due(at + timedelta(seconds=10 * n), lease_s=1, limit=1)
        state = DeliveryState.DELIVERED if n == 2 else DeliveryState.PENDING
        entry = AttemptLog(
            at=at + timedelta(seconds=10 * n),
            status_code=500 if n < 2 else 200,
            error="boom" if n < 2 else None,
            duration_ms=2.5,
        )
        assert await store.finish_attempt(
            delivery.id,
            claimed.lease or "",
            entry,
            state,
            at + timedelta(seconds=10 * (n + 1)) if n < 2 else None,
        )
    stored = await store.get(delivery.id)
    assert stored is not None
    assert stored.state is DeliveryState.DELIVERED
    assert stored.attempts == 3
    assert [(e.status_code, e.error) for e in stored.log] == [
        (500, "boom"),
        (500, "boom"),
        (200, None),
    ]
    assert stored.delivered_at == at + timedelta(seconds=20)
    assert stored.reason is None
    assert await store.count_pending() == 0
    assert await store.claim_due(at + timedelta(days=1), lease_s=60, limit=10) == []
