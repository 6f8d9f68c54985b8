"""Issue 11, finding 6: a receiver trickling bytes must neither stretch its own attempt past the
delivery deadline nor stall other deliveries. Real receivers on 127.0.0.1 (allow-listed), the
real guarded transport; the only time bounds are "ends at all" guards."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.notifier.delivery import Deliverer
from services.notifier.store import Delivery, DeliveryState
from shared.egress import EgressGuard, guarded_transport, parse_allow
from shared.metrics import ServiceMetrics
from tests.unit.test_notifier_store import FakeDeliveryStore, make_delivery

LOOPBACK = parse_allow("127.0.0.1/32")
BOUND_S = 20.0  # "finishes at all", never a timing assertion


@dataclass
class LocalReceiver:
    """An HTTP/1.1 receiver on 127.0.0.1: answers 204 at once, or (trickle) announces a large
    body and sends one byte every `gap_s` until the client goes away."""

    trickle: bool
    gap_s: float = 0.05
    requests: asyncio.Event = field(default_factory=asyncio.Event)
    hits: int = 0
    server: asyncio.Server | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        with contextlib.suppress(ConnectionError):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            self.hits += 1
            self.requests.set()
            if not self.trickle:
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
                for _ in range(100_000):  # bounded: ~80 min at most, far past any test
                    if writer.is_closing():
                        break
                    writer.write(b".")
                    await writer.drain()
                    await asyncio.sleep(self.gap_s)
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"


@contextlib.asynccontextmanager
async def receiver(trickle: bool) -> AsyncIterator[LocalReceiver]:
    r = LocalReceiver(trickle)
    r.server = await asyncio.start_server(r.handle, "127.0.0.1", 0)
    try:
        yield r
    finally:
        r.server.close()
        for writer in r.writers:  # ends a trickle still running
            writer.close()
        await r.server.wait_closed()


def deliverer(store: FakeDeliveryStore, deadline_s: float) -> tuple[Deliverer, list[str]]:
    import httpx

    dead: list[str] = []

    async def dead_letter(d: Delivery, reason: str) -> None:
        dead.append(reason)

    client = httpx.AsyncClient(transport=guarded_transport(EgressGuard(LOOPBACK)))
    return (
        Deliverer(
            store=store,
            client=client,
            dead_letter=dead_letter,
            metrics=ServiceMetrics(CollectorRegistry(), "notifier"),
            master_secret="m",
            schedule=(5, 30),
            timeout_s=10.0,  # per read: the trickle never trips it
            deadline_s=deadline_s,
            allow=LOOPBACK,
            batch=4,
            poll_s=0.05,
        ),
        dead,
    )


class WatchedStore(FakeDeliveryStore):
    """The fake store, telling the test when an attempt of a given delivery was recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: dict[str, asyncio.Event] = {}

    async def finish_attempt(self, delivery_id: str, *args: Any, **kwargs: Any) -> bool:
        done = await super().finish_attempt(delivery_id, *args, **kwargs)
        self.recorded.setdefault(delivery_id, asyncio.Event()).set()
        return done

    async def wait_recorded(self, delivery_id: str) -> None:
        await asyncio.wait_for(
            self.recorded.setdefault(delivery_id, asyncio.Event()).wait(), BOUND_S
        )


async def test_a_trickling_receiver_is_cut_off_at_the_delivery_deadline() -> None:
    store = FakeDeliveryStore()
    async with receiver(trickle=True) as slow:
        delivery = make_delivery(url=slow.url)
        await store.insert(delivery)
        d, _ = deliverer(store, deadline_s=0.5)
        assert await asyncio.wait_for(d.run_once(), BOUND_S) == 1
        await d.client.aclose()
    stored = store.docs[delivery.id]
    assert slow.hits == 1
    assert stored.state is DeliveryState.PENDING  # a failed attempt, retried on the schedule
    assert stored.log[0].status_code is None
    assert "0.5 s delivery deadline" in (stored.log[0].error or "")


async def test_one_slow_receiver_does_not_stall_the_others() -> None:
    store = WatchedStore()
    async with receiver(trickle=True) as slow, receiver(trickle=False) as fast:
        held = make_delivery(url=slow.url)
        await store.insert(held)
        d, _ = deliverer(store, deadline_s=25.0)
        loop = asyncio.create_task(d.loop())
        try:
            await asyncio.wait_for(slow.requests.wait(), BOUND_S)
            later = make_delivery(url=fast.url)  # due while the slow one is still in flight
            await store.insert(later)
            await store.wait_recorded(later.id)
            assert store.docs[later.id].state is DeliveryState.DELIVERED
            assert store.docs[held.id].attempts == 0  # still trickling, still in flight
            assert fast.hits == 1
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
            await d.client.aclose()


@pytest.mark.parametrize("deadline_s", [60.0, 90.0])
def test_the_deadline_must_stay_below_the_lease(deadline_s: float) -> None:
    from pydantic import ValidationError

    from services.notifier.settings import NotifierSettings

    with pytest.raises(ValidationError, match="below NOTIFIER_DELIVERY_LEASE_S"):
        NotifierSettings(delivery_deadline_s=deadline_s, delivery_lease_s=60.0)
