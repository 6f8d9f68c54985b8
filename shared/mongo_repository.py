"""`MongoJobRepository`: the job store on MongoDB via PyMongo async.

Every write is one single-document atomic operation: a conditional `find_one_and_update`
(concurrent claimers of one job get one winner, concurrent writers of different fields lose
nothing, `inc` is a server-side `$inc`), plus a unique index for idempotency keys. No
transactions, change streams or pipeline updates are used.

Announced writes keep their events in the job document itself (the `outbox` array, with
`has_outbox: true` while it is not empty), pushed by the same update that makes the change.
The events are a function of the job *after* the change, so an announced write is a
compare-and-set: read the job, apply the change in Python, build the events, then write
`{_id, version: v, <conditions>}`; when another writer moved the version in between, read
again and retry (or return None if the conditions no longer hold). `shared.mongo_outbox`
publishes and removes the stored events.

This needs a server whose single-document updates are atomic: MongoDB. FerretDB v1 speaks
the wire protocol but is not atomic (concurrent conditional updates both win, concurrent
updates lose writes: FerretDB#3040), so `check_atomic_server` refuses it unless explicitly
allowed for local wire-level tests.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import bson
from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from shared.errors import ConfigurationError, DependencyUnavailable
from shared.jobs import (
    ACTIVE_TASK_STATES,
    TERMINAL_STATES,
    AttemptState,
    Job,
    JobState,
    now,
    sources_of,
)
from shared.outbox import Announce, OutboxEvent, outbox_events
from shared.repository import (
    Created,
    Page,
    claim_one_by_one,
    encode_changes,
    from_document,
    task_key,
    to_document,
)

log = logging.getLogger(__name__)

# The stored events are the relay's business: job reads leave them out (`find_one_and_update`
# returns them, as FerretDB v1 rejects a projection there; `_job` drops them).
OUTBOX_FIELD = "outbox"
PENDING_FIELD = "has_outbox"
_NO_OUTBOX = {OUTBOX_FIELD: 0, PENDING_FIELD: 0}
# Announced writes retry while other writers keep moving the job's version.
MAX_CAS_ATTEMPTS = 20

NON_ATOMIC_FERRETDB_V1 = (
    "FerretDB v1 is not atomic: it does not make single-document updates atomic "
    "(concurrent conditional updates double-win and lose writes); use MongoDB, or PostgreSQL "
    "(the default); ALLOW_NON_ATOMIC_STORE=1 only for local wire tests"
)


class WriteContention(RuntimeError):
    """An announced write lost the compare-and-set race `MAX_CAS_ATTEMPTS` times in a row."""


class MongoJobRepository:
    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._jobs = collection

    @classmethod
    def from_client(
        cls, client: AsyncMongoClient[dict[str, Any]], database: str
    ) -> MongoJobRepository:
        return cls(client[database]["jobs"])

    @property
    def collection(self) -> AsyncCollection[dict[str, Any]]:
        """The `jobs` collection (the outbox relay reads the same documents)."""
        return self._jobs

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
            await self._jobs.create_index(
                [("state", ASCENDING), ("queued_at", ASCENDING), ("_id", ASCENDING)],
                name="queue",
            )
            # Only documents with pending events have the field: the relay's index stays small.
            await self._jobs.create_index(
                [(PENDING_FIELD, ASCENDING)], sparse=True, name="outbox_pending"
            )
        except PyMongoError as exc:
            raise DependencyUnavailable("mongodb", str(exc)) from exc

    # -- writes ---------------------------------------------------------------------------

    async def create(self, job: Job, *, announce: Announce | None = None) -> Created:
        doc = to_document(job)
        events = outbox_events(announce, job)
        if events:
            doc[OUTBOX_FIELD] = [_event_doc(e, now()) for e in events]
            doc[PENDING_FIELD] = True
        try:
            await self._jobs.insert_one(doc)
            return Created(job, True)
        except DuplicateKeyError:
            assert job.idempotency_key is not None
            existing = await self.find_by_idempotency_key(job.tenant_id, job.idempotency_key)
            if existing is None:  # deleted between the insert and the read: vanishingly rare
                raise
            return Created(existing, False)

    async def transition(
        self,
        job_id: str,
        target: JobState,
        changes: dict[str, Any] | None = None,
        *,
        expected: Iterable[JobState] | None = None,
        announce: Announce | None = None,
    ) -> Job | None:
        allowed = set(sources_of(target))
        if expected is not None:
            allowed &= set(expected)
        updates = {**(changes or {}), "state": target}
        return await self.update(job_id, updates, expected_states=allowed, announce=announce)

    async def update(
        self,
        job_id: str,
        changes: dict[str, Any],
        *,
        expected_states: Iterable[JobState] | None = None,
        expected_version: int | None = None,
        index_task: tuple[str, str] | None = None,
        attempt_in: tuple[str, Iterable[AttemptState]] | None = None,
        inc: Mapping[str, float] | None = None,
        announce: Announce | None = None,
    ) -> Job | None:
        states = None if expected_states is None else [s.value for s in expected_states]
        attempt = None
        if attempt_in is not None:
            attempt = (attempt_in[0], [s.value for s in attempt_in[1]])
        query: dict[str, Any] = {"_id": job_id}
        if states is not None:
            query["state"] = {"$in": states}
        if expected_version is not None:
            query["version"] = expected_version
        if attempt is not None:
            query[f"attempts.{attempt[0]}.state"] = {"$in": attempt[1]}
        encoded = encode_changes(changes)
        deltas = dict(inc or {})
        index_key = task_key(*index_task) if index_task is not None else None
        if announce is None:
            update = _update_doc(encoded, _now_ms(), deltas, index_key, [])
            doc = await self._jobs.find_one_and_update(
                query, update, return_document=ReturnDocument.AFTER
            )
            return _job(doc) if doc else None

        def holds(current: Mapping[str, Any]) -> bool:
            if states is not None and current.get("state") not in states:
                return False
            if expected_version is not None and current.get("version") != expected_version:
                return False
            if attempt is not None:
                found = (current.get("attempts") or {}).get(attempt[0])
                if not isinstance(found, dict) or found.get("state") not in attempt[1]:
                    return False
            return True

        return await self._compare_and_set(query, holds, encoded, deltas, index_key, announce)

    async def _compare_and_set(
        self,
        query: dict[str, Any],
        holds: Callable[[Mapping[str, Any]], bool],
        changes: dict[str, Any],
        inc: dict[str, float],
        index_key: str | None,
        announce: Announce,
    ) -> Job | None:
        """An announced write: the events are built from the job after the change, and stored
        by the very update that makes the change, guarded by the version that was read."""
        job_id = query["_id"]
        for attempt in range(MAX_CAS_ATTEMPTS):
            current = await self._jobs.find_one({"_id": job_id}, projection=_NO_OUTBOX)
            if current is None or not holds(current):
                return None  # the change does not happen: no events either
            at = _now_ms()
            after = self._apply(current, changes, at, inc, index_key)
            events = outbox_events(announce, _job(after))
            update = _update_doc(changes, at, inc, index_key, events)
            guarded = {**query, "version": current["version"]}
            doc = await self._jobs.find_one_and_update(
                guarded, update, return_document=ReturnDocument.AFTER
            )
            if doc is not None:
                return _job(doc)
            # Someone else wrote in between: re-read (the conditions may no longer hold).
            await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise WriteContention(
            f"job {job_id}: announced update lost {MAX_CAS_ATTEMPTS} compare-and-set races"
        )

    def _apply(
        self,
        current: Mapping[str, Any],
        changes: dict[str, Any],
        at: datetime,
        inc: dict[str, float],
        index_key: str | None,
    ) -> dict[str, Any]:
        """The document after `_update_doc(...)`, computed here, as the server will store it."""
        after = copy.deepcopy(dict(current))
        for path, value in {**changes, "updated_at": at}.items():
            _set_path(after, path, value)
        for path, delta in inc.items():
            _set_path(after, path, _get_number(after, path) + delta)
        after["version"] = current["version"] + 1
        task_ids = after.setdefault("task_ids", [])
        if index_key is not None and index_key not in task_ids:
            task_ids.append(index_key)
        # Through BSON and back: datetimes at millisecond precision, the collection's codecs.
        options = self._jobs.codec_options
        decoded: dict[str, Any] = bson.decode(bson.encode(after, codec_options=options), options)
        return decoded

    async def claim_queued(self, limits: Mapping[str, int], batch: int, at: datetime) -> list[Job]:
        return await claim_one_by_one(self, limits, batch, at)

    # -- reads ----------------------------------------------------------------------------

    async def get(self, job_id: str, tenant_id: str | None = None) -> Job | None:
        query: dict[str, Any] = {"_id": job_id}
        if tenant_id is not None:
            query["tenant_id"] = tenant_id
        doc = await self._jobs.find_one(query, projection=_NO_OUTBOX)
        return _job(doc) if doc else None

    async def find_by_idempotency_key(self, tenant_id: str, key: str) -> Job | None:
        doc = await self._jobs.find_one({"idem": f"{tenant_id}:{key}"}, projection=_NO_OUTBOX)
        return _job(doc) if doc else None

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
        found = (
            self._jobs.find(query, projection=_NO_OUTBOX)
            .sort([("created_at", -1), ("_id", -1)])
            .limit(limit + 1)
        )
        jobs = [_job(d) async for d in found]
        more = len(jobs) > limit
        jobs = jobs[:limit]
        return Page(jobs, _encode_cursor(jobs[-1]) if more and jobs else None)

    async def find_stale(
        self, states: Iterable[JobState], updated_before: datetime, limit: int = 100
    ) -> list[Job]:
        """Oldest update first across all `states`, so no state starves the others."""
        query = {"state": {"$in": [s.value for s in states]}, "updated_at": {"$lt": updated_before}}
        found = (
            self._jobs.find(query, projection=_NO_OUTBOX)
            .sort([("updated_at", 1), ("_id", 1)])
            .limit(limit)
        )
        return [_job(d) async for d in found]

    async def find_by_task(self, provider: str, task_id: str) -> Job | None:
        doc = await self._jobs.find_one(
            {"task_ids": task_key(provider, task_id)}, projection=_NO_OUTBOX
        )
        return _job(doc) if doc else None

    async def count_by_state(self, states: Iterable[JobState]) -> dict[JobState, int]:
        wanted = list(states)
        counts = dict.fromkeys(wanted, 0)
        pipeline: list[dict[str, Any]] = [
            {"$match": {"state": {"$in": [s.value for s in wanted]}}},
            {"$group": {"_id": "$state", "n": {"$sum": 1}}},
        ]
        async for row in await self._jobs.aggregate(pipeline):
            counts[JobState(row["_id"])] = int(row["n"])
        return counts

    async def count_active(self, tenant_id: str, limit: int) -> int:
        query = {"tenant_id": tenant_id, "state": {"$nin": [s.value for s in TERMINAL_STATES]}}
        return int(await self._jobs.count_documents(query, limit=limit))

    async def next_queued(self, provider: str | None, limit: int, at: datetime) -> list[Job]:
        query: dict[str, Any] = {
            "state": JobState.QUEUED.value,
            "$or": [{"not_before": None}, {"not_before": {"$lte": at}}],
        }
        if provider is not None:
            query["active_provider"] = provider
        found = (
            self._jobs.find(query, projection=_NO_OUTBOX)
            .sort([("queued_at", 1), ("_id", 1)])
            .limit(limit)
        )
        return [_job(d) async for d in found]

    async def count_queued_before(self, provider: str, queued_at: datetime) -> int:
        return await self._jobs.count_documents(
            {
                "state": JobState.QUEUED.value,
                "active_provider": provider,
                "queued_at": {"$lt": queued_at},
            }
        )

    async def with_active_tasks(self, provider: str, limit: int = 100_000) -> list[Job]:
        query = {
            "state": {"$in": [s.value for s in ACTIVE_TASK_STATES]},
            "active_provider": provider,
        }
        found = self._jobs.find(query, projection=_NO_OUTBOX).limit(limit)
        return [_job(d) async for d in found]

    async def inflight_slots(self) -> dict[str, int]:
        busy = [state.value for state in ACTIVE_TASK_STATES]
        pipeline: list[dict[str, Any]] = [
            {"$match": {"state": {"$in": busy}}},
            {"$group": {"_id": "$active_provider", "n": {"$sum": "$request.candidates"}}},
        ]
        slots: dict[str, int] = {}
        async for row in await self._jobs.aggregate(pipeline):
            name = row["_id"] or ""
            slots[name] = slots.get(name, 0) + int(row["n"])
        return slots


# -- the server check -----------------------------------------------------------------------


def ferretdb_version(build_info: Mapping[str, Any]) -> str | None:
    """The FerretDB version when `buildInfo` comes from FerretDB (which adds `ferretdb` /
    `ferretdbVersion` to the MongoDB-shaped reply); None for MongoDB."""
    nested = build_info.get("ferretdb")
    if isinstance(nested, Mapping) and nested.get("version"):
        return str(nested["version"])
    if build_info.get("ferretdbVersion"):
        return str(build_info["ferretdbVersion"])
    if nested is not None or "ferretdbFeatures" in build_info:
        return "unknown"
    return None


async def check_atomic_server(client: AsyncMongoClient[Any], allow_non_atomic: bool) -> None:
    """Refuse a job store whose single-document updates are not atomic (FerretDB), unless
    `allow_non_atomic` (ALLOW_NON_ATOMIC_STORE=1: local wire-level tests only)."""
    try:
        info = await client.admin.command("buildInfo")
    except PyMongoError as exc:
        raise DependencyUnavailable("mongodb", str(exc)) from exc
    version = ferretdb_version(info)
    if version is None:
        return
    if allow_non_atomic:
        log.warning(
            "job store is FerretDB %s: single-document updates are not atomic; "
            "allowed by ALLOW_NON_ATOMIC_STORE for local tests only",
            version,
        )
        return
    if version.startswith("v1.") or version == "unknown":
        raise ConfigurationError("JOB_STORE_URI", NON_ATOMIC_FERRETDB_V1)
    raise ConfigurationError(
        "JOB_STORE_URI",
        f"FerretDB {version}: single-document atomicity is not verified for this store "
        "(FerretDB v1 is not atomic); use MongoDB, or PostgreSQL (the default); "
        "ALLOW_NON_ATOMIC_STORE=1 only for local wire tests",
    )


# -- helpers --------------------------------------------------------------------------------


def _job(doc: Mapping[str, Any]) -> Job:
    data = {k: v for k, v in doc.items() if k not in _NO_OUTBOX}
    return from_document(data)


def _now_ms() -> datetime:
    """Now, at the precision a BSON date keeps (the job after the change is computed locally)."""
    at = now()
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _event_doc(event: OutboxEvent, at: datetime) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "topic": event.topic,
        "key": event.key,
        "headers": dict(event.headers),
        "payload": event.payload,
        "at": at,
    }


def _update_doc(
    changes: dict[str, Any],
    at: datetime,
    inc: Mapping[str, float],
    index_key: str | None,
    events: list[OutboxEvent],
) -> dict[str, Any]:
    update: dict[str, Any] = {
        "$set": {**changes, "updated_at": at},
        "$inc": {"version": 1, **inc},
    }
    if index_key is not None:
        update["$addToSet"] = {"task_ids": index_key}
    if events:
        update["$push"] = {OUTBOX_FIELD: {"$each": [_event_doc(e, at) for e in events]}}
        update["$set"][PENDING_FIELD] = True
    return update


def _set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """`$set` of a dotted path: missing parents become embedded documents."""
    *parents, leaf = path.split(".")
    for part in parents:
        child = doc.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"cannot set {path!r}: {part!r} is not a document")
        doc = child
    doc[leaf] = value


def _get_number(doc: Mapping[str, Any], path: str) -> float:
    """The number at a dotted path; a missing field counts as 0 (as `$inc` does)."""
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return 0
    if not isinstance(value, (int, float)):
        raise ValueError(f"cannot increment {path!r}: {value!r} is not a number")
    return value


def _encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.job_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), job_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
