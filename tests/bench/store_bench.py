"""Job-store benchmark: `PgJobRepository` latency and throughput as the jobs table grows.

"Store: transition p50/p99 and claims/s with 8 concurrent claimers, at 10k, 100k and 1M job
rows." Targets (reported, never asserted): transition p99 < 5 ms, flat from 10k to 1M rows.

One throwaway database per run on the server of `InfraSettings().job_store_uri` (JOB_STORE_URI
overrides), migrated with `shared.pg.migrate`, dropped at the end (`--keep-db` keeps it). The
jobs table grows 10k -> 100k -> 1M rows (rows are added, never reloaded); at each size:

  preload  history rows by binary COPY on 2 connections; each doc is `_doc_of` of a real `Job`
           (templates per state, provider and variant) with per-row ids, task ids and hashes:
           95% terminal (completed 80%, failed 12%, cancelled 3%), 5% active (accepted,
           queued, submitting, running, storing, scoring; updated in the last 15 min), 12
           tenants (the biggest holds 30%), 5 providers, multi-candidate jobs, fallbacks, a
           `job_tasks` row per provider task. Then VACUUM (ANALYZE) and CHECKPOINT, so that
           autovacuum and checkpoints of the load stay out of the measurement.
  reads    what the pipeline reads per sweep, one call at a time: `find_stale` (reconciler
           states, 30 s grace, 200), `count_by_state`, `next_queued` (all providers / one),
           `count_queued_before`, `list_jobs` of the biggest tenant (first page; a cursor page
           half-way down its history).
  writes   one worker first (service time without queueing; `SELECT 1` and a one-row UPDATE
           commit as the floor), then 8 workers on disjoint sets of running/storing jobs, one
           kind at a time: poller progress `update` (dotted attempt paths, `attempt_in`,
           expected states); dispatcher task record `update` (dotted paths, `index_task`,
           `inc` spent, `announce` = outbox insert in the same transaction); `transition`
           running <-> storing with and without `announce`; `get` by id and `find_by_task` of
           random rows of the whole table. p50/p99/max, ops/s, and CPU ms per op of this
           process and of the pool's server backends (/proc, when the server is local).
  claims   --claim-rounds times: --claim-jobs queued jobs (on top of the size) on 4 bench
           providers; 8 concurrent claimers call `claim_queued(limits, batch, at)` with limits
           that never bind until the queue is empty; the claimed jobs are deleted -> jobs
           claimed/s over the claiming time, claim call p50/p99. Then
           --race-jobs queued jobs that 8 workers all try to move, in the same order, with
           `transition(job, SUBMITTING, expected=[QUEUED])` -> claims/s and winners (must
           equal the jobs; a line is printed when not).
  cleanup  the bench's claim/race jobs are deleted and the outbox emptied (as the relay would).

Each operation is timed on its own with `time.perf_counter` around the repository call (so
decoding rows into `Job`s is included). Pool of 10 connections; workers are asyncio tasks.
Benchmarks measure; nothing here asserts a speed. At each size, after the preload, a bounded
wait for the load to settle (--size-wait-s); the load averages at start and end are recorded.

    python -m tests.bench.store_bench [--sizes 10000,100000,1000000] [--quick] [--explain]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.events import JobUpdated, TaskSubmitted, event_about  # noqa: E402
from shared.jobs import (  # noqa: E402
    ACTIVE_TASK_STATES,
    Attempt,
    AttemptState,
    Job,
    JobRequest,
    JobState,
    ModelChoice,
    Policy,
    StoredVideo,
)
from shared.pg import Pool, connect_pool, migrate, redacted  # noqa: E402
from shared.pg_repository import PgJobRepository, _doc_of, _encode_cursor  # noqa: E402
from shared.providers.base import Failure, TaskRef, VideoOutput  # noqa: E402
from shared.providers.errors import FailureClass  # noqa: E402
from shared.topics import Topic, provider_topic  # noqa: E402
from tests.bench import common  # noqa: E402
from tests.bench.common import percentile  # noqa: E402
from tests.pg_fixtures import with_database  # noqa: E402

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (2_000, 20_000)
WORKERS = 8
POOL_SIZE = 10
BIG = 1_000_000_000  # a provider limit that never binds
HISTORY = timedelta(days=30)  # the largest size's terminal jobs span this much history

PROVIDERS: dict[str, tuple[str, ...]] = {
    "openai": ("sora-2", "sora-2-pro"),
    "gemini": ("veo-3.1-generate-preview", "veo-3.1-fast-generate-preview"),
    "vertex": ("veo-3.1-generate-001", "veo-3.1-fast-generate-001"),
    "runway": ("gen4.5", "gen4_turbo"),
    "kling": ("kling-v2-6", "kling-v3"),
}
PROVIDER_WEIGHTS = {"openai": 30, "gemini": 25, "vertex": 15, "runway": 15, "kling": 15}
TENANTS = ("tenant-00", "tenant-01", "tenant-02", *(f"tenant-{i:02d}" for i in range(3, 12)))
TENANT_WEIGHTS = (30.0, 15.0, 10.0, *([45.0 / 9] * 9))
# Per mille: 95% terminal, 5% spread over the active states.
STATE_MIX: dict[JobState, int] = {
    JobState.COMPLETED: 800,
    JobState.FAILED: 120,
    JobState.CANCELLED: 30,
    JobState.ACCEPTED: 3,
    JobState.QUEUED: 12,
    JobState.SUBMITTING: 5,
    JobState.RUNNING: 20,
    JobState.STORING: 5,
    JobState.SCORING: 5,
}
VARIANTS = 4  # templates per (state, provider)
CLAIM_PROVIDERS = ("claim-p0", "claim-p1", "claim-p2", "claim-p3")
RACE_PROVIDER = "race-p0"
# What the reconciler sweeps (services.reconciler.handlers.sweep) and its shortest grace.
SWEPT = [
    JobState.ACCEPTED,
    JobState.SUBMITTING,
    JobState.RUNNING,
    JobState.STORING,
    JobState.QUEUED,
    JobState.SCORING,
]
SWEEP_GRACE = timedelta(seconds=30)
IN_FLIGHT = (AttemptState.SUBMITTED, AttemptState.RUNNING)
PROMPTS = (
    "a paper boat drifting on a pond at dawn, soft mist, macro lens",
    "aerial shot over a coastal town at golden hour, gulls circling the harbour, slow push in",
    "a red fox trotting through fresh snow in a birch forest, low angle tracking shot, 35mm",
    "close-up of hands kneading dough on a floured wooden table, warm kitchen light",
    "a neon-lit street in the rain at night, reflections on wet asphalt, cinematic, anamorphic "
    "flares, a cyclist passes in the background while steam rises from a manhole",
    "timelapse of clouds rolling over mountain peaks, ultra wide",
    "product shot: a matte black wireless earbud case rotating on a white seamless background",
    "an astronaut planting a flag on a dusty red plain, two moons low on the horizon, dust "
    "kicked up in slow motion, handheld documentary feel",
)
MARKER = re.compile(r"__([A-Z0-9]+)__")
JOB_COLUMNS = (
    "id",
    "tenant_id",
    "state",
    "version",
    "idem",
    "active_provider",
    "slots",
    "queued_at",
    "not_before",
    "created_at",
    "updated_at",
    "doc",
)


# -- realistic rows ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """One job document as JSON text with markers (__J__ job id, __H__ / __G__ random hex,
    __T0__.. task ids) cut into literal and marker parts, plus what the columns need."""

    state: JobState
    provider: str | None  # active_provider column
    parts: tuple[str, ...]  # even indexes: literal text; odd: marker names
    slots: int
    version: int
    tasks: tuple[tuple[str, str], ...]  # (provider, marker) of each provider task

    def render(self, values: dict[str, str]) -> str:
        return "".join(p if i % 2 == 0 else values[p] for i, p in enumerate(self.parts))


def _task_id(provider: str, marker: str) -> str:
    """Provider-shaped task ids around a marker (filled with random hex per row)."""
    if provider in ("gemini", "vertex"):
        return f"models/veo/operations/__{marker}__"
    if provider == "openai":
        return f"video___{marker}__"
    return f"__{marker}__"


def build_template(state: JobState, provider: str, variant: int) -> Template:
    """A job as the pipeline writes it in `state` on `provider`, through the real models."""
    models = PROVIDERS.get(provider, ("bench-model",))
    model = models[variant % len(models)]
    others = [p for p in PROVIDERS if p != provider]
    backup = others[variant % len(others)]
    candidates = 1 if variant < 3 else 2
    if state is JobState.SCORING:
        candidates = 2 + variant % 2
    fallback = variant == 2 and state in (JobState.COMPLETED, JobState.FAILED, JobState.RUNNING)
    request = JobRequest(
        prompt=PROMPTS[(variant * 3 + len(provider)) % len(PROMPTS)],
        duration_s=(4, 8, 5, 10)[variant],
        resolution=("720p", "1080p", "720p", "480p")[variant],
        aspect_ratio=("16:9", "9:16", "16:9", "1:1")[variant],
        candidates=candidates,
        policy=Policy.EXPLICIT if variant % 2 else Policy.CHEAPEST,
        provider=provider if variant % 2 else None,
        budget_usd=5.0 if variant == 1 else None,
        callback_url="https://hooks.example.com/reelforge/__J__" if variant != 3 else None,
        metadata={"campaign": f"spring-{variant}", "customer_ref": "__J__"},
    )
    route: tuple[ModelChoice, ...] = (ModelChoice(provider=provider, model=model),)
    route += (ModelChoice(provider=backup, model=PROVIDERS[backup][0]),)
    if fallback:
        route = (ModelChoice(provider=backup, model=PROVIDERS[backup][0]), route[0])
    at = datetime(2025, 6, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=variant)
    price = round(0.1 * request.duration_s * (1 + variant % 2), 4)
    attempts: dict[str, Attempt] = {}
    tasks: list[tuple[str, str]] = []

    def attempt(cand: int, n: int, on: str, on_model: str, a_state: AttemptState) -> Attempt:
        marker = f"T{len(tasks)}"
        has_task = a_state is not AttemptState.PENDING
        if has_task:
            tasks.append((on, marker))
        done = a_state in (
            AttemptState.SUCCEEDED,
            AttemptState.STORED,
            AttemptState.FAILED,
            AttemptState.CANCELLED,
        )
        video = None
        if a_state is AttemptState.STORED:
            video = StoredVideo(
                bucket="reelforge-videos",
                object_key=f"videos/__J__/c{cand}-{n}.mp4",
                sha256="__G____H__"[:64],
                size_bytes=4_200_000 + variant * 1000,
                thumbnail_key=f"videos/__J__/c{cand}-{n}.jpg",
                duration_s=float(request.duration_s),
                width=1280,
                height=720,
                fps=24.0,
                codec="h264",
                has_audio=variant == 1,
            )
        return Attempt(
            attempt_id=f"c{cand}-{n}",
            candidate=cand,
            provider=on,
            model=on_model,
            state=a_state,
            task=TaskRef(provider=on, model=on_model, task_id=_task_id(on, marker))
            if has_task
            else None,
            raw_status={
                AttemptState.RUNNING: "in_progress",
                AttemptState.SUCCEEDED: "completed",
                AttemptState.STORED: "completed",
                AttemptState.FAILED: "failed",
            }.get(a_state),
            progress=0.42 if a_state is AttemptState.RUNNING else (1.0 if done else None),
            outputs=(
                VideoOutput(
                    url=f"https://cdn.{on}.example.com/v/__H__.mp4",
                    expires_at=at + timedelta(hours=1),
                ),
            )
            if a_state in (AttemptState.SUCCEEDED, AttemptState.STORED)
            else (),
            failure=Failure(
                failure_class=FailureClass.GENERATION_FAILED,
                message="the provider could not render this prompt",
                provider_code="generation_failed",
            )
            if a_state is AttemptState.FAILED
            else None,
            cost_usd=price if has_task else 0.0,
            video=video,
            qc={"score": 0.71 + 0.01 * cand, "verdict": "pass", "checks": {"black": 0.0}}
            if a_state is AttemptState.STORED and candidates > 1
            else None,
            created_at=at,
            submitted_at=at + timedelta(seconds=1) if has_task else None,
            finished_at=at + timedelta(seconds=90) if done else None,
        )

    per_attempt = {
        JobState.ACCEPTED: None,
        JobState.QUEUED: None,
        JobState.SUBMITTING: AttemptState.SUBMITTED if variant % 2 else AttemptState.PENDING,
        JobState.RUNNING: AttemptState.RUNNING,
        JobState.STORING: AttemptState.SUCCEEDED,
        JobState.SCORING: AttemptState.STORED,
        JobState.COMPLETED: AttemptState.STORED,
        JobState.FAILED: AttemptState.FAILED,
        JobState.CANCELLED: AttemptState.CANCELLED if variant % 2 else None,
    }[state]
    if fallback:  # the first route entry failed, the second one is current
        attempts["c0-0"] = attempt(0, 0, backup, PROVIDERS[backup][0], AttemptState.FAILED)
    if per_attempt is not None:
        for cand in range(candidates):
            n = 1 if fallback and cand == 0 else 0
            a = attempt(cand, n, provider, model, per_attempt)
            attempts[a.attempt_id] = a
    spent = round(sum(a.cost_usd for a in attempts.values()), 6)
    stored = [a for a in attempts.values() if a.video is not None]
    job = Job(
        job_id="__J__",
        tenant_id="t",
        request=request,
        state=state,
        idempotency_key=None,
        fingerprint="__G____H__",
        route=route,
        route_index=1 if fallback else 0,
        quote_usd=round(price * candidates, 4),
        spent_usd=spent,
        attempts=attempts,
        progress={JobState.RUNNING: 0.42, JobState.COMPLETED: 1.0}.get(state, 0.0),
        result=stored[0].video if state is JobState.COMPLETED and stored else None,
        picked_attempt=stored[0].attempt_id if state is JobState.COMPLETED and stored else None,
        failure=Failure(failure_class=FailureClass.GENERATION_FAILED, message="all attempts failed")
        if state is JobState.FAILED
        else None,
        source="http" if variant != 2 else "kafka",
        trace_parent="00-__H__-__G__-01",
        deadline_at=at + timedelta(seconds=request.deadline_s),
    )
    text = json.dumps(_doc_of(job), separators=(", ", ": "))
    parts = tuple(MARKER.split(text))
    version = {
        JobState.ACCEPTED: 0,
        JobState.QUEUED: 1 + variant % 2,
        JobState.SUBMITTING: 2,
        JobState.RUNNING: 4 + variant,
        JobState.STORING: 6,
        JobState.SCORING: 8,
        JobState.COMPLETED: 8 + variant,
        JobState.FAILED: 5 + variant,
        JobState.CANCELLED: 2 + variant,
    }[state]
    return Template(
        state=state,
        provider=None if state is JobState.ACCEPTED else provider,
        parts=parts,
        slots=candidates,
        version=version,
        tasks=tuple(tasks),
    )


@dataclass
class Rows:
    """Generates job rows (COPY tuples) and their job_tasks rows; remembers samples of ids and
    task ids (reservoirs) for the random reads."""

    rnd: random.Random
    hist_start: datetime
    hist_step: timedelta
    templates: dict[tuple[JobState, str], list[Template]] = field(default_factory=dict)
    seq: int = 0
    id_sample: list[str] = field(default_factory=list)
    task_sample: list[tuple[str, str]] = field(default_factory=list)
    sample_size: int = 20_000

    def template(self, state: JobState, provider: str) -> Template:
        key = (state, provider)
        if key not in self.templates:
            self.templates[key] = [build_template(state, provider, v) for v in range(VARIANTS)]
        return self.rnd.choice(self.templates[key])

    def _keep(self, sample: list[Any], item: Any) -> None:
        if len(sample) < self.sample_size:
            sample.append(item)
        else:
            i = self.rnd.randrange(self.seq + 1)
            if i < self.sample_size:
                sample[i] = item

    def make(
        self,
        n: int,
        now: datetime,
        *,
        state: JobState | None = None,
        provider: str | None = None,
        queued_from: datetime | None = None,
        sample: bool = True,
    ) -> tuple[list[tuple[Any, ...]], list[tuple[str, str, str]]]:
        rnd = self.rnd
        states = (
            [state] * n
            if state is not None
            else rnd.choices(list(STATE_MIX), weights=list(STATE_MIX.values()), k=n)
        )
        providers = (
            [provider] * n
            if provider is not None
            else rnd.choices(list(PROVIDER_WEIGHTS), weights=list(PROVIDER_WEIGHTS.values()), k=n)
        )
        tenants = rnd.choices(TENANTS, weights=TENANT_WEIGHTS, k=n)
        jobs: list[tuple[Any, ...]] = []
        tasks: list[tuple[str, str, str]] = []
        for i in range(n):
            st, prov, tenant = states[i], providers[i], tenants[i]
            tpl = self.template(st, prov)
            job_id = f"job_{rnd.getrandbits(96):024x}"
            h = f"{rnd.getrandbits(256):064x}"
            values = {"J": job_id, "H": h[:32], "G": h[32:]}
            for _, marker in tpl.tasks:
                values[marker] = f"{rnd.getrandbits(96):024x}"
            self.seq += 1
            if st.terminal:
                created = self.hist_start + self.hist_step * self.seq
                updated = created + timedelta(seconds=rnd.uniform(20, 900))
            else:  # active jobs are recent: updated within the last 15 minutes
                updated = now - timedelta(seconds=rnd.uniform(0, 900))
                created = updated - timedelta(seconds=rnd.uniform(0, 600))
            queued_at = None if st is JobState.ACCEPTED else created + timedelta(seconds=0.2)
            not_before = None
            if st is JobState.QUEUED:
                queued_at = updated
                if queued_from is not None:
                    queued_at = queued_from + timedelta(milliseconds=i)
                elif rnd.random() < 0.1:  # rate limited: waiting for a retry
                    not_before = now + timedelta(seconds=rnd.uniform(10, 300))
            key = f"order-{self.seq:09d}" if rnd.random() < 0.3 else None
            jobs.append(
                (
                    job_id,
                    tenant,
                    st.value,
                    tpl.version,
                    f"{tenant}:{key}" if key else job_id,
                    tpl.provider,
                    tpl.slots,
                    queued_at,
                    not_before,
                    created,
                    updated,
                    tpl.render(values),
                )
            )
            for task_provider, marker in tpl.tasks:
                task_id = _task_id(task_provider, marker).replace(f"__{marker}__", values[marker])
                tasks.append((task_provider, task_id, job_id))
                if sample:
                    self._keep(self.task_sample, (task_provider, task_id))
            if sample:
                self._keep(self.id_sample, job_id)
        return jobs, tasks


async def copy_rows(
    conn: asyncpg.Connection, jobs: list[tuple[Any, ...]], tasks: list[tuple[str, str, str]]
) -> None:
    await conn.copy_records_to_table("jobs", records=jobs, columns=list(JOB_COLUMNS))
    if tasks:
        await conn.copy_records_to_table(
            "job_tasks", records=tasks, columns=["provider", "task_id", "job_id"]
        )


async def preload(
    conns: Sequence[asyncpg.Connection], rows: Rows, n: int, chunk: int = 10_000
) -> float:
    """Add `n` history rows by binary COPY on every connection of `conns` at once (the
    server parses and compresses the JSONB docs: one backend per connection); generating
    the next chunks overlaps the COPYs."""
    started = time.perf_counter()
    queue: asyncio.Queue[tuple[list[tuple[Any, ...]], list[tuple[str, str, str]]] | None]
    queue = asyncio.Queue(maxsize=len(conns))

    async def copier(conn: asyncpg.Connection) -> None:
        while (item := await queue.get()) is not None:
            await copy_rows(conn, *item)

    copiers = [asyncio.create_task(copier(c)) for c in conns]
    done = 0
    while done < n:
        k = min(chunk, n - done)
        await queue.put(rows.make(k, datetime.now(UTC)))
        done += k
    for _ in conns:
        await queue.put(None)
    await asyncio.gather(*copiers)
    return time.perf_counter() - started


# -- measurement helpers ----------------------------------------------------------------------


def stats_ms(samples: Sequence[float]) -> dict[str, Any]:
    """Latencies (seconds in) as ms: n, p50, p90, p99, max, mean."""
    if not samples:
        return {"n": 0}
    ms = [s * 1000 for s in samples]
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 3),
        "p90": round(percentile(ms, 90), 3),
        "p99": round(percentile(ms, 99), 3),
        "max": round(max(ms), 3),
        "mean": round(sum(ms) / len(ms), 3),
    }


async def timed(samples: list[float], call: Awaitable[Any]) -> Any:
    started = time.perf_counter()
    out = await call
    samples.append(time.perf_counter() - started)
    return out


async def run_workers(
    n_ops: int, op: Callable[[int, int], Awaitable[None]], workers: int = WORKERS
) -> float:
    """`workers` tasks share `n_ops` calls of op(worker, i); returns the wall time."""
    per = [n_ops // workers + (1 if w < n_ops % workers else 0) for w in range(workers)]

    async def worker(w: int) -> None:
        for i in range(per[w]):
            await op(w, i)

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    return time.perf_counter() - started


class RecordingPool:
    """The pool as the repository sees it, remembering the last read statement and its
    arguments so that `--explain` can EXPLAIN exactly what the repository ran."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self.last: tuple[str, tuple[Any, ...]] | None = None

    @property
    def pool(self) -> Pool:
        return self._pool

    async def explain(self, rollback: bool = False) -> str:
        """EXPLAIN (ANALYZE, BUFFERS) of the last statement, on a pool connection (same JSON
        codec); a write is explained inside a transaction that is rolled back."""
        assert self.last is not None
        sql, params = self.last
        async with self._pool.acquire() as conn:
            tr = conn.transaction()
            await tr.start()
            try:
                plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *params)
            finally:
                await (tr.rollback() if rollback else tr.commit())
        return "\n".join(r[0] for r in plan)

    def acquire(self) -> Any:
        return self._pool.acquire()

    async def fetch(self, sql: str, *args: Any) -> Any:
        self.last = (sql, args)
        return await self._pool.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self.last = (sql, args)
        return await self._pool.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.last = (sql, args)
        return await self._pool.fetchval(sql, *args)


