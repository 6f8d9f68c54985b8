"""The `DeliveryStore` port: outgoing webhooks, their state and their attempt log.

Contract (the same suite runs on the fake in tests and on `MongoDeliveryStore`):

* `insert` stores a new pending delivery; it returns False and changes nothing when a
  delivery with that id exists (a redelivered outcome event is already queued).
* `claim_due` atomically takes up to `limit` pending deliveries whose `next_attempt_at` has
  passed, stamping each with a fresh `lease` token and pushing `next_attempt_at` to the end
  of the lease. A replica that claimed a delivery is the only one that can record its attempt
  (`finish_attempt` checks the token); if it dies, the delivery is due again when the lease
  ends, so several replicas never send the same attempt concurrently.
* `finish_attempt` appends the log entry, counts the attempt and sets the new state; it
  returns False if the lease is no longer ours (then it changes nothing).
* `replay` sets a delivered or dead delivery back to pending, due now, with a fresh count.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class AttemptLog(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: datetime
    status_code: int | None = None
    error: str | None = None
    duration_ms: float


class Delivery(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(description="f'{job_id}:{event type}'")
    job_id: str
    tenant_id: str
    event_id: str = Field(description="Sent as `webhook-id`: receivers de-duplicate on it.")
    event_type: str
    event_time: datetime
    url: str
    body: str = Field(description="The public event JSON, sent byte for byte as signed.")
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    next_attempt_at: datetime
    lease: str | None = None
    reason: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None
    log: list[AttemptLog] = Field(default_factory=list)


class DeliveryStore(Protocol):
    async def insert(self, delivery: Delivery) -> bool: ...

    async def get(self, delivery_id: str) -> Delivery | None: ...

    async def list_for_job(self, job_id: str) -> list[Delivery]: ...

    async def claim_due(self, now: datetime, lease_s: float, limit: int) -> list[Delivery]: ...

    async def finish_attempt(
        self,
        delivery_id: str,
        lease: str,
        entry: AttemptLog,
        state: DeliveryState,
        next_attempt_at: datetime | None = None,
        reason: str | None = None,
    ) -> bool: ...

    async def replay(self, delivery_id: str, now: datetime) -> Delivery | None: ...

    async def count_pending(self) -> int: ...
