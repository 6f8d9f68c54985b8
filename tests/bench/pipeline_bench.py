"""Pipeline benchmark: end-to-end throughput and per-job overhead with an instant emulator.

The whole stack runs as processes (emulator, intake, dispatcher, one poller per provider,
storage, notifier, reconciler, qc) on the real Kafka, PostgreSQL and MinIO, on a fresh database
(optionally preloaded with `--history` finished jobs, as a store that has run for a while).
Jobs go to one provider (OpenAI on the emulator: 4 s clips, rendered at 320x180, the same
prompt so the emulator encodes the clip once and every job re-hosts and probes its own copy).

Phases (same stack, one after the other, in the order of --phases):
  saturation: CONCURRENCY closed-loop clients for WARMUP_S + WINDOW_S -> jobs/s sustained,
              counted as `reelforge.job.completed` events (of any job of this run) received
              within the WINDOW_S window, then a bounded drain of what is still in flight
  fixed:      jobs submitted open-loop at each of RATES jobs/s for FIXED_S seconds -> overhead
              p50/p99 per rate

Overhead of one job (printed with the results):
  overhead = t_completed - job.created_at - provider_time
  t_completed   = `time` of the job's JobCompleted event on `jobs-finished` (storage sets it right
                  after writing the job record `completed`)
  provider_time = the emulator task's queue + render time (EMULATOR_QUEUE_SECONDS +
                  EMULATOR_RENDER_SECONDS = 0 here: the provider answers `completed` at once);
                  the emulator's background MP4 encode is cached after the first job and is
                  not counted.
Breakdown: intake+dispatch = attempt.submitted_at - created_at; detection = attempt.finished_at
(poller saw success) - attempt.submitted_at; storage+complete = t_completed - attempt.finished_at.

    python -m tests.bench.pipeline_bench [--rates 20,50 --fixed-s 30 --concurrency 150
                                          --window-s 60 --history 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.bench import common  # noqa: E402
from tests.bench.common import API, AUTH, OutcomeCollector, summary  # noqa: E402

PROVIDER = "openai"
EXPECTED_RENDER_S = "0.01"
DEFINITION = (
    "overhead = t_completed - job.created_at - provider_time; t_completed = `time` of the "
    "JobCompleted event (storage, right after the record is `completed`); provider_time = "
    "emulator queue+render time = 0 s (instant emulator)"
)


def job_body(tag: str) -> dict[str, Any]:
    return {
        "prompt": "a paper boat on a pond (pipeline bench)",
        "duration_s": 4,
        "policy": "explicit",
        "provider": PROVIDER,
        "metadata": {"bench": tag},
    }


class Submitter:
    def __init__(self, client: Any, collector: OutcomeCollector, tag: str) -> None:
        self.client = client
        self.collector = collector
        self.tag = tag
        self.errors: dict[str, int] = {}
        self.submitted: dict[str, float] = {}  # job id -> wall time the POST started

    async def submit(self) -> str | None:
        started = time.time()
        try:
            r = await self.client.post(f"{API}/v1/jobs", json=job_body(self.tag), headers=AUTH)
        except Exception as exc:
            key = type(exc).__name__
            self.errors[key] = self.errors.get(key, 0) + 1
            return None
        if r.status_code != 202:
            key = f"http {r.status_code}"
            self.errors[key] = self.errors.get(key, 0) + 1
            return None
        job_id = str(r.json()["job_id"])
        self.submitted[job_id] = started
        self.collector.expect(job_id)
        return job_id


async def fixed_rate(sub: Submitter, rate: float, seconds: float, drain_s: float) -> dict[str, Any]:
    """Open loop: the i-th job is submitted at t0 + i/rate, whatever the pipeline does."""
    count = int(rate * seconds)
    t0 = time.monotonic()
    cpu0 = common.machine_cpu()
    tasks = []
    for i in range(count):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(sub.submit()))
    ids = [j for j in await asyncio.gather(*tasks) if j]
    offered_s = time.monotonic() - t0
    await sub.collector.wait_all(ids, drain_s)
    cpu1 = common.machine_cpu()
    return {
        "ids": ids,
        "offered_jobs": count,
        "accepted_jobs": len(ids),
        "offered_seconds": round(offered_s, 2),
        "machine_cpu_pct": round(100 * (cpu1[0] - cpu0[0]) / max(1, cpu1[1] - cpu0[1]), 1),
        "load_after": common.load_note(),
    }


async def closed_loop(
    sub: Submitter,
    concurrency: int,
    warmup_s: float,
    window_s: float,
    job_timeout_s: float,
    drain_s: float,
) -> dict[str, Any]:
    start = time.time()
    w0, w1 = start + warmup_s, start + warmup_s + window_s
    timeouts = 0

    async def client_loop() -> None:
        nonlocal timeouts
        while time.time() < w1:
            job_id = await sub.submit()
            if job_id is None:
                await asyncio.sleep(0.2)
                continue
            try:
                await asyncio.wait_for(asyncio.shield(sub.collector.expect(job_id)), job_timeout_s)
            except TimeoutError:
                timeouts += 1

    cpu = []

    async def sample_cpu() -> None:
        await asyncio.sleep(max(0.0, w0 - time.time()))
        cpu.append(common.machine_cpu())
        await asyncio.sleep(max(0.0, w1 - time.time()))
        cpu.append(common.machine_cpu())

    sampler = asyncio.create_task(sample_cpu())
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    await sampler
    ids = list(sub.submitted)
    # Every completion of this benchmark's jobs within the window counts (also of jobs
    # submitted before it): the rate at which the pipeline finishes work with a full queue.
    in_window = [
        o
        for o in sub.collector.by_job.values()
        if w0 <= o.received < w1 and o.type.endswith("completed")
    ]
    submitted_in_window = [j for j, t in sub.submitted.items() if w0 <= t < w1]
    await sub.collector.wait_all(ids, drain_s)  # let the tail finish before anything else runs
    return {
        "ids": ids,
        "concurrency": concurrency,
        "warmup_s": warmup_s,
        "window_s": window_s,
        "completed_in_window": len(in_window),
        "jobs_per_s": round(len(in_window) / window_s, 2),
        "submitted_in_window": len(submitted_in_window),
        "client_timeouts": timeouts,
        "machine_cpu_pct": round(100 * (cpu[1][0] - cpu[0][0]) / max(1, cpu[1][1] - cpu[0][1]), 1)
        if len(cpu) == 2
        else None,
        "load_after": common.load_note(),
    }


def overheads(
    jobs: dict[str, Any],
    collector: OutcomeCollector,
    submitted: dict[str, float],
    provider_time_s: float,
) -> dict[str, Any]:
    over, admit, detect, store, consumer_lag, client_seen = [], [], [], [], [], []
    states: dict[str, int] = {}
    for job_id, job in jobs.items():
        states[job.state.value] = states.get(job.state.value, 0) + 1
        outcome = collector.by_job.get(job_id)
        if outcome is None or not outcome.type.endswith("completed"):
            continue
        attempt = job.attempts.get(job.picked_attempt or "") or next(iter(job.attempts.values()))
        created = job.created_at.timestamp()
        over.append(outcome.event_time - created - provider_time_s)
        if attempt.submitted_at and attempt.finished_at:
            admit.append(attempt.submitted_at.timestamp() - created)
            detect.append(attempt.finished_at.timestamp() - attempt.submitted_at.timestamp())
            store.append(outcome.event_time - attempt.finished_at.timestamp())
        consumer_lag.append(outcome.received - outcome.event_time)
        if job_id in submitted:
            client_seen.append(outcome.received - submitted[job_id])
    return {
        "overhead_s": summary(over),
        "states": states,
        "breakdown_s": {
            "intake_dispatch_submit": summary(admit),
            "detection": summary(detect),
            "storage_complete": summary(store),
            "event_to_bench_consumer": summary(consumer_lag),
            "client_post_to_event_received": summary(client_seen),
        },
    }


async def measure(args: argparse.Namespace, database: str) -> dict[str, Any]:
    import httpx

    tag = f"pipe-{secrets.token_hex(4)}"
    collector = OutcomeCollector(tag)
    await collector.start()
    limits = httpx.Limits(
        max_connections=args.concurrency + 50, max_keepalive_connections=args.concurrency + 50
    )
    out: dict[str, Any] = {"definition": DEFINITION}
    try:
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            config = (await client.get(f"{common.EMULATOR}/_emulator/config")).json()
            provider_time = float(config["queue_seconds"]) + float(config["render_seconds"])
            out["emulator"] = {
                "queue_seconds": config["queue_seconds"],
                "render_seconds": config["render_seconds"],
            }
            # Warm-up: the emulator's one MP4 encode, connection pools, consumer assignments.
            warm = Submitter(client, collector, tag)
            await asyncio.sleep(5)  # consumer groups settle (and skip other runs' backlog)
            warm_ids = [
                j
                for j in await asyncio.gather(*(warm.submit() for _ in range(args.warmup_jobs)))
                if j
            ]
            await collector.wait_all(warm_ids, 90)
            print(
                f"[pipeline] warm-up: {len(warm.submitted)} jobs, "
                f"{sum(1 for j in warm.submitted if j in collector.by_job)} finished",
                flush=True,
            )

            async def run_fixed(rate: float) -> None:
                stats0 = await common.emulator_stats(client)
                fixed = Submitter(client, collector, tag)
                print(f"[pipeline] fixed load {rate} jobs/s for {args.fixed_s} s ...", flush=True)
                f = await fixed_rate(fixed, rate, args.fixed_s, args.drain_s)
                stats1 = await common.emulator_stats(client)
                jobs = await common.load_jobs(database, f["ids"])
                f.update(overheads(jobs, collector, fixed.submitted, provider_time))
                f["completed"] = sum(
                    1
                    for j in f["ids"]
                    if collector.by_job.get(j) and collector.by_job[j].type.endswith("completed")
                )
                f["submit_errors"] = fixed.errors
                f["status_calls_per_job"] = round(
                    common.stats_delta(stats0, stats1, PROVIDER, "status") / max(1, len(f["ids"])),
                    2,
                )
                del f["ids"]
                out.setdefault("fixed_rates", {})[f"{rate:g}"] = {
                    "offered_rate_jobs_per_s": rate,
                    **f,
                }
                print(f"[pipeline] fixed load {rate}: {json.dumps(f['overhead_s'])}", flush=True)

            async def run_saturation() -> None:
                sat = Submitter(client, collector, tag)
                print(
                    f"[pipeline] saturation: {args.concurrency} closed-loop clients, "
                    f"{args.warmup_s} s warm-up + {args.window_s} s window ...",
                    flush=True,
                )
                s = await closed_loop(
                    sat,
                    args.concurrency,
                    args.warmup_s,
                    args.window_s,
                    args.job_timeout_s,
                    args.drain_s,
                )
                jobs = await common.load_jobs(database, s["ids"])
                s.update(overheads(jobs, collector, sat.submitted, provider_time))
                s["submit_errors"] = sat.errors
                del s["ids"]
                out["saturation"] = s
                print(
                    f"[pipeline] saturation: {s['jobs_per_s']} jobs/s completed in the window",
                    flush=True,
                )

            rates = [float(r) for r in str(args.rates).split(",") if r.strip()]
            for i, phase in enumerate(args.phases.split(",")):
                if i:
                    await asyncio.sleep(3)
                if phase.strip() == "saturation":
                    await run_saturation()
                    continue
                for k, rate in enumerate(rates):
                    if k:
                        await asyncio.sleep(3)
                    await run_fixed(rate)
            out["duplicate_outcome_events"] = collector.duplicates
    finally:
        await collector.stop()
    return out


async def preload_history(uri: str, n: int) -> dict[str, Any]:
    """`n` finished jobs (completed, failed, cancelled; half of them the bench tenant's), each
    with a recorded provider task, written server-side in one statement each, then ANALYZE."""
    from shared.jobs import Attempt, AttemptState, Job, JobRequest, JobState, StoredVideo
    from shared.pg import connect_pool
    from shared.pg_repository import _doc_of
    from shared.providers.base import TaskRef

    task = TaskRef(provider=PROVIDER, model="sora-2", task_id="history")
    video = StoredVideo(bucket="b", object_key="k.mp4", sha256="0" * 64, size_bytes=1)
    attempt = Attempt(
        attempt_id="c0-0", provider=PROVIDER, model="sora-2", state=AttemptState.STORED, task=task
    )
    template = Job(
        job_id="template",
        tenant_id="demo",
        request=JobRequest(**job_body("history")),
        state=JobState.COMPLETED,
        attempts={"c0-0": attempt},
        result=video,
        picked_attempt="c0-0",
        progress=1.0,
    )
    started = time.monotonic()
    pool = await connect_pool(uri, min_size=1, max_size=2)
    try:
        await pool.execute(
            "INSERT INTO jobs (id, tenant_id, state, version, idem, active_provider, slots,"
            " created_at, updated_at, doc)"
            " SELECT 'job_hist_' || g, CASE WHEN g % 2 = 0 THEN 'demo' ELSE 'other' END,"
            " (ARRAY['completed', 'failed', 'cancelled'])[1 + g % 3], 9, 'job_hist_' || g,"
            " $3, 1, now() - interval '2 days' + g * interval '1 ms',"
            " now() - interval '2 days' + g * interval '1 ms', $1::jsonb"
            " FROM generate_series(1, $2) AS g",
            _doc_of(template),
            n,
            PROVIDER,
        )
        await pool.execute(
            "INSERT INTO job_tasks (provider, task_id, job_id)"
            " SELECT $2, 'hist-' || g, 'job_hist_' || g FROM generate_series(1, $1) AS g",
            n,
            PROVIDER,
        )
        await pool.execute("ANALYZE")
        rows = await pool.fetchval("SELECT count(*) FROM jobs")
    finally:
        await pool.close()
    print(f"[pipeline] preloaded {n} finished jobs in {time.monotonic() - started:.1f} s")
    return {"finished_jobs": n, "rows": rows, "seconds": round(time.monotonic() - started, 1)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from deploy.stack import default_specs

    load = common.wait_for_low_load(args.load_threshold, args.load_wait_s, "pipeline")
    database = common.fresh_database("pipeline")
    env = {
        "JOB_STORE_URI": database,
        "EMULATOR_QUEUE_SECONDS": "0",
        "EMULATOR_RENDER_SCALE": "0.25",
        "EMULATOR_OPENAI_POLL_AFTER_MS": "0",
        "DISPATCHER_CONCURRENCY": f"{PROVIDER}:1000",
        # The benchmark measures the pipeline, not the per-tenant limits (0: no limit).
        "INTAKE_DEFAULT_REQUESTS_PER_MINUTE": "0",
        "INTAKE_DEFAULT_MAX_ACTIVE_JOBS": "0",
        "POLLER_MIN_INTERVAL_S": str(args.poller_min_interval_s),
    }
    specs = default_specs(render_seconds=0.0)
    # The services read an expected render time of 0 as "unset" (`x or catalog prior`) and would
    # then wait for the catalog's 120 s prior; a tiny positive value means "instant" to them.
    for spec in specs:
        for key in ("POLLER_EXPECTED_RENDER_S", "DISPATCHER_EXPECTED_RENDER_S"):
            if key in spec.env:
                spec.env[key] = EXPECTED_RENDER_S
    history = asyncio.run(preload_history(database, args.history)) if args.history else None
    run_dir = common.BENCH_DIR / f"run-{time.strftime('%Y%m%d-%H%M%S')}-pipeline"
    stack = common.start_stack("pipeline", specs, env, run_dir, args.port_wait_s)
    try:
        result = asyncio.run(measure(args, database))
    finally:
        stack.stop_all()
        if not args.keep_db:
            asyncio.run(common.drop_database(database))
    result["conditions"] = {
        "load": load,
        "database": database,
        "history": history,
        "provider": PROVIDER,
        "clip": "4 s, 320x180 (720p x 0.25), AAC",
        "env": env,
        "expected_render_s (poller, dispatcher)": EXPECTED_RENDER_S,
        "logs": str(run_dir),
        "note": "whole stack + Kafka + PostgreSQL + MinIO + this client on the same 2-core machine",
    }
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("pipeline")
    g.add_argument("--rates", default="20,50", help="fixed offered loads, jobs/s (comma list)")
    g.add_argument(
        "--history", type=int, default=0, help="finished jobs preloaded before measuring"
    )
    g.add_argument("--fixed-s", type=float, default=30.0, help="seconds of fixed load")
    g.add_argument("--concurrency", type=int, default=150, help="closed-loop clients (saturation)")
    g.add_argument("--warmup-s", type=float, default=10.0)
    g.add_argument("--window-s", type=float, default=60.0)
    g.add_argument("--warmup-jobs", type=int, default=20)
    g.add_argument(
        "--phases", default="saturation,fixed", help="order of the phases (saturation,fixed)"
    )
    g.add_argument("--job-timeout-s", type=float, default=120.0)
    g.add_argument("--drain-s", type=float, default=120.0, help="max wait for the tail of a phase")
    g.add_argument(
        "--poller-min-interval-s",
        type=float,
        default=0.1,
        help="POLLER_MIN_INTERVAL_S (the first poll of an instant task waits this long)",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    common.add_common_arguments(parser)
    print(json.dumps(run(parser.parse_args()), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
