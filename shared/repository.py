"""The `JobRepository` port: where job state lives.

Contract (the same suite runs against `tests/fakes.FakeJobRepository`,
`shared.pg_repository.PgJobRepository` and `shared.mongo_repository.MongoJobRepository`):

* `create` inserts a job. If the tenant already has a job with the same idempotency key, it
  inserts nothing and returns the existing job with `created=False` (a unique index makes
  this race-free across replicas).
* `transition` moves a job to `target` only if its current state is one from which `target`
  is legal (see `shared.jobs.sources_of`) and, when given, only if its state is in
  `expected`. It applies `changes` in the same atomic single-row update, bumps `version`
  and returns the new job; it returns None when the condition does not hold, which makes
  replayed messages harmless no-ops. N concurrent claimers of one job: exactly one wins.
* `update` applies `changes` (dotted paths allowed, e.g. `attempts.a1.state`) atomically when
  the optional `expected_states` / `expected_version` conditions hold; None otherwise.
  Concurrent updates of different fields never lose one another.
  `attempt_in=(attempt_id, states)` adds "that attempt exists and is in one of `states`", so
  a late writer (a poll answered before the task finished) cannot move an attempt backwards.
  `inc={"spent_usd": x}` adds to a number atomically (no read-modify-write in Python).
* `update(..., index_task=(provider, task_id))` also makes the job findable by that provider
  task (`find_by_task`), for webhook hints and reconciliation.
* `announce` (on `create`, `transition`, `update`): a function of the job after the change
  returning `(topic, event)` pairs. They are stored in the outbox atomically with the change
  and published by the relay (`shared.outbox`); a change that did not happen stores none.
* `claim_queued(limits, batch, at)` moves the oldest due QUEUED jobs of each provider to
  SUBMITTING while their candidates fit in the provider's free slots (`limits` minus
  `inflight_slots`); concurrent claimers never admit one job twice nor exceed a limit
  (PostgreSQL; the others claim job by job with conditional transitions).
* `get` with a tenant id returns None for another tenant's job (callers answer 404).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared.jobs import AttemptState, Job, JobState
from shared.outbox import Announce


@dataclass(frozen=True)
class Created:
    job: Job
    created: bool


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None


class JobRepository(Protocol):
    async def create(self, job: Job, *, announce: Announce | None = None) -> Created: ...

    async def get(self, job_id: str, tenant_id: str | None = None) -> Job | None: ...

    async def find_by_idempotency_key(self, tenant_id: str, key: str) -> Job | None: ...

    async def transition(
        self,
        job_id: str,
        target: JobState,
        changes: dict[str, Any] | None = None,
        *,
        expected: Iterable[JobState] | None = None,
        announce: Announce | None = None,
    ) -> Job | None: ...

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
    ) -> Job | None: ...

    async def claim_queued(
        self, limits: Mapping[str, int], batch: int, at: datetime
    ) -> list[Job]: ...

    async def list_jobs(
        self,
        tenant_id: str,
        *,
        state: JobState | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page: ...

    async def find_stale(
        self, states: Iterable[JobState], updated_before: datetime, limit: int = 100
    ) -> list[Job]: ...

    async def find_by_task(self, provider: str, task_id: str) -> Job | None: ...

    async def count_by_state(self, states: Iterable[JobState]) -> dict[JobState, int]:
        """How many jobs are in each of `states` (one read of the store)."""
        ...

    async def count_active(self, tenant_id: str, limit: int) -> int:
        """How many of `tenant_id`'s jobs are not in a terminal state, counting at most `limit`
        (the caller only needs to know whether a cap is reached)."""
        ...

    async def next_queued(self, provider: str | None, limit: int, at: datetime) -> list[Job]:
        """QUEUED jobs (of `provider`, or of every provider when None), oldest `queued_at`
        first, skipping those whose `not_before` is later than `at`."""
        ...

    async def count_queued_before(self, provider: str, queued_at: datetime) -> int:
        """How many QUEUED jobs for `provider` joined the queue before `queued_at`."""
        ...

    async def with_active_tasks(self, provider: str, limit: int = 100_000) -> list[Job]:
        """Active jobs whose current route entry is on `provider` (pollers resume these)."""
        ...

    async def inflight_slots(self) -> dict[str, int]:
        """Provider slots in use, per provider: candidates of jobs in SUBMITTING, RUNNING,
        STORING or SCORING (a multi-candidate job stores and scores while others render)."""
        ...


async def claim_one_by_one(
    repo: JobRepository, limits: Mapping[str, int], batch: int, at: datetime
) -> list[Job]:
    """`claim_queued` for stores without row locks: read the queue and the slots in use, then
    claim each job with a conditional transition (one winner per job; two replicas admitting
    at the same moment can together exceed a limit by what the other claimed meanwhile)."""
    waiting = await repo.next_queued(None, batch, at=at)
    if not waiting:
        return []
    in_use = await repo.inflight_slots()
    free = {p: limits.get(p, 0) - in_use.get(p, 0) for p in limits}
    taken: set[str] = set()
    claimed: list[Job] = []
    for job in waiting:
        provider = job.active_provider or ""
        need = job.request.candidates
        # An idle provider takes one job larger than its whole limit (else it would wait forever).
        oversize_ok = in_use.get(provider, 0) == 0 and provider not in taken
        if free.get(provider, 0) < need and not (oversize_ok and free.get(provider, 0) > 0):
            free[provider] = 0  # strict FIFO per provider: nothing jumps this job
            continue
        moved = await repo.transition(
            job.job_id, JobState.SUBMITTING, {"not_before": None}, expected=[JobState.QUEUED]
        )
        if moved is not None:
            free[provider] = free.get(provider, 0) - need
            taken.add(provider)
            claimed.append(moved)
    return claimed


def to_document(job: Job) -> dict[str, Any]:
    doc = job.model_dump(mode="python")
    doc["_id"] = doc.pop("job_id")
    doc["request"] = job.request.model_dump(mode="json")
    doc["task_ids"] = [
        task_key(a.task.provider, a.task.task_id) for a in job.attempts.values() if a.task
    ]
    # One unique index covers idempotency: jobs without a key get a key no one else can have.
    doc["idem"] = f"{job.tenant_id}:{job.idempotency_key}" if job.idempotency_key else job.job_id
    safe: dict[str, Any] = _json_safe(doc)
    return safe


def task_key(provider: str, task_id: str) -> str:
    return f"{provider}:{task_id}"


def from_document(doc: dict[str, Any]) -> Job:
    data = dict(doc)
    data["job_id"] = data.pop("_id")
    data.pop("task_ids", None)
    data.pop("idem", None)
    return Job.model_validate(data)


def encode_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Pydantic values inside a change set become plain BSON-able values."""
    return {k: _json_safe(_dump(v)) for k, v in changes.items()}


def _dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="python")
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def _json_safe(value: Any) -> Any:
    """Enums become their values and tuples lists; datetimes stay (BSON dates)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "value") and isinstance(value.value, str):
        return value.value
    if hasattr(value, "__str__") and type(value).__name__ in {"HttpUrl", "Url", "AnyUrl"}:
        return str(value)
    return value
