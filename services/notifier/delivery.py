"""The delivery loop: claim due webhooks, POST them signed, record the outcome.

Each pass claims at most `batch` deliveries (a lease per delivery, see `store.py`) and sends
them concurrently with a per-request timeout, so one slow receiver delays a pass by at most
that timeout. Bodies are signed with the tenant's Standard Webhooks secret; `webhook-id` is
the event id, stable across retries, so receivers can de-duplicate. Redirects are never
followed: a 3xx is a failed attempt like any other non-2xx.
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
        while True:
            if await self.run_once() < self.batch:
                await asyncio.sleep(self.poll_s)

    async def _attempt(self, delivery: Delivery) -> None:
        assert delivery.lease is not None
        entry = await self._post(delivery)
        reach("notifier.after_delivery")
        decision = logic.decide(
            entry.status_code,
            entry.error,
            delivery.attempts + 1,
            self.schedule,
            entry.at,
            self.jitter,
            self.rand,
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

    async def _post(self, delivery: Delivery) -> AttemptLog:
        body = delivery.body.encode()
        secret = webhook_secret_for(delivery.tenant_id, self.master_secret)
        headers = webhooks.sign_headers(secret, body, webhook_id=delivery.event_id)
        headers["user-agent"] = "reelforge-webhooks/1"
        started, at = time.monotonic(), self.clock()
        status, error = None, None
        try:
            response = await self.client.post(
                delivery.url,
                content=body,
                headers=headers,
                timeout=self.timeout_s,
                follow_redirects=False,
            )
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        return AttemptLog(
            at=at,
            status_code=status,
            error=error,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )

    def _count(self, delivery: Delivery, verdict: Verdict, at: datetime) -> None:
        self.metrics.webhook_deliveries.labels(verdict.value).inc()
        if verdict is Verdict.DELIVERED:
            lag = (at - delivery.event_time).total_seconds()
            self.metrics.webhook_delivery_lag.observe(max(0.0, lag))
        elif verdict is Verdict.DEAD:
            log.warning("webhook %s to %s is dead", delivery.id, delivery.url)