# -- phases -----------------------------------------------------------------------------------


async def measure_claims(
    repo: PgJobRepository, conn: asyncpg.Connection, rows: Rows, args: argparse.Namespace
) -> dict[str, Any]:
    now = datetime.now(UTC)
    per = args.claim_jobs // len(CLAIM_PROVIDERS)
    limits = dict.fromkeys(CLAIM_PROVIDERS, BIG)
    # Warm-up: prepare the statements on every connection (no queued job of this provider).
    warm = {"claim-warm": BIG}
    for _ in range(2):
        await asyncio.gather(
            *(repo.claim_queued(warm, args.claim_batch, now) for _ in range(POOL_SIZE))
        )
    calls: list[float] = []
    claimed: list[int] = []
    empty = [0]
    wall = 0.0
    left = 0

    async def claimer() -> None:
        while True:
            started = time.perf_counter()
            got = await repo.claim_queued(limits, args.claim_batch, now)
            claimed.append(len(got))
            if not got:  # the queue is empty: the call that found nothing is not counted
                empty[0] += 1
                return
            calls.append(time.perf_counter() - started)

    # Rounds: queue --claim-jobs, claim them all, delete them; claims/s over the claiming time.
    for _ in range(args.claim_rounds):
        for i, provider in enumerate(CLAIM_PROVIDERS):
            jobs, tasks = rows.make(
                per,
                now,
                state=JobState.QUEUED,
                provider=provider,
                queued_from=now - timedelta(minutes=10 - i),
                sample=False,
            )
            await copy_rows(conn, jobs, tasks)
        started = time.perf_counter()
        await asyncio.gather(*(claimer() for _ in range(WORKERS)))
        wall += time.perf_counter() - started
        left += await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE state = 'queued'"
            " AND active_provider = ANY($1::text[])",
            list(CLAIM_PROVIDERS),
        )
        await conn.execute(
            "DELETE FROM jobs WHERE active_provider = ANY($1::text[])", list(CLAIM_PROVIDERS)
        )
    total = sum(claimed)
    out: dict[str, Any] = {
        "jobs": per * len(CLAIM_PROVIDERS) * args.claim_rounds,
        "rounds": args.claim_rounds,
        "claimed": total,
        "left_queued": left,
        "batch": args.claim_batch,
        "providers": len(CLAIM_PROVIDERS),
        "wall_s": round(wall, 3),
        "claims_per_s": round(total / wall, 1),
        "call_ms": stats_ms(calls),
        "calls_with_jobs": sum(1 for c in claimed if c),
        "empty_calls": empty[0],
    }

    # Contention: 8 workers race for the same jobs, in the same order, one job at a time.
    jobs, tasks = rows.make(
        args.race_jobs,
        now,
        state=JobState.QUEUED,
        provider=RACE_PROVIDER,
        queued_from=now - timedelta(minutes=5),
        sample=False,
    )
    await copy_rows(conn, jobs, tasks)
    ids = [j[0] for j in jobs]
    winners: dict[str, int] = {}
    race_calls: list[float] = []

    async def racer(w: int) -> None:
        del w
        for job_id in ids:
            won = await timed(
                race_calls,
                repo.transition(
                    job_id, JobState.SUBMITTING, {"not_before": None}, expected=[JobState.QUEUED]
                ),
            )
            if won is not None:
                winners[job_id] = winners.get(job_id, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(racer(w) for w in range(WORKERS)))
    wall = time.perf_counter() - started
    wins = sum(winners.values())
    doubles = sum(1 for n in winners.values() if n > 1)
    if wins != len(ids) or doubles:
        print(
            f"  !! contended claims: {wins} winners for {len(ids)} jobs "
            f"({doubles} jobs won more than once)",
            flush=True,
        )
    out["contended"] = {
        "jobs": len(ids),
        "claimers": WORKERS,
        "winners": wins,
        "jobs_won_twice": doubles,
        "wall_s": round(wall, 3),
        "claims_per_s": round(len(ids) / wall, 1),
        "call_ms": stats_ms(race_calls),
    }
    return out


