"""Intake's own I/O: the replay guard of the webhook ingress, in the job store's database.

`WebhookIds.remember(provider, webhook_id, expires_at, now)` records a Standard Webhooks id
and answers True the first time; while the record lives (until `expires_at`) the same id
answers False, so a captured, correctly signed webhook cannot be replayed within the
signature's timestamp tolerance. After `expires_at` the timestamp check refuses the replay,
so the record may go. Every intake replica shares the record (the job store's database).
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any, Protocol

from shared.pg import Pool

PURGE_EVERY = 200  # remembers between two deletions of expired ids


class WebhookIds(Protocol):
    async def remember(
        self, provider: str, webhook_id: str, expires_at: datetime, now: datetime
    ) -> bool:
        """True if this id was not seen (or its record had expired); records it either way."""
        ...


class PgWebhookIds:
    """Table `webhook_ids` (migration 4): one conditional upsert per webhook."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._calls = 0

    async def remember(
        self, provider: str, webhook_id: str, expires_at: datetime, now: datetime
    ) -> bool:
        self._calls += 1
        async with self._pool.acquire() as conn:
            if self._calls % PURGE_EVERY == 0:
                await conn.execute("DELETE FROM webhook_ids WHERE expires_at < $1", now)
            row = await conn.fetchrow(
                "INSERT INTO webhook_ids (provider, webhook_id, expires_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (provider, webhook_id) DO UPDATE SET expires_at = EXCLUDED.expires_at"
                " WHERE webhook_ids.expires_at < $4 RETURNING 1",
                provider,
                webhook_id,
                expires_at,
                now,
            )
        return row is not None


class MongoWebhookIds:
    """Collection `webhook_ids`, `_id` = provider + id, so the unique `_id` decides; a TTL
    index on `expires_at` removes old records where the server supports it."""

    def __init__(self, collection: Any) -> None:
        self._col = collection
        self._indexed = False

    async def remember(
        self, provider: str, webhook_id: str, expires_at: datetime, now: datetime
    ) -> bool:
        from pymongo import ReturnDocument
        from pymongo.errors import DuplicateKeyError, OperationFailure

        if not self._indexed:
            # A server without TTL indexes keeps expired ids: harmless, they are re-taken.
            with contextlib.suppress(OperationFailure):
                await self._col.create_index("expires_at", expireAfterSeconds=0)
            self._indexed = True
        key = f"{provider}\x1f{webhook_id}"
        try:
            await self._col.insert_one({"_id": key, "expires_at": expires_at})
            return True
        except DuplicateKeyError:
            taken = await self._col.find_one_and_update(
                {"_id": key, "expires_at": {"$lt": now}},
                {"$set": {"expires_at": expires_at}},
                return_document=ReturnDocument.AFTER,
            )
            return taken is not None
