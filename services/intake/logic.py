"""Intake decisions, free of I/O: idempotency, building the job record, public views."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from shared.jobs import Job, JobRequest, JobState
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
