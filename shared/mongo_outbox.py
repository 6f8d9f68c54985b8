"""`MongoOutboxRelay`: publishes the events that `MongoJobRepository` stored in job documents.

An announced write pushes its events onto the job document's `outbox` array and sets
`has_outbox: true` (a sparse index holds only those documents). The relay reads a batch of
such documents, publishes each job's events in array order (`send_in_order`), then removes
exactly the array elements it published (`$pullAll` of the elements as read: by whole-element
equality, which MongoDB and FerretDB both implement), so events pushed meanwhile stay for the
next round; a document whose outbox became empty loses `has_outbox` in a conditional update.

Several relays may run at once (there is no leader election on MongoDB): two of them can
publish the same event, with the same id (`stable_event_id`), which consumers de-duplicate
on; a crash between publishing and pulling does the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from pymongo import UpdateMany, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from shared.mongo_repository import OUTBOX_FIELD, PENDING_FIELD
from shared.outbox import OutboxEvent, Send, send_in_order

log = logging.getLogger(__name__)


class MongoOutboxRelay:
    """Polls the jobs collection for documents with pending events, every `interval_s` when
    idle and at once while batches come back full."""

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        send: Send,
        *,
        batch: int = 500,
        interval_s: float = 1.0,
        on_published: Callable[[int], None] | None = None,
    ) -> None:
        self._jobs = collection
        self._send = send
        self._batch = batch
        self._interval_s = interval_s
        self._on_published = on_published
        self._full = False

    async def run(self) -> None:
        while True:
            try:
                await self.publish_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # server or broker unavailable: try again after a pause
                log.warning("outbox relay interrupted; retrying", exc_info=True)
                self._full = False
            if not self._full:
                await asyncio.sleep(self._interval_s)

    async def publish_once(self) -> int:
        """Publish the pending events of up to `batch` jobs, then remove exactly those events.
        Returns how many events were published."""
        found = self._jobs.find({PENDING_FIELD: True}, projection={OUTBOX_FIELD: 1}).limit(
            self._batch
        )
        docs = [d async for d in found]
        self._full = len(docs) >= self._batch
        published: dict[Any, list[Mapping[str, Any]]] = {}
        events: list[OutboxEvent] = []
        for doc in docs:
            stored = list(doc.get(OUTBOX_FIELD) or [])
            published[doc["_id"]] = stored
            events += [_event_of(e) for e in stored]
        if docs:
            await send_in_order(self._send, events)
            ids = list(published)
            await self._jobs.bulk_write(
                [
                    *(
                        UpdateOne({"_id": job_id}, {"$pullAll": {OUTBOX_FIELD: elements}})
                        for job_id, elements in published.items()
                        if elements
                    ),
                    # Emptied (and nothing pushed since): no longer pending.
                    UpdateMany(
                        {
                            "_id": {"$in": ids},
                            "$or": [
                                {OUTBOX_FIELD: {"$size": 0}},
                                {OUTBOX_FIELD: {"$exists": False}},
                            ],
                        },
                        {"$unset": {PENDING_FIELD: "", OUTBOX_FIELD: ""}},
                    ),
                ],
                ordered=True,
            )
        if events and self._on_published:
            self._on_published(len(events))
        return len(events)


def _event_of(stored: Mapping[str, Any]) -> OutboxEvent:
    payload = stored["payload"]
    if isinstance(payload, str):
        payload = payload.encode()
    return OutboxEvent(
        topic=str(stored["topic"]),
        key=str(stored["key"]),
        event_id=str(stored["event_id"]),
        headers={str(k): str(v) for k, v in (stored.get("headers") or {}).items()},
        payload=bytes(payload),
    )
