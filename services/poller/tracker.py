"""The in-flight set of one poller replica and its single scheduling loop.

Tasks are tracked per (job id, attempt id). The set is rebuilt from the job records whenever
Kafka assigns this replica partitions of the provider topic, so a restart or a rebalance
resumes every task without replaying the topic; a TaskSubmitted or TaskHinted adds to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from services.poller.logic import Schedule, ScheduleConfig, error_delay, next_delay, seconds_between
from shared.jobs import now
from shared.providers.base import TaskRef, TaskStatus
from shared.providers.errors import ProviderError

log = logging.getLogger(__name__)
Key = tuple[str, str]


@dataclass(slots=True)
class Tracked:
    job_id: str
    tenant_id: str
    attempt_id: str
    ref: TaskRef
    submitted_at: datetime
    deadline_at: datetime
    expected_s: float
    partition: int
    traceparent: str | None = None
    progress: float | None = None
    raw_status: str | None = None
    polls: int = 0
    errors: int = 0
    running_seen: bool = False
    hinted_at: datetime | None = None
    last_poll_at: datetime | None = None
    previous_poll_at: datetime | None = None

    @property
    def key(self) -> Key:
        return (self.job_id, self.attempt_id)


Poll = Callable[[Tracked], Awaitable[float | None]]


class Tracker:
    def __init__(self, cfg: ScheduleConfig, max_concurrent: int, poll: Poll) -> None:
        self.cfg = cfg
        self.tasks: dict[Key, Tracked] = {}
        self._schedule = Schedule()
        self._poll = poll
        self._slots = asyncio.Semaphore(max_concurrent)
        self._max = max_concurrent
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        # One poll per task at a time: a hint for a task being polled is remembered in
        # `_again` and served right after, never by a second concurrent call whose older
        # answer could land after the newer one.
        self._polling: set[Key] = set()
        self._again: set[Key] = set()

    def track(self, task: Tracked, due_in: float | None = None) -> None:
        if task.key in self.tasks:
            return
        self.tasks[task.key] = task
        if due_in is None:  # first poll relative to submission, so a resumed task is due soon
            first = next_delay(
                elapsed=0.0,
                expected=task.expected_s,
                progress=None,
                polls=0,
                provider_hint=None,
                cfg=self.cfg,
            )
            due_in = max(0.0, first - seconds_between(task.submitted_at, now()))
        self._schedule.set(task.key, time.monotonic() + due_in)
        self._wake.set()

    def poll_now(self, key: Key) -> bool:
        if key not in self.tasks:
            return False
        self._schedule.set(key, time.monotonic())
        self._wake.set()
        return True

    def forget(self, key: Key) -> Tracked | None:
        self._schedule.discard(key)
        self._again.discard(key)
        return self.tasks.pop(key, None)

    def forget_partitions(self, partitions: set[int]) -> int:
        gone = [k for k, t in self.tasks.items() if t.partition in partitions]
        for key in gone:
            self.forget(key)
        return len(gone)

    async def run(self) -> None:
        """The one loop: start due polls (bounded), sleep until the next due time or a wake."""
        while True:
            free = self._max - len(self._running)
            for key in self._schedule.pop_due(time.monotonic(), free):
                task = self.tasks.get(key)
                if task is not None and key in self._polling:
                    self._again.add(key)
                elif task is not None:
                    self._polling.add(key)
                    job = asyncio.create_task(self._run_one(task))
                    self._running.add(job)
                    job.add_done_callback(self._running.discard)
            due = self._schedule.next_due()
            timeout = 1.0 if due is None else min(1.0, max(0.0, due - time.monotonic()))
            if len(self._running) >= self._max:
                timeout = min(timeout, 0.01)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _run_one(self, task: Tracked) -> None:
        try:
            async with self._slots:
                try:
                    delay = await self._poll(task)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug or a store outage must not stop the other tasks
                    log.exception("poll of %s/%s failed", task.job_id, task.attempt_id)
                    task.errors += 1
                    delay = error_delay(task.errors, None, self.cfg)
        finally:
            self._polling.discard(task.key)
        current = self.tasks.get(task.key)  # None when done; another object when re-tracked
        if current is None:
            return
        if task.key in self._again:  # hinted while this poll ran: poll again now
            self._again.discard(task.key)
            delay = 0.0
        elif delay is None or current is not task:
            return  # finished, or the re-tracked object keeps its own schedule
        self._schedule.set(task.key, time.monotonic() + delay)
        self._wake.set()

    async def stop(self) -> None:
        for job in list(self._running):
            job.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


def delay_after_status(
    task: Tracked, status: TaskStatus, expected: float, cfg: ScheduleConfig
) -> float:
    return next_delay(
        elapsed=seconds_between(task.submitted_at, now()),
        expected=expected,
        progress=status.progress,
        polls=task.polls,
        provider_hint=status.poll_after_s,
        cfg=cfg,
    )


def delay_after_error(task: Tracked, exc: ProviderError, cfg: ScheduleConfig) -> float:
    return error_delay(task.errors, exc.retry_after, cfg)
