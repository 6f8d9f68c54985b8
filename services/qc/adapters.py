"""I/O only the QC service uses: the review queue on MongoDB, and fetching a candidate to a
temporary file (PyAV needs a seekable file; memory stays bounded by the chunk size)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from services.qc.reviews import Refinement, Review, ReviewStatus, decided_changes
from shared.blobstore import BlobStore
from shared.errors import DependencyUnavailable
from shared.jobs import now


class MongoReviewStore:
    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._reviews = collection

    @classmethod
    def from_client(
        cls, client: AsyncMongoClient[dict[str, Any]], database: str, collection: str = "reviews"
    ) -> MongoReviewStore:
        return cls(client[database][collection])

    async def ensure_indexes(self) -> None:
        try:
            await self._reviews.create_index(
                [("job_id", ASCENDING), ("attempt_id", ASCENDING)], unique=True, name="job_attempt"
            )
            await self._reviews.create_index(
                [("tenant_id", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)],
                name="tenant_queue",
            )
        except PyMongoError as exc:
            raise DependencyUnavailable("mongodb", str(exc)) from exc

    async def add(self, review: Review) -> bool:
        try:
            await self._reviews.insert_one(_to_doc(review))
        except DuplicateKeyError:
            return False
        return True

    async def get(self, review_id: str, tenant_id: str) -> Review | None:
        doc = await self._reviews.find_one({"_id": review_id, "tenant_id": tenant_id})
        return _from_doc(doc) if doc else None

    async def find(
        self, tenant_id: str, status: ReviewStatus | None = None, limit: int = 100
    ) -> list[Review]:
        query: dict[str, Any] = {"tenant_id": tenant_id}
        if status is not None:
            query["status"] = status.value
        found = self._reviews.find(query).sort([("created_at", DESCENDING), ("_id", ASCENDING)])
        return [_from_doc(d) async for d in found.limit(limit)]

    async def list_for_job(self, job_id: str, tenant_id: str) -> list[Review]:
        found = self._reviews.find({"job_id": job_id, "tenant_id": tenant_id})
        return [_from_doc(d) async for d in found.sort([("candidate", ASCENDING)])]

    async def decide(
        self, review_id: str, tenant_id: str, status: ReviewStatus, feedback: str | None
    ) -> Review | None:
        doc = await self._reviews.find_one_and_update(
            {"_id": review_id, "tenant_id": tenant_id, "status": ReviewStatus.PENDING.value},
            {"$set": decided_changes(status, feedback)},
            return_document=ReturnDocument.AFTER,
        )
        return _from_doc(doc) if doc else None

    async def set_refinement(self, review_id: str, refinement: Refinement) -> Review | None:
        doc = await self._reviews.find_one_and_update(
            {"_id": review_id, "refinement": None},
            {"$set": {"refinement": refinement.model_dump(mode="python"), "updated_at": now()}},
            return_document=ReturnDocument.AFTER,
        )
        return _from_doc(doc) if doc else None


def _to_doc(review: Review) -> dict[str, Any]:
    doc = review.model_dump(mode="python")
    doc["_id"] = doc.pop("review_id")
    doc["status"] = review.status.value
    return doc


def _from_doc(doc: dict[str, Any]) -> Review:
    data = dict(doc)
    data["review_id"] = data.pop("_id")
    data.pop("updated_at", None)
    return Review.model_validate(data)


@contextlib.asynccontextmanager
async def downloaded(blobs: BlobStore, key: str, work_dir: Path | None) -> AsyncIterator[Path]:
    """The object at `key` as a temporary local file, deleted on exit."""
    fd, name = tempfile.mkstemp(prefix="qc-", suffix=".mp4", dir=work_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in blobs.get_stream(key):
                await asyncio.to_thread(out.write, chunk)
        yield path
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)