def _progress_event(after: Job) -> list[tuple[str, Any]]:
    return [
        (
            Topic.JOB_UPDATES,
            event_about(
                JobUpdated,
                after,
                "store-bench",
                seq=after.version,
                state=after.state,
                progress=after.progress,
                detail="in_progress",
            ),
        )
    ]


async def measure_writes(
    repo: PgJobRepository,
    recorder: RecordingPool,
    conn: asyncpg.Connection,
    rows: Rows,
    args: argparse.Namespace,
) -> dict[str, Any]:
    picked = await conn.fetch(
        "SELECT id, state, active_provider FROM jobs WHERE state IN ('running', 'storing')"
        " AND active_provider = ANY($1::text[])"
        " AND doc #>> '{attempts,c0-0,state}' IN ('submitted', 'running')"
        " ORDER BY random() LIMIT $2",
        list(PROVIDERS),
        args.write_jobs,
    )
    owned: list[list[list[Any]]] = [[] for _ in range(WORKERS)]
    for i, r in enumerate(picked):
        owned[i % WORKERS].append([r["id"], JobState(r["state"]), r["active_provider"]])
    if not all(owned):
        return {"error": f"only {len(picked)} running/storing jobs to update"}
    rnd = random.Random(args.seed + 7)
    n = args.write_ops
    out: dict[str, Any] = {"active_jobs_used": len(picked), "ops_per_kind": n}
    misses: dict[str, int] = {}

    def job_of(w: int) -> list[Any]:
        return rnd.choice(owned[w])

    async def progress(w: int, samples: list[float]) -> None:
        job_id, _, _ = job_of(w)
        p = round(rnd.random(), 3)
        got = await timed(
            samples,
            repo.update(
                job_id,
                {
                    "attempts.c0-0.raw_status": "in_progress",
                    "attempts.c0-0.progress": p,
                    "attempts.c0-0.state": AttemptState.RUNNING,
                    "progress": p,
                },
                expected_states=ACTIVE_TASK_STATES,
                attempt_in=("c0-0", IN_FLIGHT),
            ),
        )
        if got is None:
            misses["update_attempt_in"] = misses.get("update_attempt_in", 0) + 1

    async def record_task(w: int, samples: list[float]) -> None:
        job_id, _, provider = job_of(w)
        at = datetime.now(UTC)
        ref = TaskRef(provider=provider, model="bench", task_id=f"bench-{secrets.token_hex(12)}")
        cost = 0.4

        def announce(after: Job) -> list[tuple[str, Any]]:
            event = event_about(
                TaskSubmitted,
                after,
                "store-bench",
                attempt="c0-0",
                task=ref,
                deadline_at=at + timedelta(minutes=30),
                expected_render_s=60.0,
                submitted_at=at,
            )
            return [(provider_topic(provider), event)]

        got = await timed(
            samples,
            repo.update(
                job_id,
                {
                    "attempts.c0-0.task": ref,
                    "attempts.c0-0.state": AttemptState.SUBMITTED,
                    "attempts.c0-0.submitted_at": at,
                    "attempts.c0-0.cost_usd": cost,
                },
                index_task=(provider, ref.task_id),
                inc={"spent_usd": cost},
                announce=announce,
            ),
        )
        if got is None:
            misses["update_inc_task_announce"] = misses.get("update_inc_task_announce", 0) + 1

    async def moved(w: int, samples: list[float], announce: bool) -> None:
        job = job_of(w)
        current: JobState = job[1]
        target = JobState.STORING if current is JobState.RUNNING else JobState.RUNNING
        got = await timed(
            samples,
            repo.transition(
                job[0],
                target,
                {"progress": round(rnd.random(), 3)},
                expected=[current],
                announce=_progress_event if announce else None,
            ),
        )
        if got is None:
            name = "transition_announce" if announce else "transition"
            misses[name] = misses.get(name, 0) + 1
        else:
            job[1] = target

    async def transition(w: int, samples: list[float]) -> None:
        await moved(w, samples, True)

    async def transition_quiet(w: int, samples: list[float]) -> None:
        await moved(w, samples, False)

    async def get(w: int, samples: list[float]) -> None:
        del w
        got = await timed(samples, repo.get(rnd.choice(rows.id_sample)))
        if got is None:
            misses["get"] = misses.get("get", 0) + 1

    async def find_by_task(w: int, samples: list[float]) -> None:
        del w
        got = await timed(samples, repo.find_by_task(*rnd.choice(rows.task_sample)))
        if got is None:
            misses["find_by_task"] = misses.get("find_by_task", 0) + 1

    kinds: dict[str, Callable[[int, list[float]], Awaitable[None]]] = {
        "update_attempt_in": progress,
        "update_inc_task_announce": record_task,
        "transition_announce": transition,
        "transition_no_announce": transition_quiet,
        "get": get,
        "find_by_task": find_by_task,
    }

    def calls(
        kind: Callable[[int, list[float]], Awaitable[None]], samples: list[float]
    ) -> Callable[[int, int], Awaitable[None]]:
        return lambda w, i: kind(w, samples)

    backends = await pool_backends(conn)

    async def ping(w: int, samples: list[float]) -> None:
        del w
        await timed(samples, recorder.pool.fetchval("SELECT 1"))

    async def commit(w: int, samples: list[float]) -> None:
        await timed(
            samples,
            recorder.pool.execute("UPDATE bench_ping SET n = n + 1 WHERE id = $1", w),
        )

    await conn.execute(
        "CREATE TABLE IF NOT EXISTS bench_ping (id integer PRIMARY KEY, n bigint NOT NULL);"
        " INSERT INTO bench_ping SELECT g, 0 FROM generate_series(0, 15) g ON CONFLICT DO NOTHING"
    )
    # One worker: service time without queueing (and the server's round trip and commit).
    serial: dict[str, Callable[[int, list[float]], Awaitable[None]]] = {
        "ping_select_1": ping,
        "commit_one_row_update": commit,
        "update_attempt_in": progress,
        "transition_announce": transition,
    }
    out["serial"] = {}
    samples: list[float]
    for name, kind in serial.items():
        await run_workers(20, calls(kind, []), workers=1)
        samples = []
        wall = await run_workers(args.serial_ops, calls(kind, samples), workers=1)
        out["serial"][name] = {**stats_ms(samples), "ops_per_s": round(args.serial_ops / wall, 1)}
    # Eight workers, one kind at a time.
    for name, kind in kinds.items():
        await run_workers(WORKERS * 4, calls(kind, []))  # warm-up
        samples = []
        cpu, server = time.process_time(), backends_cpu_s(backends)
        wall = await run_workers(n, calls(kind, samples))
        cpu, server = time.process_time() - cpu, backends_cpu_s(backends) - server
        out[name] = {
            **stats_ms(samples),
            "ops_per_s": round(n / wall, 1),
            "client_cpu_ms_per_op": round(cpu * 1000 / n, 3),
            "server_cpu_ms_per_op": round(server * 1000 / n, 3),
        }
    if args.explain:
        await progress(0, [])
        plans = {"update_attempt_in (rolled back)": await recorder.explain(rollback=True)}
        await get(0, [])
        plans["get"] = await recorder.explain()
        await find_by_task(0, [])
        plans["find_by_task"] = await recorder.explain()
        out["plans"] = plans
    out["misses"] = misses
    return out


