"""`FakeDeliveryStore` and the DeliveryStore contract suite (run here on the fake; the
integration test runs the same functions on MongoDeliveryStore)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from services.notifier.store import AttemptLog, Delivery, DeliveryState, DeliveryStore
from shared.jobs import now


class FakeDeliveryStore:
    def __init__(self) -> None:
        self.docs: dict[str, Delivery] = {}

    async def insert(self, delivery: Delivery) -> bool:
        if delivery.id in self.docs:
            return False
        self.docs[delivery.id] = delivery
        return True

    async def get(self, delivery_id: str) -> Delivery | None:
        return self.docs.get(delivery_id)

    async def list_for_job(self, job_id: str) -> list[Delivery]:
        return sorted(
            (d for d in self.docs.values() if d.job_id == job_id), key=lambda d: d.created_at
        )

    async def claim_due(self, now: datetime, lease_s: float, limit: int) -> list[Delivery]:
        due = sorted(
            (
                d
                for d in self.docs.values()
                if d.state is DeliveryState.PENDING and d.next_attempt_at <= now
            ),
            key=lambda d: d.next_attempt_at,
        )[:limit]
        claimed = []
        for d in due:
            taken = d.model_copy(
                update={
                    "lease": secrets.token_hex(8),
                    "next_attempt_at": now + timedelta(seconds=lease_s),
                }
            )
            self.docs[d.id] = taken
            claimed.append(taken)
        return claimed

    async def finish_attempt(
        self,
        delivery_id: str,
        lease: str,
        entry: AttemptLog,
        state: DeliveryState,
        next_attempt_at: datetime | None = None,
        reason: str | None = None,
    ) -> bool:
        d = self.docs.get(delivery_id)
        if d is None or d.lease != lease:
            return False
        update: dict[str, object] = {
            "state": state,
            "lease": None,
            "reason": reason,
            "attempts": d.attempts + 1,
            "log": [*d.log, entry],
        }
        if next_attempt_at is not None:
            update["next_attempt_at"] = next_attempt_at
        if state is DeliveryState.DELIVERED:
            update["delivered_at"] = entry.at
        self.docs[delivery_id] = d.model_copy(update=update)
        return True

    async def replay(self, delivery_id: str, now: datetime) -> Delivery | None:
        d = self.docs.get(delivery_id)
        if d is None or d.state is DeliveryState.PENDING:
            return None
        self.docs[delivery_id] = d.model_copy(
            update={
                "state": DeliveryState.PENDING,
                "next_attempt_at": now,
                "attempts": 0,
                "lease": None,
                "reason": None,
            }
        )
        return self.docs[delivery_id]

    async def count_pending(self) -> int:
        return sum(1 for d in self.docs.values() if d.state is DeliveryState.PENDING)


def make_delivery(
    job_id: str | None = None, url: str = "http://127.0.0.1:9/hook", at: datetime | None = None
) -> Delivery:
    at = at or now()
    job_id = job_id or "job_" + secrets.token_hex(6)
    return Delivery(
        id=f"{job_id}:reelforge.job.completed",
        job_id=job_id,
        tenant_id="tenant-a",
        event_id=secrets.token_hex(8),
        event_type="reelforge.job.completed",
        event_time=at,
        url=url,
        body='{"x": 1}',
        next_attempt_at=at,
        created_at=at,
    )


# ---- the contract, as plain async functions taking a store -------------------------------


async def contract_insert_is_idempotent(store: DeliveryStore) -> None:
    delivery = make_delivery()
    assert await store.insert(delivery) is True
    assert await store.insert(delivery.model_copy(update={"url": "http://other/"})) is False
    stored = await store.get(delivery.id)
    assert stored is not None
    assert stored.url == delivery.url
    assert [d.id for d in await store.list_for_job(delivery.job_id)] == [delivery.id]


async def contract_claim_is_exclusive_until_the_lease_ends(store: DeliveryStore) -> None:
    at = now()
    due, later = make_delivery(at=at), make_delivery(at=at + timedelta(hours=1))
    await store.insert(due)
    await store.insert(later)
    [claimed] = await store.claim_due(at + timedelta(seconds=1), lease_s=60, limit=10)
    assert claimed.id == due.id
    assert claimed.lease
    assert await store.claim_due(at + timedelta(seconds=2), lease_s=60, limit=10) == []
    [again] = await store.claim_due(at + timedelta(seconds=62), lease_s=60, limit=10)
    assert again.lease != claimed.lease
    # the first claimant's lease is gone: it cannot record its attempt any more
    entry = AttemptLog(at=at, status_code=200, duration_ms=1.0)
    assert (
        await store.finish_attempt(due.id, claimed.lease or "", entry, DeliveryState.DELIVERED)
        is False
    )


async def contract_finish_attempt_logs_and_reschedules(store: DeliveryStore) -> None:
    at = now()
    delivery = make_delivery(at=at)
    await store.insert(delivery)
    [claimed] = await store.claim_due(at, lease_s=60, limit=1)
    entry = AttemptLog(at=at, status_code=500, duration_ms=3.5)
    retry_at = at + timedelta(seconds=5)
    assert (
        await store.finish_attempt(
            delivery.id, claimed.lease or "", entry, DeliveryState.PENDING, retry_at, "HTTP 500"
        )
        is True
    )
    stored = await store.get(delivery.id)
    assert stored is not None
    assert stored.attempts == 1
    assert [(e.status_code, e.duration_ms) for e in stored.log] == [(500, 3.5)]
    assert stored.lease is None
    assert abs((stored.next_attempt_at - retry_at).total_seconds()) < 0.01
    assert await store.count_pending() >= 1


async def contract_replay_resets_finished_deliveries_only(store: DeliveryStore) -> None:
    at = now()
    delivery = make_delivery(at=at)
    await store.insert(delivery)
    assert await store.replay(delivery.id, at) is None  # still pending
    [claimed] = await store.claim_due(at, lease_s=60, limit=1)
    entry = AttemptLog(at=at, status_code=410, duration_ms=1.0)
    await store.finish_attempt(
        delivery.id, claimed.lease or "", entry, DeliveryState.DEAD, reason="gone"
    )
    replayed = await store.replay(delivery.id, at)
    assert replayed is not None
    assert replayed.state is DeliveryState.PENDING
    assert replayed.attempts == 0
    assert [e.status_code for e in replayed.log] == [410]
    assert await store.replay("nope", at) is None


CONTRACT = [
    contract_insert_is_idempotent,
    contract_claim_is_exclusive_until_the_lease_ends,
    contract_finish_attempt_logs_and_reschedules,
    contract_replay_resets_finished_deliveries_only,
]


async def test_fake_delivery_store_meets_the_contract() -> None:
    for check in CONTRACT:
        await check(FakeDeliveryStore())
