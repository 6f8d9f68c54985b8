"""In-memory task store; a task's state is derived from the clock, never stored as a status.

A task is THROTTLED until `start_at` (only when a per-owner concurrency limit holds it back),
QUEUED for `queue_seconds`, RUNNING for `render_seconds` (progress rising 0 -> 1), then
SUCCEEDED or FAILED according to the outcome decided at create. With an injected clock, tests
move a task through its whole life without sleeping.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from services.emulator.render import RenderSpec


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


class Phase(StrEnum):
    THROTTLED = "throttled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED})


class Outcome(StrEnum):
    SUCCESS = "success"
    MODERATION_INPUT = "moderation_input"
    MODERATION_OUTPUT = "moderation_output"
    INTERNAL = "internal"


@dataclass
class Task:
    id: str
    provider: str
    model: str
    prompt: str
    spec: RenderSpec
    owner: str
    created_at: float
    queue_seconds: float
    render_seconds: float
    outcome: Outcome = Outcome.SUCCESS
    expired: bool = False
    truncated: bool = False
    malformed: bool = False
    start_at: float = 0.0
    cancelled_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    notified: Phase | None = None
    seq: int = 0  # creation order, set by the store (ties on created_at are common)

    def __post_init__(self) -> None:
        self.start_at = self.start_at or self.created_at

    @property
    def natural_end(self) -> float:
        return self.start_at + self.queue_seconds + self.render_seconds

    def phase(self, now: float) -> Phase:
        if self.cancelled_at is not None and now >= self.cancelled_at:
            return Phase.CANCELLED
        if now < self.start_at:
            return Phase.THROTTLED
        if now < self.start_at + self.queue_seconds:
            return Phase.QUEUED
        if now < self.natural_end:
            return Phase.RUNNING
        return Phase.SUCCEEDED if self.outcome is Outcome.SUCCESS else Phase.FAILED

    def progress(self, now: float) -> float:
        """0 before running, rising while running (never 1 until done), 1 when finished."""
        phase = self.phase(now)
        if phase in TERMINAL:
            return 1.0
        if phase is not Phase.RUNNING or self.render_seconds <= 0:
            return 0.0
        ran = now - self.start_at - self.queue_seconds
        return min(0.99, max(0.0, ran / self.render_seconds))

    def completed_at(self, now: float) -> float | None:
        return self.natural_end if self.phase(now) in (Phase.SUCCEEDED, Phase.FAILED) else None


class TaskStore:
    """Tasks by provider and id; keeps per-owner concurrency schedules for limited providers."""

    def __init__(self, clock: Clock, concurrency: dict[str, int] | None = None) -> None:
        self.clock = clock
        self._concurrency = concurrency or {}
        self._tasks: dict[str, dict[str, Task]] = {}
        self._removed: dict[str, list[Task]] = {}  # still occupy their past slots in schedules
        # (provider, key, value) -> task id, for the lookups `find` serves (Kling's
        # external_task_id); O(1) however many tasks the emulator holds.
        self._by_extra: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()
        self._seq = itertools.count(1)

    def add(self, task: Task) -> Task:
        with self._lock:
            task.seq = next(self._seq)
            self._tasks.setdefault(task.provider, {})[task.id] = task
            for key, value in task.extra.items():
                if isinstance(value, str) and value:
                    self._by_extra.setdefault((task.provider, key, value), task.id)
            self._reschedule(task.provider, task.owner)
        return task

    def get(self, provider: str, task_id: str) -> Task | None:
        return self._tasks.get(provider, {}).get(task_id)

    def find(self, provider: str, key: str, value: str) -> Task | None:
        """The first task of `provider` whose `extra[key]` is `value` (string values only)."""
        task_id = self._by_extra.get((provider, key, value))
        return None if task_id is None else self.get(provider, task_id)

    def list(self, provider: str) -> list[Task]:
        return sorted(self._tasks.get(provider, {}).values(), key=lambda t: (t.created_at, t.seq))

    def all(self) -> Iterable[Task]:
        for by_id in list(self._tasks.values()):
            yield from list(by_id.values())

    def remove(self, provider: str, task_id: str) -> Task | None:
        """Cancel (if still running) and forget a task; a limited owner's queue moves up."""
        with self._lock:
            task = self._tasks.get(provider, {}).pop(task_id, None)
            if task is not None:
                for key, value in task.extra.items():
                    if (
                        isinstance(value, str)
                        and self._by_extra.get((provider, key, value)) == task_id
                    ):
                        del self._by_extra[(provider, key, value)]
                now = self.clock.now()
                if task.phase(now) not in TERMINAL:
                    task.cancelled_at = now
                self._removed.setdefault(provider, []).append(task)
                self._reschedule(provider, task.owner)
        return task

    def cancel(self, provider: str, task_id: str) -> Task | None:
        """Cancel (or, once finished, delete) a task but keep it answerable as CANCELLED;
        a limited owner's queue moves up."""
        with self._lock:
            task = self._tasks.get(provider, {}).get(task_id)
            if task is not None and task.cancelled_at is None:
                task.cancelled_at = self.clock.now()
                self._reschedule(provider, task.owner)
        return task

    def _reschedule(self, provider: str, owner: str) -> None:
        limit = self._concurrency.get(provider)
        if not limit:
            return
        everyone = [*self._tasks.get(provider, {}).values(), *self._removed.get(provider, [])]
        mine = sorted(
            (t for t in everyone if t.owner == owner), key=lambda t: (t.created_at, t.seq)
        )
        ends: list[float] = []
        for task in mine:
            start = task.created_at
            if len(ends) >= limit:
                start = max(start, heapq.heappop(ends))
            if task.cancelled_at is not None and task.cancelled_at <= start:
                continue  # cancelled while throttled: never took a slot
            task.start_at = start
            end = task.natural_end
            if task.cancelled_at is not None:
                end = min(end, task.cancelled_at)
            heapq.heappush(ends, end)
