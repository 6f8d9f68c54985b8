"""Poller benchmark: one poller process holding 10,000 in-flight tasks: RSS and CPU.

Seeding, without paying for a pipeline run:
  * a private emulator (free port, EMULATOR_RENDER_SECONDS=7200 so nothing finishes during the
    run, EMULATOR_LIFECYCLE_TICK_SECONDS=5 so its webhook watcher does not eat the CPU) gets
    N real Kling text2video tasks created over HTTP (no callback URL: polling only);
  * N job records (state running, one attempt `running` with that task, submitted 0-300 s
    ago, deadline in 3 h) are inserted into a fresh database (MONGODB_DATABASE);
  * one `services.poller` process for kling starts on that database and that emulator
    (KLING_BASE_URL); when Kafka assigns it the partitions of `provider-kling` it resumes every
    task from the records (the restart path), so all N are tracked without any event.
Then, after SETTLE_S, RSS (/proc/PID/status VmRSS, and the peak VmHWM) and CPU
(utime+stime, % of one core) of the poller are sampled every second for WINDOW_S, with the
status calls it made (emulator counters). Schedule settings are the defaults (min 1 s, max 60 s
between polls, the catalog's 150 s render prior for kling-v3), so every task is polled at
least once a minute: the status-call rate is part of the result.

    python -m tests.bench.poller_bench [--poller-tasks 10000 --poller-window-s 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.bench import common  # noqa: E402

MODEL = "kling-v3"


def spawn(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        )


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


async def wait_http(client: Any, url: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            if (await client.get(url)).status_code == 200:
                return
        except Exception:
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} not healthy after {timeout_s:.0f} s")


async def create_tasks(client: Any, base: str, n: int, concurrency: int) -> list[str]:
    from shared.providers.kling import KlingTokenSource

    tokens = KlingTokenSource("emulator-ak", "emulator-sk-reelforge-local-hs256-key")
    body = {
        "model_name": MODEL,
        "prompt": "poller bench: a lantern in the fog",
        "duration": "5",
        "aspect_ratio": "16:9",
        "mode": "std",
    }
    ids: list[str] = []
    queue = iter(range(n))

    async def worker() -> None:
        for _ in queue:
            for _attempt in range(5):
                r = await client.post(
                    f"{base}/kling/v1/videos/text2video",
                    json=body,
                    headers={"Authorization": f"Bearer {tokens.token()}"},
                )
                if r.status_code == 200:
                    ids.append(str(r.json()["data"]["task_id"]))
                    break
                await asyncio.sleep(0.5)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ids


async def insert_jobs(database: str, task_ids: list[str]) -> None:
    from shared.jobs import Attempt, AttemptState, Job, JobRequest, JobState, new_job_id, now
    from shared.pg import connect_pool
    from shared.pg_repository import PgJobRepository
    from shared.providers.base import TaskRef

    rng = random.Random(5)
    pool = await connect_pool(database, min_size=1, max_size=8)
    try:
        repo = PgJobRepository(pool)
        request = JobRequest(
            prompt="poller bench", duration_s=5, policy="explicit", provider="kling"
        )
        at = now()
        jobs: list[Job] = []
        for task_id in task_ids:
            submitted = at - timedelta(seconds=rng.uniform(0, 300))
            attempt = Attempt(
                attempt_id="a1",
                provider="kling",
                model=MODEL,
                state=AttemptState.RUNNING,
                task=TaskRef(
                    provider="kling", model=MODEL, task_id=task_id, extra={"kind": "text2video"}
                ),
                raw_status="processing",
                created_at=submitted,
                submitted_at=submitted,
            )
            job = Job(
                job_id=new_job_id(),
                tenant_id="bench",
                request=request,
                state=JobState.RUNNING,
                active_provider="kling",
                attempts={"a1": attempt},
                created_at=submitted,
                updated_at=submitted,
                deadline_at=at + timedelta(hours=3),
            )
            jobs.append(job)
        gate = asyncio.Semaphore(8)

        async def one(job: Job) -> None:
            async with gate:
                await repo.create(job)
                task = job.attempts["a1"].task
                assert task is not None
                await repo.update(job.job_id, {}, index_task=(task.provider, task.task_id))

        await asyncio.gather(*(one(job) for job in jobs))
    finally:
        await pool.close()


def log_count(path: Path, needle: str) -> int:
    return sum(1 for line in path.read_text(errors="replace").splitlines() if needle in line)


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def measure(args: argparse.Namespace, database: str, run_dir: Path) -> dict[str, Any]:
    import httpx

    emu_port, metrics_port = common.free_port(), common.free_port()
    emu_base = f"http://127.0.0.1:{emu_port}"
    emulator = poller = None
    out: dict[str, Any] = {}
    try:
        emulator = spawn(
            "services.emulator",
            {
                "EMULATOR_PORT": str(emu_port),
                "EMULATOR_RENDER_SECONDS": "7200",
                "EMULATOR_QUEUE_SECONDS": "0",
                "EMULATOR_RENDER_SCALE": "0.25",
                "EMULATOR_LIFECYCLE_TICK_SECONDS": "5",
            },
            run_dir / "emulator.log",
        )
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
            await wait_http(client, f"{emu_base}/_emulator/health", 60, emulator)
            t0 = time.monotonic()
            task_ids = await create_tasks(client, emu_base, args.poller_tasks, 32)
            out["seed_tasks_s"] = round(time.monotonic() - t0, 1)
            t0 = time.monotonic()
            await insert_jobs(database, task_ids)
            out["seed_records_s"] = round(time.monotonic() - t0, 1)
            print(
                f"[poller] seeded {len(task_ids)} tasks ({out['seed_tasks_s']} s) and records "
                f"({out['seed_records_s']} s)",
                flush=True,
            )

            poller = spawn(
                "services.poller",
                {
                    "POLLER_PROVIDER": "kling",
                    "POLLER_METRICS_PORT": str(metrics_port),
                    "JOB_STORE_URI": database,
                    "KLING_BASE_URL": f"{emu_base}/kling",
                },
                run_dir / "poller-kling.log",
            )
            started = time.monotonic()
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            await wait_http(client, f"http://127.0.0.1:{metrics_port}/health", 90, poller)
            inflight = 0.0
            while time.monotonic() - started < args.poller_resume_timeout_s:
                inflight = metric((await client.get(metrics_url)).text, "reelforge_inflight_tasks")
                if inflight >= len(task_ids):
                    break
                await asyncio.sleep(0.5)
            out["resume_all_s"] = round(time.monotonic() - started, 1)
            out["tracked_after_resume"] = int(inflight)
            print(
                f"[poller] tracking {int(inflight)} tasks {out['resume_all_s']} s after start; "
                f"settling {args.poller_settle_s:.0f} s ...",
                flush=True,
            )

            pid = poller.pid
            samples = []
            settle_end = time.monotonic() + args.poller_settle_s
            window_end = settle_end + args.poller_window_s
            stats_w0 = cpu_w0 = wall_w0 = None
            while time.monotonic() < window_end:
                now_m = time.monotonic()
                samples.append(
                    {
                        "t": round(now_m - started, 1),
                        "rss_mib": round(common.proc_rss_mib(pid), 1),
                        "cpu_s": common.proc_cpu_s(pid),
                        "in_window": now_m >= settle_end,
                        "tracked": int(
                            metric((await client.get(metrics_url)).text, "reelforge_inflight_tasks")
                        ),
                    }
                )
                if stats_w0 is None and now_m >= settle_end:
                    stats_w0 = await common.emulator_stats(client, emu_base)
                    cpu_w0, wall_w0 = common.proc_cpu_s(pid), time.monotonic()
                    machine_w0 = common.machine_cpu()
                await asyncio.sleep(1.0)
            stats_w1 = await common.emulator_stats(client, emu_base)
            cpu_w1, wall_w1 = common.proc_cpu_s(pid), time.monotonic()
            machine_w1 = common.machine_cpu()
            text = (await client.get(metrics_url)).text
            assert stats_w0 is not None and cpu_w0 is not None and wall_w0 is not None
            window = [s for s in samples if s["in_window"]]
            polls = common.stats_delta(stats_w0, stats_w1, "kling", "status")
            out.update(
                {
                    "tasks": len(task_ids),
                    "tracked_at_end": int(metric(text, "reelforge_inflight_tasks")),
                    "tracked_in_window_min_max": [
                        min(s["tracked"] for s in window),
                        max(s["tracked"] for s in window),
                    ],
                    "seconds_in_window_with_all_tracked": sum(
                        1 for s in window if s["tracked"] >= len(task_ids)
                    ),
                    # the consumer group evicting the poller (its session timed out) and the
                    # partitions (= all its tasks) revoked and resumed again, from its own log
                    "group_evictions": log_count(run_dir / "poller-kling.log", "not recognized"),
                    "partition_revocations": log_count(
                        run_dir / "poller-kling.log", "revoked partitions [0"
                    ),
                    "resumes": log_count(run_dir / "poller-kling.log", "assigned partitions [0"),
                    "window_s": round(wall_w1 - wall_w0, 1),
                    "rss_mib_window": common.summary([s["rss_mib"] for s in window], 1),
                    "rss_mib_max_whole_run": max(s["rss_mib"] for s in samples),
                    "vmhwm_mib": round(common.proc_hwm_mib(pid), 1),
                    "cpu_pct_of_one_core_window": round(
                        100 * (cpu_w1 - cpu_w0) / (wall_w1 - wall_w0), 1
                    ),
                    "cpu_pct_of_one_core_whole_run": round(
                        100
                        * (cpu_w1 - samples[0]["cpu_s"])
                        / max(1e-9, wall_w1 - started - samples[0]["t"]),
                        1,
                    ),
                    "machine_cpu_pct_window": round(
                        100
                        * (machine_w1[0] - machine_w0[0])
                        / max(1, machine_w1[1] - machine_w0[1]),
                        1,
                    ),
                    "status_calls_window": polls,
                    "status_calls_per_s_window": round(polls / (wall_w1 - wall_w0), 1),
                    "status_calls_total": stats_w1.get("kling", {}).get("status", 0),
                    "rss_timeline": [
                        (s["t"], s["rss_mib"]) for s in samples[:: max(1, len(samples) // 20)]
                    ],
                }
            )
    finally:
        stop(poller)
        stop(emulator)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Our poller joins the `poller-kling` consumer group: another stack's kling poller in that
    # group would split the partitions (and the tasks) with it, so wait until none runs.
    common.wait_for_free_ports(common.STACK_PORTS, args.port_wait_s, "poller")
    load = common.wait_for_low_load(args.load_threshold, args.load_wait_s, "poller")
    database = common.fresh_database("poller")
    run_dir = common.BENCH_DIR / f"run-{time.strftime('%Y%m%d-%H%M%S')}-poller"
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = asyncio.run(measure(args, database, run_dir))
    finally:
        if not args.keep_db:
            asyncio.run(common.drop_database(database))
    result["conditions"] = {
        "load": load,
        "load_after": common.load_note(),
        "database": database,
        "logs": str(run_dir),
        "settle_s": args.poller_settle_s,
        "poller_settings": "defaults (max_concurrent_polls 32, min 1 s, max 60 s)",
    }
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("poller")
    g.add_argument("--poller-tasks", type=int, default=10_000)
    g.add_argument(
        "--poller-settle-s",
        type=float,
        default=45.0,
        help="after all are tracked, before the window",
    )
    g.add_argument("--poller-window-s", type=float, default=60.0, help="measurement window")
    g.add_argument("--poller-resume-timeout-s", type=float, default=180.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    common.add_common_arguments(parser)
    print(json.dumps(run(parser.parse_args()), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
