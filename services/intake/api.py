"""The HTTP API: thin routes over `handlers` (tenant from the API key on every call)."""

# No `from __future__ import annotations` here: FastAPI must see the local `Tenant` type.
import asyncio
import hmac
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse

from services.intake import handlers, logic
from services.intake.handlers import IdempotencyConflict, IntakeDeps, TenantLimited
from services.intake.live import LiveUpdates
from shared import body_limit
from shared.egress import EgressRefused
from shared.jobs import Job, JobRequest, JobState
from shared.limits import IDEMPOTENCY_KEY_MAX_CHARS, IdParam
from shared.providers.catalog import all_models, model_view
from shared.routing import NoRoute
from shared.tenants import webhook_secret_for


def mount(app: FastAPI, deps: IntakeDeps, live: LiveUpdates) -> None:
    """The API on `app`, with its body caps (webhooks get a smaller one)."""
    app.include_router(build_router(deps, live))
    settings = deps.settings
    body_limit.install(app, settings.max_body_bytes, {"/hooks/": settings.max_webhook_body_bytes})


def build_router(deps: IntakeDeps, live: LiveUpdates) -> APIRouter:
    router = APIRouter()

    def tenant(authorization: Annotated[str | None, Header()] = None) -> str:
        scheme, _, key = (authorization or "").partition(" ")
        found = deps.tenants.tenant_for(key) if scheme.lower() == "bearer" else None
        if found is None:
            raise HTTPException(
                401, "missing or unknown API key (send 'Authorization: Bearer <key>')"
            )
        return found

    Tenant = Annotated[str, Depends(tenant)]

    async def owned_job(job_id: IdParam, tenant_id: str) -> Job:
        job = await deps.repo.get(job_id, tenant_id=tenant_id)
        if job is None:  # another tenant's job is indistinguishable from a missing one
            raise HTTPException(404, f"job {job_id} not found")
        return job

    @router.post("/v1/jobs", status_code=202)
    async def create_job(
        request: JobRequest,
        tenant_id: Tenant,
        response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=IDEMPOTENCY_KEY_MAX_CHARS)] = None,
        traceparent: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        if traceparent is not None and not logic.valid_traceparent(traceparent):
            traceparent = None  # a malformed trace context starts a new trace (W3C)
        try:
            await handlers.admit(deps, tenant_id, idempotency_key)
        except TenantLimited as exc:
            deps.metrics.jobs_rejected.labels(exc.limit).inc()
            headers = {"Retry-After": str(exc.retry_after)}
            raise HTTPException(429, str(exc), headers=headers) from exc
        try:
            submitted = await handlers.submit_job(
                deps,
                tenant_id,
                request,
                idempotency_key=idempotency_key,
                source="http",
                traceparent=traceparent,
            )
        except NoRoute as exc:
            deps.metrics.jobs_rejected.labels("no_route").inc()
            raise HTTPException(422, {"message": str(exc), "refused": exc.reasons}) from exc
        except IdempotencyConflict as exc:
            deps.metrics.jobs_rejected.labels("idempotency_conflict").inc()
            raise HTTPException(409, str(exc)) from exc
        except EgressRefused as exc:
            deps.metrics.jobs_rejected.labels("callback_refused").inc()
            raise HTTPException(422, {"message": exc.reason, "field": "callback_url"}) from exc
        if not submitted.created:
            response.status_code = 200
            response.headers["Idempotent-Replayed"] = "true"
        return {**logic.job_view(submitted.job), "warnings": dict(submitted.warnings)}

    @router.post("/v1/quote")
    async def quote(request: JobRequest, tenant_id: Tenant) -> dict[str, Any]:
        try:
            plan = handlers.route(deps, request)
        except NoRoute as exc:
            raise HTTPException(422, {"message": str(exc), "refused": exc.reasons}) from exc
        except EgressRefused as exc:
            raise HTTPException(422, {"message": exc.reason, "field": "callback_url"}) from exc
        return {
            "provider": plan.quote.provider,
            "model": plan.quote.model,
            "total_usd": plan.quote.total_usd,
            "per_candidate_usd": plan.quote.per_candidate_usd,
            "route": [f"{m.provider}/{m.model}" for m in plan.route],
            "refused": plan.refused,
            "warnings": plan.warnings,
        }

    @router.get("/v1/models")
    async def models() -> list[dict[str, Any]]:
        today = logic.today_of(deps.clock())
        return [model_view(m, today) for m in all_models()]

    @router.get("/v1/jobs")
    async def list_jobs(
        tenant_id: Tenant,
        state: JobState | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: IdParam | None = None,
    ) -> dict[str, Any]:
        try:
            page = await deps.repo.list_jobs(tenant_id, state=state, limit=limit, cursor=cursor)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        return {"jobs": [logic.job_view(j) for j in page.jobs], "next_cursor": page.next_cursor}

    @router.get("/v1/jobs/{job_id}")
    async def get_job(job_id: IdParam, tenant_id: Tenant) -> dict[str, Any]:
        job = await owned_job(job_id, tenant_id)
        return logic.job_view(job, await handlers.queue_position(deps, job))

    @router.post("/v1/jobs/{job_id}/cancel")
    async def cancel(job_id: IdParam, tenant_id: Tenant) -> dict[str, Any]:
        job = await owned_job(job_id, tenant_id)
        cancelled = await handlers.cancel_job(deps, job)
        if cancelled is None:
            current = await owned_job(job_id, tenant_id)
            raise HTTPException(409, f"job {job_id} already ended ({current.state.value})")
        return logic.job_view(cancelled)

    @router.get("/v1/jobs/{job_id}/video")
    async def video(job_id: IdParam, tenant_id: Tenant, thumbnail: bool = False) -> Response:
        job = await owned_job(job_id, tenant_id)
        if job.result is None:
            raise HTTPException(409, f"job {job_id} has no video yet ({job.state.value})")
        key = job.result.thumbnail_key if thumbnail else job.result.object_key
        if key is None:
            raise HTTPException(404, "this video has no thumbnail")
        if job.result_deleted_at is not None:
            gone = job.result_deleted_at.isoformat()
            raise HTTPException(410, f"job {job_id}'s video was deleted by retention at {gone}")
        # Retention marks the job after deleting the object: a crash in between, or an object
        # removed by hand, must not hand out a link that can only answer 404.
        if await deps.blobs.stat(key) is None:
            raise HTTPException(410, f"job {job_id}'s video is no longer stored")
        url = await deps.blobs.presigned_get(key, deps.settings.presign_seconds)
        return RedirectResponse(url, status_code=307)

    @router.get("/v1/jobs/{job_id}/events")
    async def events(job_id: IdParam, tenant_id: Tenant) -> StreamingResponse:
        job = await owned_job(job_id, tenant_id)
        return StreamingResponse(
            _stream(job), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    async def _stream(job: Job) -> AsyncIterator[str]:
        deadline = time.monotonic() + deps.settings.sse_max_seconds
        last: dict[str, Any] | None = None
        with live.subscribe(job.job_id) as updates:
            while time.monotonic() < deadline:
                snapshot = logic.progress_snapshot(job, await handlers.queue_position(deps, job))
                if snapshot != last:
                    yield logic.sse_frame("progress", snapshot)
                    last = snapshot
                if job.state.terminal:
                    yield logic.sse_frame("end", logic.job_view(job))
                    return
                try:
                    await asyncio.wait_for(updates.get(), deps.settings.sse_refresh_seconds)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                job = await deps.repo.get(job.job_id) or job  # the record is the truth

    @router.get("/v1/webhook-secret")
    async def webhook_secret(tenant_id: Tenant) -> dict[str, str]:
        secret = webhook_secret_for(
            tenant_id, deps.settings.webhook_master_secret.get_secret_value()
        )
        return {"scheme": "standard-webhooks", "secret": secret}

    @router.post("/hooks/{provider}/{token}")
    @router.post("/hooks/{provider}")
    async def provider_webhook(
        provider: str, request: Request, token: str | None = None
    ) -> JSONResponse:
        if provider not in deps.providers:  # before any metric series or body read
            raise HTTPException(404, f"no webhook ingress for provider {provider[:40]!r}")
        unsigned = provider == "kling"  # Kling signs nothing: the secret is in the URL
        if unsigned and not _same_token(token, deps.settings.callback_token):
            raise HTTPException(404, "not found")
        outcome = await handlers.ingest_webhook(
            deps, provider, dict(request.headers), await request.body()
        )
        deps.metrics.webhook_hints.labels(provider, outcome).inc()
        if outcome == "invalid":
            raise HTTPException(400, "webhook signature or body invalid")
        if outcome == "replayed":
            raise HTTPException(409, "this webhook id was already received (replay refused)")
        return JSONResponse({"outcome": outcome})

    return router


def _same_token(given: str | None, expected: str) -> bool:
    return hmac.compare_digest((given or "").encode(), expected.encode())
