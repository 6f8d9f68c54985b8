"""The delivery loop: claim due webhooks, POST them signed, record the outcome.

The loop keeps at most `batch` deliveries in flight (a lease per delivery, see `store.py`)
and claims more as soon as any one finishes, so a slow receiver occupies one slot, never the
pass. Each attempt has a total deadline (`deadline_s`: connect, send and the whole response,
not per read, so a receiver trickling bytes cannot stretch it), shorter than the lease.
Bodies are signed with the tenant's Standard Webhooks secret; `webhook-id` is the event id,
stable across retries, so receivers can de-duplicate. Redirects are never followed: a 3xx
is a failed attempt like any other non-2xx. A URL the egress policy refuses
(`shared/egress.py`: checked here and again on the address actually connected to) is dead
at once with the reason: retrying cannot make it public.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from services.notifier import logic
from services.notifier.logic import Verdict
from services.notifier.store import AttemptLog, Delivery, DeliveryState, DeliveryStore
from shared import webhooks
from shared.egress import EgressRefused, IPNetwork, url_problem
from shared.faultpoints import reach
from shared.jobs import now
from shared.metrics import ServiceMetrics
from shared.tenants import webhook_secret_for

log = logging.getLogger(__name__)
DeadLetter = Callable[[Delivery, str], Awaitable[None]]


@dataclass
class Deliverer:
    store: DeliveryStore
    client: httpx.AsyncClient
    dead_letter: DeadLetter
    metrics: ServiceMetrics
    master_secret: str
    schedule: Sequence[float]
    jitter: float = 0.2
    timeout_s: float = 10.0
    deadline_s: float = 30.0
    allow: tuple[IPNetwork, ...] = ()
    batch: int = 20
    poll_s: float = 0.5
    lease_s: float = 60.0
    clock: Callable[[], datetime] = field(default=now)
    rand: random.Random = field(default_factory=random.Random)

    async def run_once(self) -> int:
        """Send every claimed due delivery once; returns how many were attempted."""
        due = await self.store.claim_due(self.clock(), self.lease_s, self.batch)
        await asyncio.gather(*(self._attempt(d) for d in due))
        self.metrics.webhook_pending.set(await self.store.count_pending())
        return len(due)

    async def loop(self) -> None:
        """Keep up to `batch` attempts in flight; a finished one frees its slot at once. An
        attempt that raises is logged; its lease runs out and a later pass retries it."""
        in_flight: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("webhook attempt failed: %r", task.exception())

        try:
            while True:
                free = self.batch - len(in_flight)
                due = await self.store.claim_due(self.clock(), self.lease_s, free) if free else []
                for delivery in due:
                    task = asyncio.create_task(self._attempt(delivery))
                    in_flight.add(task)
                    task.add_done_callback(finished)
                self.metrics.webhook_pending.set(await self.store.count_pending())
                if not free or len(due) < free:
                    await self._pause(in_flight)
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _pause(self, in_flight: set[asyncio.Task[None]]) -> None:
        """Sleep `poll_s`, but wake as soon as an attempt frees its slot."""
        sleeper = asyncio.ensure_future(asyncio.sleep(self.poll_s))
        try:
            await asyncio.wait({*in_flight, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()

    async def _attempt(self, delivery: Delivery) -> None:
        assert delivery.lease is not None
        entry, refused = await self._post(delivery)
        reach("notifier.after_delivery")
        decision = logic.decide(
            entry.status_code,
            entry.error,
            delivery.attempts + 1,
            self.schedule,
            entry.at,
            self.jitter,
            self.rand,
            refused=refused,
        )
        if decision.verdict is Verdict.DEAD:
            # The DLQ record first: if we die before marking it dead, the lease runs out and
            # the next attempt dead-letters again (a duplicate record, never a lost one).
            await self.dead_letter(delivery, decision.reason)
        state = {
            Verdict.DELIVERED: DeliveryState.DELIVERED,
            Verdict.RETRY: DeliveryState.PENDING,
            Verdict.DEAD: DeliveryState.DEAD,
        }[decision.verdict]
        recorded = await self.store.finish_attempt(
            delivery.id,
            delivery.lease,
            entry,
            state,
            decision.next_attempt_at,
            decision.reason or None,
        )
        if not recorded:
            log.warning("lease on delivery %s expired while sending", delivery.id)
            return
        self._count(delivery, decision.verdict, entry.at)

    async def _post(self, delivery: Delivery) -> tuple[AttemptLog, str | None]:
        """The attempt's log entry, and the egress refusal when the URL may not be sent to."""
        body = delivery.body.encode()
        secret = webhook_secret_for(delivery.tenant_id, self.master_secret)
        headers = webhooks.sign_headers(secret, body, webhook_id=delivery.event_id)
        headers["user-agent"] = "reelforge-webhooks/1"
        started, at = time.monotonic(), self.clock()
        status, error, refused = None, None, None
        try:
            refused = url_problem(delivery.url, self.allow)
            if refused is None:
                async with asyncio.timeout(self.deadline_s):
                    response = await self.client.post(
                        delivery.url,
                        content=body,
                        headers=headers,
                        timeout=self.timeout_s,
                        follow_redirects=False,
                    )
                status = response.status_code
        except TimeoutError:
            error = f"no complete answer within the {self.deadline_s:g} s delivery deadline"
        except EgressRefused as exc:
            refused = exc.reason
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        entry = AttemptLog(
            at=at,
            status_code=status,
            error=(f"egress refused: {refused}" if refused else error),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return entry, refused

    def _count(self, delivery: Delivery, verdict: Verdict, at: datetime) -> None:
        self.metrics.webhook_deliveries.labels(verdict.value).inc()
        if verdict is Verdict.DELIVERED:
            lag = (at - delivery.event_time).total_seconds()
            self.metrics.webhook_delivery_lag.observe(max(0.0, lag))
        elif verdict is Verdict.DEAD:
            log.warning("webhook %s to %s is dead", delivery.id, delivery.url)
