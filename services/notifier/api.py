"""The delivery log and replay over HTTP, on the service's own app (`process.http`).

Both routes need `Authorization: Bearer <NOTIFIER_ADMIN_TOKEN>`; with no token configured
they answer 403 (disabled), so a forgotten setting never opens them.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException

from services.notifier.store import DeliveryState, DeliveryStore
from shared.jobs import now
from shared.limits import IdParam


def delivery_routes(
    store: DeliveryStore, admin_token: str, clock: Callable[[], datetime] = now
) -> APIRouter:
    router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])

    def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
        if not admin_token:
            raise HTTPException(403, "the delivery admin API is disabled (NOTIFIER_ADMIN_TOKEN)")
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), admin_token.encode()):
            raise HTTPException(401, "missing or wrong admin token")

    admin = [Depends(require_admin)]

    @router.get("", dependencies=admin)
    async def list_deliveries(job_id: IdParam) -> list[dict[str, Any]]:
        found = await store.list_for_job(job_id)
        return [d.model_dump(mode="json", exclude={"lease"}) for d in found]

    @router.post("/{delivery_id}/replay", dependencies=admin)
    async def replay(delivery_id: IdParam) -> dict[str, Any]:
        replayed = await store.replay(delivery_id, clock())
        if replayed is not None:
            return replayed.model_dump(mode="json", exclude={"lease"})
        existing = await store.get(delivery_id)
        if existing is None:
            raise HTTPException(404, "no such delivery")
        assert existing.state is DeliveryState.PENDING
        raise HTTPException(409, "the delivery is still pending; nothing to replay")

    return router
