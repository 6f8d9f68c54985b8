"""`MongoJobRepository`: the job store on MongoDB (or a compatible server) via PyMongo async.

Only single-document atomic operations, unique indexes and simple queries are used, so the
same code runs on MongoDB and on FerretDB (no transactions, no change streams, no
aggregation pipelines in updates). Queries over several states run as one equality query per
state: FerretDB's SQLite backend pushes a top-level equality down to an index but evaluates
`$in` by scanning the whole collection, which made every admission round and sweep a scan.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from shared.errors import DependencyUnavailable
from shared.jobs import ACTIVE_TASK_STATES, AttemptState, Job, JobState, now, sources_of
from shared.repository import Created, Page, encode_changes, from_document, task_key, to_document


class MongoJobRepository:
    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._jobs = collection

    @classmethod
    def from_client(
        cls, client: AsyncMongoClient[dict[str, Any]], database: str
    ) -> MongoJobRepository:
        return cls(client[database]["jobs"])

    async def ensure_indexes(self) -> None:
        try:
            await self._jobs.create_index([("idem", ASCENDING)], unique=True, name="idem_unique")
            await self._jobs.create_index(
                [("tenant_id", ASCENDING), ("created_at", ASCENDING)], name="tenant_created"
            )
            await self._jobs.create_index([("state", ASCENDING)], name="state")
            await self._jobs.create_index([("state", ASCENDING), ("updated_at", ASCENDING)])
            await self._jobs.create_index([("task_ids", ASCENDING)], name="task_ids")
            await self._jobs.create_index(
                [("state", ASCENDING), ("active_provider", ASCENDING), ("queued_at", ASCENDING)],
                name="provider_queue",
            )
        except PyMongoError as exc:
            raise DependencyUnavailable("mongodb", str(exc)) from exc

    async def create(self, job: Job) -> Created:
        try:
            await self._jobs.insert_one(to_document(job))
            return Created(job, True)
        except DuplicateKeyError:
            assert job.idempotency_key is not None
            existing = await self.find_by_idempotency_key(job.tenant_id, job.idempotency_key)
            if existing is None:  # deleted between the insert and the read: vanishingly rare
                raise
            return Created(existing, False)

    async def get(self, job_id: str, tenant_id: str | None = None) -> Job | None:
        # `{_id}` alone, the tenant checked here: FerretDB's SQLite backend uses its `_id` index
        # only for a filter that is exactly `{_id: <string>}` and scans for anything more.
        doc = await self._jobs.find_one({"_id": job_id})
        if doc is None or (tenant_id is not None and doc.get("tenant_id") != tenant_id):
            return None
        return from_document(doc)

    async def find_by_idempotency_key(self, tenant_id: str, key: str) -> Job | None:
        doc = await self._jobs.find_one({"idem": f"{tenant_id}:{key}"})
        return from_document(doc) if doc else None

    async def transition(
        self,
        job_id: str,
        target: JobState,
        changes: dict[str, Any] | None = None,
        *,
        expected: Iterable[JobState] | None = None,
    ) -> Job | None:
        allowed = set(sources_of(target))
        if expected is not None:
            allowed &= set(expected)
        updates = {**(changes or {}), "state": target}
        return await self.update(job_id, updates, expected_states=allowed)

    async def update(
        self,
        job_id: str,
        changes: dict[str, Any],
        *,
        expected_states: Iterable[JobState] | None = None,
        expected_version: int | None = None,
        index_task: tuple[str, str] | None = None,
        attempt_in: tuple[str, Iterable[AttemptState]] | None = None,
    ) -> Job | None:
        query: dict[str, Any] = {"_id": job_id}
        if expected_states is not None:
            query["state"] = {"$in": [s.value for s in expected_states]}
        if expected_version is not None:
            query["version"] = expected_version
        if attempt_in is not None:
            attempt_id, states = attempt_in
            query[f"attempts.{attempt_id}.state"] = {"$in": [s.value for s in states]}
        update: dict[str, Any] = {
            "$set": {**encode_changes(changes), "updated_at": now()},
            "$inc": {"version": 1},
        }
        if index_task is not None:
            update["$addToSet"] = {"task_ids": task_key(*index_task)}
        doc = await self._jobs.find_one_and_update(
            query, update, return_document=ReturnDocument.AFTER
        )
        return from_document(doc) if doc else None

    async def list_jobs(
        self,
        tenant_id: str,
        *,
        state: JobState | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        query: dict[str, Any] = {"tenant_id": tenant_id}
        if state is not None:
            query["state"] = state.value
        if cursor:
            created_at, job_id = _decode_cursor(cursor)
            query["$or"] = [
                {"created_at": {"$lt": created_at}},
                {"created_at": created_at, "_id": {"$lt": job_id}},
            ]
        found = self._jobs.find(query).sort([("created_at", -1), ("_id", -1)]).limit(limit + 1)
        jobs = [from_document(d) async for d in found]
        more = len(jobs) > limit
        jobs = jobs[:limit]
        return Page(jobs, _encode_cursor(jobs[-1]) if more and jobs else None)

    async def find_stale(
        self, states: Iterable[JobState], updated_before: datetime, limit: int = 100
    ) -> list[Job]:
        found: list[Job] = []
        for state in states:
            query = {"state": state.value, "updated_at": {"$lt": updated_before}}
            found += [from_document(d) async for d in self._jobs.find(query).limit(limit)]
        return found[:limit]

    async def find_by_task(self, provider: str, task_id: str) -> Job | None:
        doc = await self._jobs.find_one({"task_ids": task_key(provider, task_id)})
        return from_document(doc) if doc else None

    async def count_by_state(self, states: Iterable[JobState]) -> dict[JobState, int]:
        counts: dict[JobState, int] = {}
        for state in states:
            found = self._jobs.find({"state": state.value}, projection={"_id": 1})
            counts[state] = len([1 async for _ in found])
        return counts

    async def next_queued(self, provider: str | None, limit: int, at: datetime) -> list[Job]:
        query: dict[str, Any] = {"state": JobState.QUEUED.value}  # a pushed-down equality
        if provider is not None:
            query["active_provider"] = provider
        found = self._jobs.find(query).sort([("queued_at", 1), ("_id", 1)]).limit(limit * 2)
        jobs = [from_document(d) async for d in found]
        return [j for j in jobs if j.not_before is None or j.not_before <= at][:limit]

    async def count_queued_before(self, provider: str, queued_at: datetime) -> int:
        return await self._jobs.count_documents(
            {
                "state": JobState.QUEUED.value,
                "active_provider": provider,
                "queued_at": {"$lt": queued_at},
            }
        )

    async def with_active_tasks(self, provider: str, limit: int = 100_000) -> list[Job]:
        found: list[Job] = []
        for state in ACTIVE_TASK_STATES:
            query = {"state": state.value, "active_provider": provider}
            found += [from_document(d) async for d in self._jobs.find(query).limit(limit)]
        return found

    async def inflight_slots(self) -> dict[str, int]:
        projection = {"active_provider": 1, "request.candidates": 1}
        slots: dict[str, int] = {}
        for state in (JobState.SUBMITTING, JobState.RUNNING):
            async for doc in self._jobs.find({"state": state.value}, projection=projection):
                name = doc.get("active_provider") or ""
                slots[name] = slots.get(name, 0) + int(doc.get("request", {}).get("candidates", 1))
        return slots


def _encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.job_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), job_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
