"""Fan-out of `job-updates` to the live (SSE) streams open on this replica."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from shared.events import JobUpdated


class LiveUpdates:
    def __init__(self, queue_size: int = 64) -> None:
        self._queues: dict[str, set[asyncio.Queue[JobUpdated]]] = defaultdict(set)
        self._size = queue_size

    async def publish(self, update: JobUpdated) -> None:
        for q in list(self._queues.get(update.subject, ())):
            if q.full():  # a slow reader misses updates, never the truth: it re-reads the job
                q.get_nowait()
            q.put_nowait(update)

    @contextmanager
    def subscribe(self, job_id: str) -> Iterator[asyncio.Queue[JobUpdated]]:
        q: asyncio.Queue[JobUpdated] = asyncio.Queue(self._size)
        self._queues[job_id].add(q)
        try:
            yield q
        finally:
            self._queues[job_id].discard(q)
            if not self._queues[job_id]:
                del self._queues[job_id]

    def watched(self) -> int:
        return len(self._queues)
