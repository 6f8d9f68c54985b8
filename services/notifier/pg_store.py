"""`PgDeliveryStore`: the delivery store on PostgreSQL (the `deliveries` table of migration 2,
`shared.pg_migrations`).

Every operation is one statement. `claim_due` locks the due rows it takes with `FOR UPDATE
SKIP LOCKED` and stamps each with its own lease token in the same statement, so replicas
claiming together never get the same delivery; `finish_attempt` checks the lease, counts the
attempt and appends to the log in one conditional `UPDATE`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from services.notifier.store import AttemptLog, Delivery, DeliveryState
from shared.pg import Pool

_COLUMNS = (
    "id, job_id, tenant_id, event_id, event_type, event_time, url, body, state, attempts,"
    " next_attempt_at, lease, reason, created_at, delivered_at, log"
)


def _delivery_of(row: asyncpg.Record) -> Delivery:
    return Delivery.model_validate(dict(row))


class PgDeliveryStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def ensure_indexes(self) -> None:
        """The table and its indexes come with the migrations (`shared.pg.migrate`)."""

    async def insert(self, delivery: Delivery) -> bool:
        inserted = await self._pool.fetchval(
            f"INSERT INTO deliveries ({_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            " ON CONFLICT (id) DO NOTHING RETURNING id",
            delivery.id,
            delivery.job_id,
            delivery.tenant_id,
            delivery.event_id,
            delivery.event_type,
            delivery.event_time,
            delivery.url,
            delivery.body,
            delivery.state.value,
            delivery.attempts,
            delivery.next_attempt_at,
            delivery.lease,
            delivery.reason,
            delivery.created_at,
            delivery.delivered_at,
            [entry.model_dump(mode="json") for entry in delivery.log],
        )
        return inserted is not None

    async def get(self, delivery_id: str) -> Delivery | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM deliveries WHERE id = $1", delivery_id
        )
        return _delivery_of(row) if row else None

    async def list_for_job(self, job_id: str) -> list[Delivery]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM deliveries WHERE job_id = $1 ORDER BY created_at, id",
            job_id,
        )
        return [_delivery_of(r) for r in rows]

    async def claim_due(self, now: datetime, lease_s: float, limit: int) -> list[Delivery]:
        """Up to `limit` due pending deliveries, oldest due first, each with a fresh lease.
        Rows another transaction is claiming right now are skipped, not waited for."""
        rows = await self._pool.fetch(
            "WITH due AS MATERIALIZED ("
            "   SELECT id, next_attempt_at FROM deliveries"
            "   WHERE state = 'pending' AND next_attempt_at <= $1"
            "   ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED),"
            " claimed AS ("
            "   UPDATE deliveries AS d SET lease = gen_random_uuid()::text, next_attempt_at = $3"
            "   FROM due WHERE d.id = due.id"
            f"  RETURNING {_prefixed('d')}, due.next_attempt_at AS was_due)"
            f" SELECT {_COLUMNS} FROM claimed ORDER BY was_due, id",
            now,
            limit,
            now + timedelta(seconds=lease_s),
        )
        return [_delivery_of(r) for r in rows]

    async def finish_attempt(
        self,
        delivery_id: str,
        lease: str,
        entry: AttemptLog,
        state: DeliveryState,
        next_attempt_at: datetime | None = None,
        reason: str | None = None,
    ) -> bool:
        row = await self._pool.fetchrow(
            "UPDATE deliveries SET state = $3::text, lease = NULL, reason = $4,"
            " attempts = attempts + 1, log = log || jsonb_build_array($5::jsonb),"
            " next_attempt_at = coalesce($6, next_attempt_at),"
            " delivered_at = CASE WHEN $3::text = 'delivered' THEN $7 ELSE delivered_at END"
            " WHERE id = $1 AND lease = $2 RETURNING id",
            delivery_id,
            lease,
            state.value,
            reason,
            entry.model_dump(mode="json"),
            next_attempt_at,
            entry.at,
        )
        return row is not None

    async def replay(self, delivery_id: str, now: datetime) -> Delivery | None:
        row = await self._pool.fetchrow(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = $2, attempts = 0,"
            " lease = NULL, reason = NULL"
            " WHERE id = $1 AND state IN ('dead', 'delivered')"
            f" RETURNING {_COLUMNS}",
            delivery_id,
            now,
        )
        return _delivery_of(row) if row else None

    async def count_pending(self) -> int:
        n: int = await self._pool.fetchval(
            "SELECT count(*) FROM deliveries WHERE state = 'pending'"
        )
        return n


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in _COLUMNS.split(","))
