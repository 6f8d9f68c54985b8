"""`PgJobRepository`: the job store on PostgreSQL (the embedded default) via asyncpg.

Every transition and update is one conditional `UPDATE ... WHERE id = $1 AND <conditions>
RETURNING ...` (row-level atomic: concurrent claimers get one winner, concurrent writers of
different fields lose nothing). When the change must be announced, the events go into the
`outbox` table in the same transaction. Admission claims queued jobs with `FOR UPDATE SKIP
LOCKED` against per-provider slot counters that a trigger keeps (see `shared.pg_migrations`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import asyncpg
from pydantic_core import to_jsonable_python

from shared.jobs import ACTIVE_TASK_STATES, AttemptState, Job, JobState, sources_of
from shared.jobs import now as utc_now
from shared.outbox import NOTIFY_CHANNEL, Announce, OutboxEvent, outbox_events
from shared.pg import Pool
from shared.repository import Created, Page, encode_changes

# Job fields kept as columns (the rest of the job is the JSONB `doc`).
_COLUMNS = (
    "id, tenant_id, state, version, active_provider, queued_at, not_before, created_at,"
    " updated_at, doc"
)
_SETTABLE = {"state", "active_provider", "queued_at", "not_before"}
_MANAGED = {"version", "updated_at", "created_at", "tenant_id", "job_id"}
_IN_COLUMNS = _SETTABLE | _MANAGED
# The states in which provider tasks may still run, as SQL (the jobs_active_provider index's).
_ACTIVE_TASK_STATES_SQL = ", ".join(f"'{s.value}'" for s in ACTIVE_TASK_STATES)


def _doc_of(job: Job) -> dict[str, Any]:
    data = job.model_dump(mode="json", exclude=_IN_COLUMNS)
    return data


def _job_of(row: asyncpg.Record) -> Job:
    data = dict(row["doc"])
    data.update(
        job_id=row["id"],
        tenant_id=row["tenant_id"],
        state=row["state"],
        version=row["version"],
        active_provider=row["active_provider"],
        queued_at=row["queued_at"],
        not_before=row["not_before"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
    return Job.model_validate(data)


def _idem(job: Job) -> str:
    return f"{job.tenant_id}:{job.idempotency_key}" if job.idempotency_key else job.job_id


class PgJobRepository:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> Pool:
        return self._pool

    async def ensure_indexes(self) -> None:
        """Indexes come with the migrations (`shared.pg.migrate`); kept for the port."""

    # -- writes ---------------------------------------------------------------------------

    async def create(self, job: Job, *, announce: Announce | None = None) -> Created:
        events = outbox_events(announce, job)
        async with self._pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO jobs (id, tenant_id, state, version, idem, active_provider, slots,"
                " queued_at, not_before, created_at, updated_at, doc)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                " ON CONFLICT (idem) DO NOTHING RETURNING id",
                job.job_id,
                job.tenant_id,
                job.state.value,
                job.version,
                _idem(job),
                job.active_provider,
                job.request.candidates,
                job.queued_at,
                job.not_before,
                job.created_at,
                job.updated_at,
                _doc_of(job),
            )
            if inserted is not None:
                await _store_events(conn, events)
                return Created(job, True)
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM jobs WHERE idem = $1", _idem(job))
        if row is None:  # deleted between the insert and the read: vanishingly rare
            raise RuntimeError(f"job with idempotency key {job.idempotency_key!r} vanished")
        return Created(_job_of(row), False)

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
        args: list[Any] = [job_id, utc_now()]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        sets = ["version = jobs.version + 1", "updated_at = $2"]
        doc = "jobs.doc"
        for key, value in encode_changes(changes).items():
            if key in _SETTABLE:
                cast = "::text" if key in ("state", "active_provider") else "::timestamptz"
                sets.append(f"{key} = {arg(value)}{cast}")
            elif key in _MANAGED:
                raise ValueError(f"{key} is managed by the repository")
            else:
                path, plain = arg(key.split(".")), to_jsonable_python(value)
                # None is JSON null, not SQL NULL (which would null the whole document).
                val = "'null'::jsonb" if plain is None else f"{arg(plain)}::jsonb"
                doc = f"reelforge_set({doc}, {path}::text[], {val})"
        for key, delta in (inc or {}).items():
            doc = f"reelforge_inc({doc}, {arg(key.split('.'))}::text[], {arg(delta)}::numeric)"
        if doc != "jobs.doc":
            sets.append(f"doc = {doc}")
        where = ["id = $1"]
        if expected_states is not None:
            where.append(f"state = ANY({arg([s.value for s in expected_states])}::text[])")
        if expected_version is not None:
            where.append(f"version = {arg(expected_version)}::bigint")
        if attempt_in is not None:
            attempt_id, states = attempt_in
            path = arg(["attempts", attempt_id, "state"])
            where.append(f"doc #>> {path}::text[] = ANY({arg([s.value for s in states])}::text[])")
        sql = f"UPDATE jobs SET {', '.join(sets)} WHERE {' AND '.join(where)} RETURNING {_COLUMNS}"
        if index_task is not None:
            provider, task_id = arg(index_task[0]), arg(index_task[1])
            sql = (
                f"WITH u AS ({sql}), t AS (INSERT INTO job_tasks (provider, task_id, job_id)"
                f" SELECT {provider}::text, {task_id}::text, id FROM u ON CONFLICT DO NOTHING)"
                " SELECT * FROM u"
            )
        if announce is None:
            row = await self._pool.fetchrow(sql, *args)
            return _job_of(row) if row else None
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql, *args)
            if row is None:
                return None
            job = _job_of(row)
            await _store_events(conn, outbox_events(announce, job))
            return job

    async def claim_queued(self, limits: Mapping[str, int], batch: int, at: datetime) -> list[Job]:
        """Move the oldest due QUEUED jobs of each provider to SUBMITTING while their
        candidates fit in the provider's free slots; one transaction per provider. Replicas
        serialize on the provider's slot row; queued rows another replica holds are skipped."""
        claimed: list[Job] = []
        rows = await self._pool.fetch(  # only providers with something due: one probe each
            "SELECT p FROM unnest($2::text[]) AS p WHERE EXISTS (SELECT 1 FROM jobs"
            " WHERE state = 'queued' AND active_provider = p"
            " AND (not_before IS NULL OR not_before <= $1))",
            at,
            list(limits),
        )
        waiting = {r["p"] for r in rows}
        for provider, limit in limits.items():
            if provider not in waiting:
                continue
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO provider_slots (provider) VALUES ($1) ON CONFLICT DO NOTHING",
                    provider,
                )
                in_use = await conn.fetchval(
                    "SELECT in_use FROM provider_slots WHERE provider = $1 FOR UPDATE", provider
                )
                free = limit - in_use
                if free <= 0:
                    continue
                rows = await conn.fetch(
                    "WITH c AS (SELECT id, slots, queued_at FROM jobs"
                    "   WHERE state = 'queued' AND active_provider = $1"
                    "   AND (not_before IS NULL OR not_before <= $2)"
                    "   ORDER BY queued_at, id LIMIT $3 FOR UPDATE SKIP LOCKED),"
                    " w AS (SELECT id, sum(slots) OVER (ORDER BY queued_at, id) AS upto,"
                    "   row_number() OVER (ORDER BY queued_at, id) AS n FROM c),"
                    " p AS (SELECT id FROM w WHERE upto <= $4 OR (n = 1 AND $5))"
                    " UPDATE jobs SET state = 'submitting', not_before = NULL,"
                    "   version = jobs.version + 1, updated_at = $2"
                    f" FROM p WHERE jobs.id = p.id RETURNING {_prefixed('jobs')}",
                    provider,
                    at,
                    min(batch, free),
                    free,
                    in_use == 0,  # an idle provider takes one job larger than its limit
                )
                jobs = sorted((_job_of(r) for r in rows), key=lambda j: (j.queued_at, j.job_id))
                claimed += jobs
        return claimed

    # -- reads ----------------------------------------------------------------------------

    async def get(self, job_id: str, tenant_id: str | None = None) -> Job | None:
        if tenant_id is None:
            row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM jobs WHERE id = $1", job_id)
        else:
            row = await self._pool.fetchrow(
                f"SELECT {_COLUMNS} FROM jobs WHERE id = $1 AND tenant_id = $2", job_id, tenant_id
            )
        return _job_of(row) if row else None

    async def find_by_idempotency_key(self, tenant_id: str, key: str) -> Job | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM jobs WHERE idem = $1", f"{tenant_id}:{key}"
        )
        return _job_of(row) if row else None

    async def list_jobs(
        self,
        tenant_id: str,
        *,
        state: JobState | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        args: list[Any] = [tenant_id, limit + 1]
        where = ["tenant_id = $1"]
        if state is not None:
            args.append(state.value)
            where.append(f"state = ${len(args)}")
        if cursor:
            created_at, job_id = _decode_cursor(cursor)
            args += [created_at, job_id]
            where.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM jobs WHERE {' AND '.join(where)}"
            " ORDER BY created_at DESC, id DESC LIMIT $2",
            *args,
        )
        jobs = [_job_of(r) for r in rows]
        more = len(jobs) > limit
        jobs = jobs[:limit]
        return Page(jobs, _encode_cursor(jobs[-1]) if more and jobs else None)

    async def find_stale(
        self, states: Iterable[JobState], updated_before: datetime, limit: int = 100
    ) -> list[Job]:
        """Oldest update first across all `states`, so no state starves the others."""
        # One ordered index range per state (a single `state = ANY(...) ORDER BY updated_at`
        # cannot read the (state, updated_at) index in order: it sorted every stale row).
        rows = await self._pool.fetch(
            f"SELECT {_prefixed('j')} FROM unnest($1::text[]) AS s(state)"
            f" CROSS JOIN LATERAL (SELECT {_COLUMNS} FROM jobs"
            "   WHERE jobs.state = s.state AND updated_at < $2 ORDER BY updated_at LIMIT $3) AS j"
            " ORDER BY j.updated_at LIMIT $3",
            [s.value for s in states],
            updated_before,
            limit,
        )
        return [_job_of(r) for r in rows]

    async def find_by_task(self, provider: str, task_id: str) -> Job | None:
        row = await self._pool.fetchrow(
            f"SELECT {_prefixed('j')} FROM job_tasks t JOIN jobs j ON j.id = t.job_id"
            " WHERE t.provider = $1 AND t.task_id = $2",
            provider,
            task_id,
        )
        return _job_of(row) if row else None

    async def count_by_state(self, states: Iterable[JobState]) -> dict[JobState, int]:
        wanted = list(states)
        rows = await self._pool.fetch(
            "SELECT state, count(*) AS n FROM jobs WHERE state = ANY($1::text[]) GROUP BY state",
            [s.value for s in wanted],
        )
        counts = dict.fromkeys(wanted, 0)
        for row in rows:
            counts[JobState(row["state"])] = row["n"]
        return counts

    async def next_queued(self, provider: str | None, limit: int, at: datetime) -> list[Job]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM jobs WHERE state = 'queued'"
            " AND ($1::text IS NULL OR active_provider = $1)"
            " AND (not_before IS NULL OR not_before <= $2)"
            " ORDER BY queued_at, id LIMIT $3",
            provider,
            at,
            limit,
        )
        return [_job_of(r) for r in rows]

    async def count_queued_before(self, provider: str, queued_at: datetime) -> int:
        n: int = await self._pool.fetchval(
            "SELECT count(*) FROM jobs WHERE state = 'queued' AND active_provider = $1"
            " AND queued_at < $2",
            provider,
            queued_at,
        )
        return n

    async def with_active_tasks(self, provider: str, limit: int = 100_000) -> list[Job]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM jobs WHERE active_provider = $1"
            f" AND state IN ({_ACTIVE_TASK_STATES_SQL}) LIMIT $2",
            provider,
            limit,
        )
        return [_job_of(r) for r in rows]

    async def inflight_slots(self) -> dict[str, int]:
        rows = await self._pool.fetch(
            "SELECT provider, in_use FROM provider_slots WHERE in_use > 0"
        )
        return {r["provider"]: r["in_use"] for r in rows}

    async def outbox_size(self) -> int:
        n: int = await self._pool.fetchval("SELECT count(*) FROM outbox")
        return n


async def _store_events(conn: asyncpg.Connection, events: list[OutboxEvent]) -> None:
    if not events:
        return
    await conn.execute(
        "WITH i AS (INSERT INTO outbox (event_id, topic, key, headers, payload)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::bytea[]))"
        f" SELECT pg_notify('{NOTIFY_CHANNEL}', '')",
        [e.event_id for e in events],
        [e.topic for e in events],
        [e.key for e in events],
        [e.headers for e in events],
        [e.payload for e in events],
    )


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in _COLUMNS.split(","))


def _encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.job_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), job_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
