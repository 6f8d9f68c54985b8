"""The delivery loop against an in-process receiver (httpx.MockTransport) that verifies the
Standard Webhooks signature with `shared.webhooks`, on the fake store."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from prometheus_client import CollectorRegistry

from services.notifier.delivery import Deliverer
from services.notifier.store import Delivery, DeliveryState
from shared import webhooks
from shared.egress import parse_allow
from shared.jobs import now
from shared.metrics import ServiceMetrics
from shared.tenants import webhook_secret_for
from tests.unit.test_notifier_store import FakeDeliveryStore, make_delivery

MASTER = "test-master-secret"


@dataclass
class Receiver:
    """Answers with `statuses` in turn (the last one repeats); records verified bodies."""

    statuses: list[int]
    verified: list[dict[str, object]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        secret = webhook_secret_for("tenant-a", MASTER)
        webhooks.verify(secret, request.content, request.headers)
        self.verified.append(json.loads(request.content))
        self.ids.append(request.headers["webhook-id"])
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return httpx.Response(status, headers={"location": "http://elsewhere/"})


@dataclass
class Clock:
    at: datetime = field(default_factory=now)

    def __call__(self) -> datetime:
        return self.at


def make_deliverer(
    store: FakeDeliveryStore,
    receiver: Receiver,
    clock: Clock,
    schedule: tuple[float, ...] = (5, 30),
) -> tuple[Deliverer, list[str], CollectorRegistry]:
    dead: list[str] = []

    async def dead_letter(delivery: Delivery, reason: str) -> None:
        dead.append(f"{delivery.id}: {reason}")

    registry = CollectorRegistry()
    client = httpx.AsyncClient(transport=httpx.MockTransport(receiver.handle))
    deliverer = Deliverer(
        store=store,
        client=client,
        dead_letter=dead_letter,
        metrics=ServiceMetrics(registry, "notifier"),
        master_secret=MASTER,
        schedule=schedule,
        jitter=0.0,
        allow=parse_allow("127.0.0.1/32"),  # the in-process receiver's URL is on loopback
        clock=clock,
        rand=random.Random(1),
    )
    return deliverer, dead, registry


async def test_delivers_a_signed_webhook_the_receiver_verifies() -> None:
    store, clock, receiver = FakeDeliveryStore(), Clock(), Receiver([204])
    delivery = make_delivery(at=clock.at)
    await store.insert(delivery)
    deliverer, dead, registry = make_deliverer(store, receiver, clock)

    assert await deliverer.run_once() == 1

    assert receiver.verified == [{"x": 1}]
    assert receiver.ids == [delivery.event_id]
    stored = store.docs[delivery.id]
    assert stored.state is DeliveryState.DELIVERED
    assert stored.log[0].status_code == 204
    assert dead == []
    assert (
        registry.get_sample_value("reelforge_webhook_deliveries_total", {"outcome": "delivered"})
        == 1
    )
    assert registry.get_sample_value("reelforge_webhook_pending") == 0


async def test_retries_after_a_500_on_the_schedule_then_delivers() -> None:
    store, clock, receiver = FakeDeliveryStore(), Clock(), Receiver([500, 200])
    delivery = make_delivery(at=clock.at)
    await store.insert(delivery)
    deliverer, _, _ = make_deliverer(store, receiver, clock)

    await deliverer.run_once()
    assert store.docs[delivery.id].state is DeliveryState.PENDING
    assert store.docs[delivery.id].next_attempt_at == clock.at + timedelta(seconds=5)
    assert await deliverer.run_once() == 0  # not due yet
    clock.at += timedelta(seconds=5)
    await deliverer.run_once()

    stored = store.docs[delivery.id]
    assert stored.state is DeliveryState.DELIVERED
    assert [e.status_code for e in stored.log] == [500, 200]
    assert len(set(receiver.ids)) == 1  # the same webhook-id on every attempt


async def test_dead_letters_when_the_schedule_is_exhausted() -> None:
    store, clock, receiver = FakeDeliveryStore(), Clock(), Receiver([503])
    delivery = make_delivery(at=clock.at)
    await store.insert(delivery)
    deliverer, dead, registry = make_deliverer(store, receiver, clock, schedule=(1, 2))

    for _ in range(5):
        await deliverer.run_once()
        clock.at += timedelta(seconds=3)

    stored = store.docs[delivery.id]
    assert stored.state is DeliveryState.DEAD
    assert stored.attempts == 3
    assert len(dead) == 1
    assert "HTTP 503" in dead[0]
    assert registry.get_sample_value("reelforge_webhook_deliveries_total", {"outcome": "dead"}) == 1


async def test_redirects_are_not_followed_and_410_stops_at_once() -> None:
    store, clock = FakeDeliveryStore(), Clock()
    redirected, gone = make_delivery(at=clock.at), make_delivery(at=clock.at)
    await store.insert(redirected)
    deliverer, _, _ = make_deliverer(store, Receiver([302]), clock)
    await deliverer.run_once()
    assert store.docs[redirected.id].state is DeliveryState.PENDING
    assert store.docs[redirected.id].log[0].status_code == 302

    await store.insert(gone)
    deliverer, dead, _ = make_deliverer(store, Receiver([410]), clock)
    clock.at += timedelta(seconds=1)
    await deliverer.run_once()
    assert store.docs[gone.id].state is DeliveryState.DEAD
    assert len(dead) == 1


async def test_unreachable_receiver_is_logged_as_an_error_and_retried() -> None:
    store, clock = FakeDeliveryStore(), Clock()
    delivery = make_delivery(at=clock.at)
    await store.insert(delivery)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    deliverer, _, _ = make_deliverer(store, Receiver([200]), clock)
    deliverer.client = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    await deliverer.run_once()

    stored = store.docs[delivery.id]
    assert stored.state is DeliveryState.PENDING
    assert stored.log[0].status_code is None
    assert "ConnectError" in (stored.log[0].error or "")
