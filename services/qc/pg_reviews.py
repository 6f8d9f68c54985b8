"""`PgReviewStore`: the review queue on PostgreSQL (the `reviews` table of migration 3,
`shared.pg_migrations`).

Every read is filtered by tenant; `decide` and `set_refinement` are single conditional
`UPDATE ... RETURNING` statements, so of two concurrent deciders exactly one wins.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.qc.reviews import Refinement, Review, ReviewStatus, decided_changes
from shared.jobs import now
from shared.pg import Pool

_COLUMNS = (
    "id, tenant_id, job_id, attempt_id, candidate, status, feedback, created_at, decided_at,"
    " refinement, doc"
)
# Review fields kept as columns (the rest of the review is the JSONB `doc`).
_IN_COLUMNS = {
    "review_id",
    "tenant_id",
    "job_id",
    "attempt_id",
    "candidate",
    "status",
    "feedback",
    "created_at",
    "decided_at",
    "refinement",
}


def _review_of(row: asyncpg.Record) -> Review:
    data: dict[str, Any] = dict(row["doc"])
    data.update(
        review_id=row["id"],
        tenant_id=row["tenant_id"],
        job_id=row["job_id"],
        attempt_id=row["attempt_id"],
        candidate=row["candidate"],
        status=row["status"],
        feedback=row["feedback"],
        created_at=row["created_at"],
        decided_at=row["decided_at"],
        refinement=row["refinement"],
    )
    return Review.model_validate(data)


class PgReviewStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def ensure_indexes(self) -> None:
        """The table and its indexes come with the migrations (`shared.pg.migrate`)."""

    async def add(self, review: Review) -> bool:
        refinement = review.refinement.model_dump(mode="json") if review.refinement else None
        inserted = await self._pool.fetchval(
            f"INSERT INTO reviews ({_COLUMNS}, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $8)"
            " ON CONFLICT DO NOTHING RETURNING id",
            review.review_id,
            review.tenant_id,
            review.job_id,
            review.attempt_id,
            review.candidate,
            review.status.value,
            review.feedback,
            review.created_at,
            review.decided_at,
            refinement,
            review.model_dump(mode="json", exclude=_IN_COLUMNS),
        )
        return inserted is not None

    async def get(self, review_id: str, tenant_id: str) -> Review | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM reviews WHERE id = $1 AND tenant_id = $2",
            review_id,
            tenant_id,
        )
        return _review_of(row) if row else None

    async def find(
        self, tenant_id: str, status: ReviewStatus | None = None, limit: int = 100
    ) -> list[Review]:
        """The tenant's reviews newest first (of one status, or all)."""
        if status is None:
            rows = await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM reviews WHERE tenant_id = $1"
                " ORDER BY created_at DESC, id LIMIT $2",
                tenant_id,
                limit,
            )
        else:
            rows = await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM reviews WHERE tenant_id = $1 AND status = $2"
                " ORDER BY created_at DESC, id LIMIT $3",
                tenant_id,
                status.value,
                limit,
            )
        return [_review_of(r) for r in rows]

    async def list_for_job(self, job_id: str, tenant_id: str) -> list[Review]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM reviews WHERE job_id = $1 AND tenant_id = $2"
            " ORDER BY candidate, id",
            job_id,
            tenant_id,
        )
        return [_review_of(r) for r in rows]

    async def decide(
        self, review_id: str, tenant_id: str, status: ReviewStatus, feedback: str | None
    ) -> Review | None:
        changes = decided_changes(status, feedback)
        row = await self._pool.fetchrow(
            "UPDATE reviews SET status = $3, feedback = $4, decided_at = $5, updated_at = $5"
            " WHERE id = $1 AND tenant_id = $2 AND status = 'pending'"
            f" RETURNING {_COLUMNS}",
            review_id,
            tenant_id,
            changes["status"],
            changes["feedback"],
            changes["decided_at"],
        )
        return _review_of(row) if row else None

    async def set_refinement(self, review_id: str, refinement: Refinement) -> Review | None:
        row = await self._pool.fetchrow(
            "UPDATE reviews SET refinement = $2, updated_at = $3"
            " WHERE id = $1 AND refinement IS NULL"
            f" RETURNING {_COLUMNS}",
            review_id,
            refinement.model_dump(mode="json"),
            now(),
        )
        return _review_of(row) if row else None
