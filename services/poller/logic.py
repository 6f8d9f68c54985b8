"""Poller decisions, free of I/O: when to poll a task next, which partition owns a job, and
what an answer from the provider means for the job.

The schedule aims the next poll at the moment the task is expected to finish, re-estimated at
every answer: from the provider's progress when it reports one (remaining = elapsed *
(1 - p) / p), else from the expected render time (learned per model). Far from the finish it
sleeps most of the remaining time; close to it, it polls just after; once overdue it backs off
gently. A webhook hint makes the task due at once. This replaces the fixed sleep loop.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class ScheduleConfig:
    min_interval_s: float = 1.0
    max_interval_s: float = 60.0
    approach_factor: float = 0.85  # share of the remaining time slept while far away
    landing_margin_s: float = 0.25  # poll this long after the estimated finish
    first_poll_share: float = 0.3  # first poll after this share of the expected time


def remaining_estimate(elapsed: float, expected: float, progress: float | None) -> float:
    if progress is not None and 0.05 <= progress < 1.0 and elapsed > 0:
        return elapsed * (1.0 - progress) / progress
    return expected - elapsed


def next_delay(
    *,
    elapsed: float,
    expected: float,
    progress: float | None,
    polls: int,
    provider_hint: float | None,
    cfg: ScheduleConfig,
) -> float:
    """Seconds until the next status call for one task.

    The provider's poll hint (Runway: updates not more often than every 5 s; OpenAI's
    `openai-poll-after-ms`) is a floor while the task is far from its estimated finish or late;
    the one landing poll just after the estimate may come sooner."""
    remaining: float | None = None
    if polls == 0 and progress is None:
        delay = expected * cfg.first_poll_share
    else:
        remaining = remaining_estimate(elapsed, expected, progress)
        if remaining > 2 * cfg.min_interval_s:
            delay = remaining * cfg.approach_factor
        elif remaining > 0:
            delay = remaining + cfg.landing_margin_s
        else:  # overdue: the estimate was wrong; back off with how late it is
            delay = max(cfg.min_interval_s, -remaining * 0.25)
    landing = remaining is not None and 0 < remaining <= (provider_hint or 0)
    if provider_hint is not None and not landing:
        delay = max(delay, provider_hint)
    return min(max(delay, cfg.min_interval_s), cfg.max_interval_s)


def error_delay(consecutive_errors: int, retry_after: float | None, cfg: ScheduleConfig) -> float:
    if retry_after is not None:
        return max(retry_after, cfg.min_interval_s)
    return min(cfg.max_interval_s, cfg.min_interval_s * 2.0 ** min(consecutive_errors, 6))


class RenderTimes:
    """Learned render time per model (EWMA of observed submit-to-result times)."""

    def __init__(self, weight: float = 0.2) -> None:
        self._weight = weight
        self._by_model: dict[str, float] = {}

    def observe(self, model: str, seconds: float) -> None:
        old = self._by_model.get(model)
        self._by_model[model] = seconds if old is None else old + self._weight * (seconds - old)

    def expected(self, model: str, prior: float) -> float:
        return self._by_model.get(model, prior)


@dataclass(order=True)
class _Entry:
    due: float
    seq: int
    key: tuple[str, str] = field(compare=False)


class Schedule:
    """One heap of due times for every tracked task (lazy deletion): O(log n) per change,
    no coroutine per task."""

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._live: dict[tuple[str, str], int] = {}
        self._seq = itertools.count()

    def set(self, key: tuple[str, str], due: float) -> None:
        seq = next(self._seq)
        self._live[key] = seq
        heapq.heappush(self._heap, _Entry(due, seq, key))

    def discard(self, key: tuple[str, str]) -> None:
        self._live.pop(key, None)

    def pop_due(self, now: float, limit: int) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        while self._heap and len(out) < limit and self._heap[0].due <= now:
            entry = heapq.heappop(self._heap)
            if self._live.get(entry.key) == entry.seq:
                del self._live[entry.key]
                out.append(entry.key)
        return out

    def next_due(self) -> float | None:
        while self._heap and self._live.get(self._heap[0].key) != self._heap[0].seq:
            heapq.heappop(self._heap)
        return self._heap[0].due if self._heap else None

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._live


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (as the Java client and aiokafka's default partitioner compute it)."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_of(job_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner puts a message keyed by `job_id` on."""
    return (murmur2(job_id.encode()) & 0x7FFFFFFF) % partitions


def progress_changed(old: float | None, new: float | None, step: float) -> bool:
    if new is None:
        return False
    return old is None or abs(new - old) >= step or new >= 1.0


def seconds_between(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())
