"""Intake decisions, free of I/O: idempotency, building the job record, public views."""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from shared.jobs import Job, JobRequest, JobState
from shared.limits import IDEMPOTENCY_KEY_MAX_CHARS, storable_text
from shared.providers.base import ModelSpec
from shared.routing import RoutePlan


class Idempotency(StrEnum):
    NEW = "new"
    REPLAY = "replay"
    CONFLICT = "conflict"


def idempotency_outcome(existing: Job | None, fingerprint: str) -> Idempotency:
    """Same key and body: replay the job. Same key, other body: conflict (HTTP 409)."""
    if existing is None:
        return Idempotency.NEW
    return Idempotency.REPLAY if existing.fingerprint == fingerprint else Idempotency.CONFLICT


def check_idempotency_key(key: str) -> str:
    """Stored and indexed with the job: bounded, and text every store takes."""
    if len(key) > IDEMPOTENCY_KEY_MAX_CHARS:
        raise ValueError(f"at most {IDEMPOTENCY_KEY_MAX_CHARS} characters")
    return storable_text(key)


_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def valid_traceparent(value: str) -> bool:
    return _TRACEPARENT.fullmatch(value) is not None


def new_job(
    *,
    job_id: str,
    tenant_id: str,
    request: JobRequest,
    idempotency_key: str | None,
    plan: RoutePlan,
    at: datetime,
    source: str,
    trace_parent: str | None,
) -> Job:
    return Job(
        job_id=job_id,
        tenant_id=tenant_id,
        request=request,
        state=JobState.ACCEPTED,
        idempotency_key=idempotency_key,
        fingerprint=request.fingerprint(),
        route=plan.choices(),
        quote_usd=plan.quote.total_usd,
        source=source,
        trace_parent=trace_parent,
        created_at=at,
        updated_at=at,
        deadline_at=at + timedelta(seconds=request.deadline_s),
    )


def retired_allowed(openai_base_url: str) -> Any:
    """Sora is retired on api.openai.com only; an OpenAI-compatible gateway may still serve it."""
    official = urlsplit(openai_base_url).hostname == "api.openai.com"

    def allowed(spec: ModelSpec) -> bool:
        return spec.provider == "openai" and not official

    return allowed


def today_of(at: datetime) -> date:
    return at.date()


def job_view(job: Job, queue_position: int | None = None) -> dict[str, Any]:
    view = job.public_view()
    view["queue_position"] = queue_position
    view["attempts"] = [
        {k: v for k, v in a.items() if k not in ("outputs",)} for a in view["attempts"].values()
    ]
    return view


def sse_frame(event: str, data: dict[str, Any], event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def progress_snapshot(job: Job, queue_position: int | None) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "state": job.state.value,
        "progress": job.progress,
        "queue_position": queue_position,
        "terminal": job.state.terminal,
    }


class HintGate:
    """At most one forwarded webhook hint per task per `window_s` (monotonic seconds): a caller
    who knows its own task id cannot turn hints into a stream of status calls on the shared
    provider rate limit. Memory stays bounded: entries older than the window are dropped."""

    def __init__(self, window_s: float, max_entries: int = 100_000) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._last: dict[tuple[str, str], float] = {}

    def admit(self, provider: str, task_id: str, at: float) -> bool:
        key = (provider, task_id)
        last = self._last.get(key)
        if last is not None and at - last < self.window_s:
            return False
        if len(self._last) >= self.max_entries:
            self._last = {k: t for k, t in self._last.items() if at - t < self.window_s}
            if len(self._last) >= self.max_entries:
                return False  # a flood of distinct ids: refuse rather than grow
        self._last[key] = at
        return True


class TenantRate:
    """Requests per minute per tenant, as a sliding pair of one-minute windows (the previous
    window's count weighted by how much of it still overlaps). `admit` returns 0 when the
    request may go, else the seconds to wait (the `Retry-After`)."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, int, int]] = {}  # tenant -> (minute, prev, current)

    def admit(self, tenant_id: str, per_minute: int, at: float) -> int:
        if per_minute <= 0:
            return 0
        minute = int(at // 60)
        start, previous, current = self._windows.get(tenant_id, (minute, 0, 0))
        if minute != start:
            previous, current = (current if minute == start + 1 else 0), 0
        into = at % 60
        self._windows[tenant_id] = (minute, previous, current)
        if previous * (1.0 - into / 60) + current < per_minute:
            self._windows[tenant_id] = (minute, previous, current + 1)
            return 0
        if current >= per_minute:
            return math.ceil(60 - into)
        # Wait until enough of the previous window has slid out.
        return max(1, math.floor(60 * (1 - (per_minute - current) / previous) - into) + 1)
