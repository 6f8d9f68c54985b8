"""In-memory fakes of the ports, checked by the same contract suites as the real adapters."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from shared.blobstore import BlobInfo, BlobNotFound, PutResult
from shared.events import ALL_EVENTS, Envelope
from shared.jobs import AttemptState, Job, JobState, now, sources_of
from shared.outbox import Announce
from shared.repository import (
    Created,
    Page,
    claim_one_by_one,
    encode_changes,
    from_document,
    task_key,
    to_document,
)

ANY_EVENT: TypeAdapter[Any] = TypeAdapter(
    Annotated[Union[*ALL_EVENTS], Field(discriminator="type")]
)


class FakeJobRepository:
    """Atomic by construction (no await between a condition and its write). `outbox` holds
    the announced events in order; each `relay_to` sink gets them as they are announced, as
    the relay would publish them."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.outbox: list[tuple[str, Envelope]] = []
        self.sinks: list[Callable[[str, Envelope], None]] = []

    def relay_to(self, sink: Callable[[str, Envelope], None]) -> None:
        self.sinks.append(sink)

    def announced(self, topic: str | None = None) -> list[Envelope]:
        return [e for t, e in self.outbox if topic is None or t == str(topic)]

    def _announce(self, announce: Announce | None, job: Job) -> None:
        if announce is not None:
            for topic, event in announce(job):
                self.outbox.append((str(topic), event))
                for sink in self.sinks:
                    sink(str(topic), event)

    async def create(self, job: Job, *, announce: Announce | None = None) -> Created:
        doc = to_document(job)
        for existing in self.docs.values():
            if existing["idem"] == doc["idem"]:
                return Created(from_document(existing), False)
        self.docs[job.job_id] = doc
        self._announce(announce, job)
        return Created(job, True)

    async def get(self, job_id: str, tenant_id: str | None = None) -> Job | None:
        doc = self.docs.get(job_id)
        if doc is None or (tenant_id is not None and doc["tenant_id"] != tenant_id):
            return None
        return from_document(doc)

    async def find_by_idempotency_key(self, tenant_id: str, key: str) -> Job | None:
        for doc in self.docs.values():
            if doc["idem"] == f"{tenant_id}:{key}":
                return from_document(doc)
        return None

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
        return await self.update(
            job_id, {**(changes or {}), "state": target}, expected_states=allowed, announce=announce
        )

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
        doc = self.docs.get(job_id)
        if doc is None:
            return None
        if attempt_in is not None:
            attempt = doc.get("attempts", {}).get(attempt_in[0])
            if attempt is None or attempt.get("state") not in {s.value for s in attempt_in[1]}:
                return None
        if expected_states is not None and doc["state"] not in {s.value for s in expected_states}:
            return None
        if expected_version is not None and doc["version"] != expected_version:
            return None
        for path, value in {**encode_changes(changes), "updated_at": now()}.items():
            _set_path(doc, path, value)
        for path, delta in (inc or {}).items():
            _set_path(doc, path, round(_get_path(doc, path) + delta, 6))
        doc["version"] += 1
        if index_task is not None and task_key(*index_task) not in doc["task_ids"]:
            doc["task_ids"].append(task_key(*index_task))
        job = from_document(doc)
        self._announce(announce, job)
        return job

    async def claim_queued(self, limits: Mapping[str, int], batch: int, at: datetime) -> list[Job]:
        return await claim_one_by_one(self, limits, batch, at)

    async def list_jobs(
        self,
        tenant_id: str,
        *,
        state: JobState | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        docs = sorted(
            (
                d
                for d in self.docs.values()
                if d["tenant_id"] == tenant_id and (state is None or d["state"] == state.value)
            ),
            key=lambda d: (d["created_at"], d["_id"]),
            reverse=True,
        )
        start = 0
        if cursor:
            ids = [d["_id"] for d in docs]
            if cursor not in ids:
                raise ValueError("invalid cursor")
            start = ids.index(cursor) + 1
        page = docs[start : start + limit]
        more = start + limit < len(docs)
        return Page([from_document(d) for d in page], page[-1]["_id"] if more and page else None)

    async def find_stale(
        self, states: Iterable[JobState], updated_before: datetime, limit: int = 100
    ) -> list[Job]:
        wanted = {s.value for s in states}
        return [
            from_document(d)
            for d in self.docs.values()
            if d["state"] in wanted and d["updated_at"] < updated_before
        ][:limit]

    async def find_by_task(self, provider: str, task_id: str) -> Job | None:
        for doc in self.docs.values():
            if task_key(provider, task_id) in doc["task_ids"]:
                return from_document(doc)
        return None

    async def count_by_state(self, states: Iterable[JobState]) -> dict[JobState, int]:
        counts = dict.fromkeys(states, 0)
        for doc in self.docs.values():
            state = JobState(doc["state"])
            if state in counts:
                counts[state] += 1
        return counts

    async def count_active(self, tenant_id: str, limit: int) -> int:
        active = [
            d
            for d in self.docs.values()
            if d["tenant_id"] == tenant_id and not JobState(d["state"]).terminal
        ]
        return min(len(active), limit)

    async def next_queued(self, provider: str | None, limit: int, at: datetime) -> list[Job]:
        docs = [
            d
            for d in self.docs.values()
            if d["state"] == "queued"
            and provider in (None, d["active_provider"])
            and (d["not_before"] is None or d["not_before"] <= at)
        ]
        docs.sort(key=lambda d: (d["queued_at"], d["_id"]))
        return [from_document(d) for d in docs[:limit]]

    async def count_queued_before(self, provider: str, queued_at: datetime) -> int:
        return sum(
            1
            for d in self.docs.values()
            if d["state"] == "queued"
            and d["active_provider"] == provider
            and d["queued_at"] < queued_at
        )

    async def with_active_tasks(self, provider: str, limit: int = 100_000) -> list[Job]:
        states = {"submitting", "running", "storing", "scoring"}
        return [
            from_document(d)
            for d in self.docs.values()
            if d["state"] in states and d["active_provider"] == provider
        ][:limit]

    async def inflight_slots(self) -> dict[str, int]:
        slots: dict[str, int] = {}
        for d in self.docs.values():
            if d["state"] in ("submitting", "running", "storing", "scoring"):
                name = d["active_provider"] or ""
                slots[name] = slots.get(name, 0) + d["request"]["candidates"]
        return slots


async def pg_outbox(pool: Any, job_id: str) -> list[tuple[str, Envelope]]:
    """The events a PostgreSQL job store holds in its outbox for `job_id`, in order."""
    rows = await pool.fetch("SELECT topic, payload FROM outbox WHERE key = $1 ORDER BY id", job_id)
    return [(r["topic"], ANY_EVENT.validate_json(r["payload"])) for r in rows]


class FakeOutboxRelay:
    """Publishes what a FakeJobRepository announced through a (test) broker, in order."""

    def __init__(self, repo: FakeJobRepository, broker: Any) -> None:
        self.repo, self.broker, self.sent = repo, broker, 0

    async def run_once(self) -> int:
        from shared.messaging import publish

        pending = self.repo.outbox[self.sent :]
        for topic, event in pending:
            await publish(self.broker, topic, event)
        self.sent += len(pending)
        return len(pending)


def _get_path(doc: dict[str, Any], path: str) -> float:
    value: Any = doc
    for part in path.split("."):
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return float(value) if isinstance(value, (int, float)) else 0.0


def _set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[leaf] = value


class FakeBlobStore:
    def __init__(self, bucket: str = "fake") -> None:
        self.bucket = bucket
        self.objects: dict[str, tuple[bytes, str, dict[str, str], datetime]] = {}

    async def ensure_bucket(self) -> None:
        return None

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> PutResult:
        data = b"".join([c async for c in chunks])
        self.objects[key] = (data, content_type, dict(metadata or {}), now())
        return PutResult(key, len(data), hashlib.sha256(data).hexdigest())

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> PutResult:
        async def one() -> AsyncIterator[bytes]:
            yield data

        return await self.put_stream(key, one(), content_type)

    async def get_stream(self, key: str) -> AsyncIterator[bytes]:
        if key not in self.objects:
            raise BlobNotFound(key)
        yield self.objects[key][0]

    async def stat(self, key: str) -> BlobInfo | None:
        if key not in self.objects:
            return None
        data, ctype, meta, modified = self.objects[key]
        return BlobInfo(key, len(data), modified, ctype, meta)

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    async def presigned_get(self, key: str, expires_s: int = 3600) -> str:
        return f"fake://{self.bucket}/{key}?expires={expires_s}"

    async def list_older_than(self, prefix: str, before: datetime) -> list[BlobInfo]:
        return [
            BlobInfo(k, len(v[0]), v[3], v[1], v[2])
            for k, v in self.objects.items()
            if k.startswith(prefix) and v[3] < before
        ]


class CrashAfterCreate(BaseException):
    """The process dies between the provider's answer and its record (a BaseException, as
    a SIGKILL is not something a handler could catch and tidy up after)."""


class FakeVideoProvider:
    """A provider at the edge of the dispatcher's and reconciler's unit tests. `created` is
    what the provider would bill: every task it made, answer delivered or not.

    `findable`: it stores our `external_id`, refuses a second create with the same one and
    finds a task by it (Kling's contract). `lose_answers`: that many creates complete and
    then time out (an ambiguous answer). `crash_after_create`: that many creates complete and
    then the caller's process dies before recording them. `reject`: every create is refused."""

    def __init__(
        self,
        name: str = "kling",
        *,
        findable: bool = True,
        lose_answers: int = 0,
        crash_after_create: int = 0,
        reject: Exception | None = None,
    ) -> None:
        from shared.providers.base import ProviderCapabilities

        self.name = name
        # model_construct: no validation, so this fake also runs against older ports.
        self.capabilities = ProviderCapabilities.model_construct(
            cancel=False,
            delete=False,
            webhooks=False,
            per_request_callback=False,
            find_by_external_id=findable,
        )
        self.findable = findable
        self.lose_answers = lose_answers
        self.crash_after_create = crash_after_create
        self.reject = reject
        self.created: list[tuple[str, str | None]] = []  # (task id, our external id)
        self.lookups = 0

    def _ref(self, task_id: str, model: str) -> Any:
        from shared.providers.base import TaskRef

        return TaskRef(provider=self.name, model=model, task_id=task_id)

    async def submit(self, request: Any, model: str) -> Any:
        from shared.providers.errors import FailureClass, ProviderRejected, ProviderUnavailable

        if self.reject is not None:
            raise self.reject
        if self.findable and any(ext == request.external_id for _, ext in self.created):
            raise ProviderRejected(
                FailureClass.INVALID_INPUT, f"{self.name}: external_task_id already exists"
            )
        task_id = f"task-{len(self.created) + 1}"
        self.created.append((task_id, request.external_id))
        if self.crash_after_create > 0:
            self.crash_after_create -= 1
            raise CrashAfterCreate(task_id)
        if self.lose_answers > 0:
            self.lose_answers -= 1
            lost = ProviderUnavailable(FailureClass.TIMEOUT, f"{self.name}: read timed out")
            lost.outcome_unknown = True  # set after construction: older ports lack the keyword
            raise lost
        return self._ref(task_id, model)

    async def find_created(self, request: Any, model: str) -> Any:
        self.lookups += 1
        for task_id, ext in self.created:
            if self.findable and ext == request.external_id:
                return self._ref(task_id, model)
        return None

    async def status(self, ref: Any) -> Any:
        raise NotImplementedError("the dispatcher and reconciler never poll")

    def download(self, ref: Any, output: Any) -> AsyncIterator[bytes]:
        raise NotImplementedError("the dispatcher and reconciler never download")

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> Any:
        raise NotImplementedError("the dispatcher and reconciler take no webhooks")

    async def cancel(self, ref: Any) -> bool:
        return False

    async def delete(self, ref: Any) -> bool:
        return False


class FakeWebhookIds:
    """In-memory `WebhookIds` (services.intake.adapters): the same promise, checked by state."""

    def __init__(self) -> None:
        self.expiry: dict[tuple[str, str], datetime] = {}

    async def remember(
        self, provider: str, webhook_id: str, expires_at: datetime, now: datetime
    ) -> bool:
        key = (provider, webhook_id)
        if key in self.expiry and self.expiry[key] >= now:
            return False
        self.expiry[key] = expires_at
        return True
