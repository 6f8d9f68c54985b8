"""The transactional outbox: events written with the state change that must announce them.

A handler never "writes the state, then publishes and hopes". It passes `announce` to the
repository (`transition`, `update`, `create`): a function of the job *after* the change that
returns the events to publish. The repository stores them in the same transaction (PostgreSQL)
or the same single-document update (MongoDB) as the change; nothing is stored when the change
did not happen. A relay publishes stored events and only then removes them: a crash in
between publishes the same event again, with the same id (`stable_event_id`), which
consumers de-duplicate on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.events import Envelope, stable_event_id
from shared.faultpoints import reach

if TYPE_CHECKING:
    from shared.jobs import Job
    from shared.pg import Pool

log = logging.getLogger(__name__)
# One relay publishes at a time (the holder of this session-level advisory lock); the others
# stand by and take over within a poll interval when its connection ends.
RELAY_LOCK = 0x7265656C_72656C61  # "reelrela"
NOTIFY_CHANNEL = "reelforge_outbox"

Announce = Callable[["Job"], Iterable[tuple[str, Envelope]]]
__all__ = ["Announce", "OutboxEvent", "PgOutboxRelay", "outbox_events", "stable_event_id"]


@dataclass(frozen=True)
class OutboxEvent:
    """One event as it goes on the wire: topic, key (the job id), headers and JSON body."""

    topic: str
    key: str
    event_id: str
    headers: dict[str, str]
    payload: bytes

    @classmethod
    def of(cls, topic: str, event: Envelope) -> OutboxEvent:
        headers = {
            "ce_type": str(getattr(event, "type", "")),
            "ce_id": event.id,
            "content-type": "application/json",
        }
        if event.traceparent:
            headers["traceparent"] = event.traceparent
        return cls(str(topic), event.subject, event.id, headers, event.model_dump_json().encode())


def outbox_events(announce: Announce | None, job: Job) -> list[OutboxEvent]:
    if announce is None:
        return []
    return [OutboxEvent.of(str(topic), event) for topic, event in announce(job)]


Send = Callable[[OutboxEvent], Awaitable[None]]


async def send_in_order(send: Send, events: Sequence[OutboxEvent]) -> None:
    """Publish `events`: one job's events on one topic strictly in order, different jobs
    concurrently (so the producer can batch them)."""
    lanes: dict[tuple[str, str], list[OutboxEvent]] = {}
    for event in events:
        lanes.setdefault((event.topic, event.key), []).append(event)

    async def lane(items: list[OutboxEvent]) -> None:
        for item in items:
            await send(item)

    await asyncio.gather(*(lane(items) for items in lanes.values()))


class PgOutboxRelay:
    """Publishes the `outbox` table to Kafka. Every service process runs one; the holder of
    the advisory lock is the only one publishing. It wakes on NOTIFY (sent by the writing
    transaction at commit) and at least every `interval_s`."""

    def __init__(
        self,
        pool: Pool,
        send: Send,
        *,
        batch: int = 500,
        interval_s: float = 1.0,
        on_published: Callable[[int], None] | None = None,
    ) -> None:
        self._pool = pool
        self._send = send
        self._batch = batch
        self._interval_s = interval_s
        self._wake = asyncio.Event()
        self._on_published = on_published
        self.leader = False

    async def run(self) -> None:
        while True:
            try:
                await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception:  # connection lost, broker down: stand by and try again
                log.warning("outbox relay interrupted; retrying", exc_info=True)
            self.leader = False
            await asyncio.sleep(self._interval_s)

    async def _lead(self) -> None:
        async with self._pool.acquire() as conn:
            # Polling, not an Event: the lock is released by another process's connection.
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK):  # noqa: ASYNC110
                await asyncio.sleep(self._interval_s)
            self.leader = True
            log.info("outbox relay: this process publishes the outbox")

            def notified(*_: Any) -> None:
                self._wake.set()

            await conn.add_listener(NOTIFY_CHANNEL, notified)
            try:
                while True:
                    sent = await self.publish_once(conn)
                    if sent < self._batch:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), self._interval_s)
                        self._wake.clear()
            finally:
                with contextlib.suppress(Exception):
                    await conn.remove_listener(NOTIFY_CHANNEL, notified)
                    await conn.execute("SELECT pg_advisory_unlock($1)", RELAY_LOCK)

    async def publish_once(self, conn: Any) -> int:
        """Publish one batch of stored events in id order, then delete them."""
        rows = await conn.fetch(
            "SELECT id, event_id, topic, key, headers, payload FROM outbox ORDER BY id LIMIT $1",
            self._batch,
        )
        if not rows:
            return 0
        events = [
            OutboxEvent(r["topic"], r["key"], r["event_id"], dict(r["headers"]), r["payload"])
            for r in rows
        ]
        await send_in_order(self._send, events)
        reach("outbox.after_publish")
        await conn.execute(
            "DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
        )
        if self._on_published:
            self._on_published(len(rows))
        return len(rows)