async def measure_reads(
    repo: PgJobRepository,
    recorder: RecordingPool,
    conn: asyncpg.Connection,
    args: argparse.Namespace,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    tenant = TENANTS[0]
    tenant_jobs = await conn.fetchval("SELECT count(*) FROM jobs WHERE tenant_id = $1", tenant)
    deep = await conn.fetchval(
        "SELECT id FROM jobs WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC"
        " OFFSET $2 LIMIT 1",
        tenant,
        tenant_jobs // 2,
    )
    deep_job = await repo.get(deep)
    assert deep_job is not None
    cursor = _encode_cursor(deep_job)
    busiest = await conn.fetchval(
        "SELECT active_provider FROM jobs WHERE state = 'queued' AND active_provider IS NOT NULL"
        " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    )
    far = now + timedelta(days=3650)
    reads: dict[str, Callable[[], Awaitable[Any]]] = {
        "find_stale": lambda: repo.find_stale(SWEPT, datetime.now(UTC) - SWEEP_GRACE, 200),
        "count_by_state": lambda: repo.count_by_state(SWEPT),
        "next_queued_all": lambda: repo.next_queued(None, 100, datetime.now(UTC)),
        "next_queued_provider": lambda: repo.next_queued(busiest, 100, datetime.now(UTC)),
        "count_queued_before": lambda: repo.count_queued_before(busiest, far),
        "list_jobs_first_page": lambda: repo.list_jobs(tenant, limit=50),
        "list_jobs_deep_page": lambda: repo.list_jobs(tenant, limit=50, cursor=cursor),
    }
    out: dict[str, Any] = {"tenant": tenant, "tenant_jobs": tenant_jobs, "queue": busiest}
    plans: dict[str, str] = {}
    for name, read in reads.items():
        for _ in range(3):  # warm-up (statement preparation, caches)
            got = await read()
        samples: list[float] = []
        cpu = time.process_time()
        for _ in range(args.read_reps):
            got = await timed(samples, read())
        cpu = time.process_time() - cpu
        returned = len(got.jobs) if hasattr(got, "jobs") else got
        if isinstance(returned, list | dict):
            returned = len(returned) if isinstance(returned, list) else sum(returned.values())
        out[name] = {
            **stats_ms(samples),
            "returned": returned,
            "client_cpu_ms_per_op": round(cpu * 1000 / args.read_reps, 3),
        }
        if args.explain:
            plans[name] = await recorder.explain()
    if plans:
        out["plans"] = plans
    return out


async def pool_backends(conn: asyncpg.Connection) -> list[int]:
    """Server process ids of the other connections to this database (the pool's), whose CPU
    time /proc shows when the server runs on this machine."""
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()"
    )
    return [r["pid"] for r in rows]


def backends_cpu_s(pids: Sequence[int]) -> float:
    """utime + stime of the server backends, seconds (nan when the server is elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            total += common.proc_cpu_s(pid)
        except OSError:
            return math.nan
    return total


async def table_sizes(conn: asyncpg.Connection) -> dict[str, Any]:
    row = await conn.fetchrow(
        "SELECT pg_total_relation_size('jobs') AS total, pg_relation_size('jobs') AS heap,"
        " pg_indexes_size('jobs') AS indexes,"
        " pg_total_relation_size('jobs') - pg_relation_size('jobs') - pg_indexes_size('jobs')"
        "   AS toast,"
        " pg_total_relation_size('job_tasks') AS tasks_total,"
        " (SELECT count(*) FROM jobs) AS jobs, (SELECT count(*) FROM job_tasks) AS task_rows"
    )
    mib = 1024 * 1024
    return {
        "jobs_rows": row["jobs"],
        "job_tasks_rows": row["task_rows"],
        "jobs_total_mib": round(row["total"] / mib, 1),
        "jobs_heap_mib": round(row["heap"] / mib, 1),
        "jobs_toast_mib": round(row["toast"] / mib, 1),
        "jobs_indexes_mib": round(row["indexes"] / mib, 1),
        "job_tasks_total_mib": round(row["tasks_total"] / mib, 1),
    }


def load3() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def measure(uri: str, args: argparse.Namespace) -> dict[str, Any]:
    sizes: list[int] = args.store_sizes
    pool = await connect_pool(uri, min_size=POOL_SIZE, max_size=POOL_SIZE)
    loader = await asyncpg.connect(uri)  # no JSON codec: docs go in as JSON text
    copiers = [await asyncpg.connect(uri) for _ in range(args.load_connections)]
    try:
        await migrate(pool)
        recorder = RecordingPool(pool)
        repo = PgJobRepository(recorder)
        server = await loader.fetchval("SHOW server_version")
        settings = {
            s: await loader.fetchval(f"SHOW {s}")
            for s in ("shared_buffers", "work_mem", "synchronous_commit", "max_wal_size")
        }
        rows = Rows(
            rnd=random.Random(args.seed),
            hist_start=datetime.now(UTC) - HISTORY,
            hist_step=HISTORY / max(sizes),
        )
        results: dict[str, Any] = {}
        for size in sizes:
            have = await loader.fetchval("SELECT count(*) FROM jobs")
            add = max(0, size - have)
            print(f"[store] {size:,} rows: adding {add:,} (load {common.load_note()})", flush=True)
            load_s = await preload(copiers, rows, add)
            t0 = time.perf_counter()
            await loader.execute("VACUUM (ANALYZE) jobs, job_tasks, provider_slots")
            await loader.execute("CHECKPOINT")
            maintenance_s = time.perf_counter() - t0
            r: dict[str, Any] = {
                "preload": {
                    "rows_added": add,
                    "seconds": round(load_s, 1),
                    "rows_per_s": round(add / load_s) if load_s > 0 else None,
                    "vacuum_analyze_checkpoint_s": round(maintenance_s, 1),
                },
            }
            # Our own COPY raised the load: wait (bounded) for it, and other work, to settle.
            r["load_wait"] = await asyncio.to_thread(
                common.wait_for_low_load, args.load_threshold, args.size_wait_s, f"store {size:,}"
            )
            r["load_at_start"] = load3()
            print(
                f"[store] {size:,}: preload {load_s:.1f} s, vacuum+checkpoint "
                f"{maintenance_s:.1f} s; reads ...",
                flush=True,
            )
            r["reads"] = await measure_reads(repo, recorder, loader, args)
            print(f"[store] {size:,}: writes ...", flush=True)
            r["writes"] = await measure_writes(repo, recorder, loader, rows, args)
            print(f"[store] {size:,}: claims ...", flush=True)
            r["claims"] = await measure_claims(repo, loader, rows, args)
            r["load_at_end"] = load3()
            # The bench's own claim/race jobs leave; the relay would have emptied the outbox.
            await loader.execute(
                "DELETE FROM jobs WHERE active_provider = ANY($1::text[])",
                [*CLAIM_PROVIDERS, RACE_PROVIDER, "claim-warm"],
            )
            await loader.execute("DELETE FROM outbox")
            r["table"] = await table_sizes(loader)
            results[str(size)] = r
            if args.explain:
                plans = {**r["reads"].get("plans", {}), **r["writes"].get("plans", {})}
                for name, plan in plans.items():
                    print(f"\n--- {size:,} rows: {name}\n{plan}", flush=True)
        return {
            "server": f"PostgreSQL {server}",
            "settings": settings,
            "workers": WORKERS,
            "pool": POOL_SIZE,
            "sizes": results,
        }
    finally:
        for c in (loader, *copiers):
            await c.close()
        await pool.close()


# -- report -----------------------------------------------------------------------------------


def _k(size: str) -> str:
    n = int(size)
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def _lat(d: dict[str, Any], *keys: str) -> str:
    return " / ".join("-" if d.get(k) is None else f"{d[k]:.2f}" for k in keys)


def table_lines(result: dict[str, Any]) -> list[str]:
    """One row per figure, one column per size."""
    sizes = result.get("sizes", {})
    cols = list(sizes)
    table: list[tuple[str, list[str]]] = []

    def row(label: str, get: Callable[[dict[str, Any]], str]) -> None:
        cells = []
        for s in cols:
            try:
                cells.append(get(sizes[s]))
            except (KeyError, TypeError, ValueError):
                cells.append("-")
        table.append((label, cells))

    def tab(r: dict[str, Any]) -> str:
        t = r["table"]
        return (
            f"{t['jobs_total_mib']:.0f} ({t['jobs_heap_mib']:.0f}+{t['jobs_toast_mib']:.0f}"
            f"+{t['jobs_indexes_mib']:.0f})"
        )

    def loads(values: list[float]) -> str:
        return " ".join(f"{x:.2f}" for x in values)

    def write_lat(kind: str, r: dict[str, Any]) -> str:
        return _lat(r["writes"][kind], "p50", "p99", "max")

    def write_rate(kind: str, r: dict[str, Any]) -> str:
        w = r["writes"][kind]
        return (
            f"{w['ops_per_s']:,.0f} ({w['client_cpu_ms_per_op']:.2f} / "
            f"{w['server_cpu_ms_per_op']:.2f})"
        )

    def serial_lat(kind: str, r: dict[str, Any]) -> str:
        return _lat(r["writes"]["serial"][kind], "p50", "p99", "max")

    def read_lat(kind: str, r: dict[str, Any]) -> str:
        d = r["reads"][kind]
        return _lat(d, "p50", "p99") + f" ({d['client_cpu_ms_per_op']:.1f}) [{d['returned']}]"

    row(
        "jobs rows / job_tasks rows",
        lambda r: f"{r['table']['jobs_rows']:,} / {r['table']['job_tasks_rows']:,}",
    )
    row("jobs MiB total (heap+toast+indexes)", tab)
    row(
        "preload rows added / rows/s",
        lambda r: f"{r['preload']['rows_added']:,} / {r['preload']['rows_per_s'] or 0:,}",
    )
    row(
        "waited for load < threshold (s)",
        lambda r: (
            f"{r['load_wait']['waited_s']:.0f}"
            + ("" if r["load_wait"]["low_load_reached"] else " (not reached)")
        ),
    )
    row("load avg 1/5/15 at start", lambda r: loads(r["load_at_start"]))
    row("load avg 1/5/15 at end", lambda r: loads(r["load_at_end"]))
    row("CLAIMS claim_queued x8: jobs claimed/s", lambda r: f"{r['claims']['claims_per_s']:,.0f}")
    row(
        "  claim_queued call p50/p99/max ms",
        lambda r: _lat(r["claims"]["call_ms"], "p50", "p99", "max"),
    )
    row(
        "  contended transition x8: claims/s",
        lambda r: f"{r['claims']['contended']['claims_per_s']:,.0f}",
    )
    row(
        "  contended: winners / jobs",
        lambda r: f"{r['claims']['contended']['winners']} / {r['claims']['contended']['jobs']}",
    )
    row(
        "  contended call p50/p99/max ms",
        lambda r: _lat(r["claims"]["contended"]["call_ms"], "p50", "p99", "max"),
    )
    for kind, label in (
        ("update_attempt_in", "WRITES x8 update attempt_in"),
        ("update_inc_task_announce", "update inc+index_task+announce"),
        ("transition_announce", "transition+announce"),
        ("transition_no_announce", "transition (no announce)"),
        ("get", "get by id"),
        ("find_by_task", "find_by_task"),
    ):
        row(f"{label} p50/p99/max ms", partial(write_lat, kind))
        row("  ops/s (CPU ms/op: client / server)", partial(write_rate, kind))
    for kind, label in (
        ("ping_select_1", "ONE WORKER: SELECT 1"),
        ("commit_one_row_update", "one-row UPDATE commit"),
        ("update_attempt_in", "update attempt_in"),
        ("transition_announce", "transition+announce"),
    ):
        row(f"{label} p50/p99/max ms", partial(serial_lat, kind))
    for read in (
        "find_stale",
        "count_by_state",
        "next_queued_all",
        "next_queued_provider",
        "count_queued_before",
        "list_jobs_first_page",
        "list_jobs_deep_page",
    ):
        row(f"READS {read} p50/p99 ms (client CPU) [n]", partial(read_lat, read))
    label_w = max(len(label) for label, _ in table)
    col_w = [max(len(_k(s)), *(len(cells[i]) for _, cells in table)) for i, s in enumerate(cols)]
    title = f"store ({result.get('server', '?')})"
    lines = [
        f"{title:<{label_w}}  " + "  ".join(f"{_k(s):>{col_w[i]}}" for i, s in enumerate(cols)),
        "-" * (label_w + sum(c + 2 for c in col_w)),
    ]
    for label, cells in table:
        lines.append(
            f"{label:<{label_w}}  " + "  ".join(f"{c:>{col_w[i]}}" for i, c in enumerate(cells))
        )
    lines.append(
        "targets (not asserted): transition p99 < 5 ms and flat from 10k to 1M rows; "
        f"{result.get('workers')} workers, pool {result.get('pool')}"
    )
    return lines


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(benchmark, figure, value, target) rows for `python -m tests.bench`'s summary."""
    out: list[tuple[str, str, str, str]] = []
    for size, r in result.get("sizes", {}).items():
        k = _k(size)
        try:
            t = r["writes"]["transition_announce"]
            ts = r["writes"]["serial"]["transition_announce"]
            u = r["writes"]["update_attempt_in"]
            c = r["claims"]
            out += [
                (
                    "store",
                    f"{k} rows: transition+announce, 8 workers p50 / p99",
                    f"{t['p50']:.2f} / {t['p99']:.2f} ms",
                    "p99 < 5 ms, flat",
                ),
                (
                    "store",
                    f"{k} rows: transition+announce, 1 worker p50 / p99",
                    f"{ts['p50']:.2f} / {ts['p99']:.2f} ms",
                    "",
                ),
                (
                    "store",
                    f"{k} rows: update attempt_in p50 / p99",
                    f"{u['p50']:.2f} / {u['p99']:.2f} ms",
                    "",
                ),
                (
                    "store",
                    f"{k} rows: claims/s (claim_queued / contended)",
                    f"{c['claims_per_s']:,.0f} / {c['contended']['claims_per_s']:,.0f}",
                    "",
                ),
                (
                    "store",
                    f"{k} rows: load avg at start",
                    " ".join(map(str, r["load_at_start"])),
                    "",
                ),
            ]
        except (KeyError, TypeError):
            out.append(("store", f"{k} rows", "incomplete", ""))
    return out


# -- entry points -----------------------------------------------------------------------------


async def _create_database(base: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    name = f"reelforge_bench_store_{time.strftime('%Y%m%d_%H%M%S')}_{secrets.token_hex(3)}"
    admin_uri = with_database(base, "postgres")

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_uri, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    await admin(f'CREATE DATABASE "{name}"')

    async def drop() -> None:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return with_database(base, name), drop


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from shared.settings import InfraSettings

    base = InfraSettings().job_store_uri
    uri, drop = await _create_database(base)
    print(f"[store] throwaway database {redacted(uri)}", flush=True)
    try:
        result = await measure(uri, args)
    finally:
        if args.keep_db:
            print(f"[store] kept {redacted(uri)}", flush=True)
        else:
            await drop()
    result["database"] = redacted(uri).rsplit("/", 1)[-1] + (" (kept)" if args.keep_db else "")
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The `store` part of `python -m tests.bench`: measure, print the table, return figures."""
    if getattr(args, "store_quick", False):
        args.store_sizes = list(QUICK_SIZES)
    load = common.wait_for_low_load(args.load_threshold, args.load_wait_s, "store")
    started = time.monotonic()
    result = asyncio.run(_run(args))
    result["wall_s"] = round(time.monotonic() - started, 1)
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    module = spec.name.removesuffix(".__main__") if spec else "tests.bench.store_bench"
    result["command"] = " ".join(["python -m", module, *sys.argv[1:]])
    result["conditions"] = {"load": load, "load_after": common.load_note()}
    print()
    print("\n".join(table_lines(result)), flush=True)
    print(f"[store] total {result['wall_s']:.0f} s", flush=True)
    return result


def _sizes(text: str) -> list[int]:
    return [int(s.replace("_", "")) for s in text.split(",") if s.strip()]


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "store-") -> None:
    """Options of this benchmark; `python -m tests.bench` adds them as --store-*."""
    g = parser.add_argument_group("store")
    g.add_argument(
        f"--{prefix}sizes",
        dest="store_sizes",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        help="job rows to measure at, comma separated, ascending (rows are added)",
    )
    g.add_argument(
        f"--{prefix}quick",
        dest="store_quick",
        action="store_true",
        help=f"sizes {','.join(map(str, QUICK_SIZES))}",
    )
    g.add_argument(
        f"--{prefix}claim-jobs",
        dest="claim_jobs",
        type=int,
        default=2000,
        help="queued jobs added for the claim phase (on top of the size, then deleted)",
    )
    g.add_argument(f"--{prefix}claim-batch", dest="claim_batch", type=int, default=10)
    g.add_argument(
        f"--{prefix}claim-rounds",
        dest="claim_rounds",
        type=int,
        default=4,
        help="times the claim queue is filled and emptied",
    )
    g.add_argument(f"--{prefix}race-jobs", dest="race_jobs", type=int, default=500)
    g.add_argument(
        f"--{prefix}write-ops", dest="write_ops", type=int, default=2000, help="per kind"
    )
    g.add_argument(f"--{prefix}write-jobs", dest="write_jobs", type=int, default=2000)
    g.add_argument(f"--{prefix}read-reps", dest="read_reps", type=int, default=30)
    g.add_argument(
        f"--{prefix}serial-ops",
        dest="serial_ops",
        type=int,
        default=400,
        help="per kind, one worker (service time without queueing)",
    )
    g.add_argument(
        f"--{prefix}size-wait-s",
        dest="size_wait_s",
        type=float,
        default=30.0,
        help="at each size, after the preload: max wait for the load to fall below "
        "--load-threshold before measuring",
    )
    g.add_argument(
        f"--{prefix}load-connections",
        dest="load_connections",
        type=int,
        default=2,
        help="parallel COPY connections for the preload",
    )
    g.add_argument(f"--{prefix}seed", dest="seed", type=int, default=5)
    g.add_argument(
        f"--{prefix}explain",
        dest="explain",
        action="store_true",
        help="print EXPLAIN (ANALYZE, BUFFERS) of each read at each size",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, prefix="")
    common.add_common_arguments(parser)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
