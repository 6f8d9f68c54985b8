"""Retention: delete stored videos and thumbnails older than the retention period.

One pass deletes at most `batch` objects (the next pass continues), then marks the job whose
result video went away with `result_deleted_at`, so intake can answer "expired" instead of
handing out a dead link. The loop sleeps between passes and stops when cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.storage import logic
from shared.blobstore import BlobStore
from shared.jobs import now
from shared.repository import JobRepository

log = logging.getLogger(__name__)


@dataclass
class Retention:
    repo: JobRepository
    blob: BlobStore
    retention: timedelta
    interval_s: float = 3600.0
    batch: int = 500
    clock: Callable[[], datetime] = field(default=now)

    async def run_once(self) -> int:
        """Delete up to `batch` expired objects; returns how many were deleted."""
        at = self.clock()
        expired = await self.blob.list_older_than(logic.VIDEO_PREFIX, at - self.retention)
        deleted = 0
        for info in expired[: self.batch]:
            await self.blob.delete(info.key)
            deleted += 1
            ref = logic.parse_object_key(info.key)
            if ref is not None and ref.is_video:
                await self._mark_job(ref, at)
        if deleted:
            log.info("retention deleted %d objects older than %s", deleted, self.retention)
        return deleted

    async def loop(self) -> None:
        while True:
            deleted = await self.run_once()
            # a full batch means more is waiting: continue soon rather than an interval later
            await asyncio.sleep(1.0 if deleted >= self.batch else self.interval_s)

    async def _mark_job(self, ref: logic.KeyRef, at: datetime) -> None:
        job = await self.repo.get(ref.job_id)
        if job is not None and job.picked_attempt == ref.attempt_id:
            await self.repo.update(ref.job_id, {"result_deleted_at": at})
