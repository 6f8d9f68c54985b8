"""Detection benchmark: how long after the provider finishes the pipeline knows it, and how many
status calls it spends per job, against the naive fixed 5 s poll loop, all in the same run.

Three groups of N tasks with the same spread of render times (`[render:x]`, x from LO to HI s):
  (a) webhooks:     jobs on `openai` through the pipeline; the emulator sends `video.completed`
                    to intake /hooks/openai -> TaskHinted -> the poller polls at once
  (b) polling only: jobs on `runway` through the pipeline (Runway has no webhooks): the
                    poller's adaptive schedule (services/poller/logic.py `next_delay`)
  (c) naive:        this script creates tasks directly at the emulator's OpenAI API and polls
                    each one every 5 s from its creation until it is completed

Provider finish time: the emulator's own `finish_at` for the task (`/_emulator/tasks`, sampled
every second while the run lasts, since re-hosted OpenAI/Runway tasks are deleted there).
Detection delay = our detection time - finish_at, where our detection time is the job record's
`attempts[].finished_at` (set by the poller when a status call showed success) for (a)/(b), and
the return of the status call that showed `completed` for (c).
Status calls per job: the emulator's status-call counters (`/_emulator/stats`) over the run,
per provider, for (a)/(b) (for `openai` minus the naive loop's own calls, which it counts); the
naive loop's own count for (c).
The poller's render-time prior is the catalog's (sora-2: 120 s, gen4.5: 60 s), not the
emulator's: the poller must find the finish by itself.

    python -m tests.bench.detection_bench [--detection-n 20 --detection-lo 20 --detection-hi 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from tests.bench.common import API, AUTH, EMULATOR, OutcomeCollector, summary  # noqa: E402

NAIVE_INTERVAL_S = 5.0
NAIVE_KEY = {"Authorization": "Bearer naive-bench-key"}


def render_times(n: int, lo: float, hi: float) -> list[float]:
    return [round(lo + (hi - lo) * i / max(1, n - 1), 1) for i in range(n)]


class FinishTimes:
    """finish_at per emulator task id, sampled while tasks still exist there."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.finish_at: dict[str, float] = {}
        self.created_at: dict[str, float] = {}

    async def sample(self) -> None:
        try:
            rows = (await self.client.get(f"{EMULATOR}/_emulator/tasks")).json()["tasks"]
        except Exception:
            return
        for row in rows:
            self.finish_at[row["id"]] = float(row["finish_at"])
            self.created_at[row["id"]] = float(row["created_at"])

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def naive_loop(
    client: Any, seconds: list[float], tag: str, timeout_s: float
) -> list[dict[str, Any]]:
    """Create one task per render time at the emulator, then poll each every 5 s."""

    async def one(i: int, render: float) -> dict[str, Any]:
        body = {
            "prompt": f"naive {tag} {i} a lantern in the fog [render:{render}]",
            "model": "sora-2",
            "seconds": "4",
            "size": "1280x720",
        }
        created = (
            await client.post(f"{EMULATOR}/openai/v1/videos", json=body, headers=NAIVE_KEY)
        ).json()
        video_id, t0 = created["id"], time.time()
        calls = 0
        deadline = time.monotonic() + timeout_s
        k = 1
        while time.monotonic() < deadline:
            await asyncio.sleep(max(0.0, t0 + k * NAIVE_INTERVAL_S - time.time()))
            k += 1
            r = await naive_status(client, video_id)
            calls += 1
            if r.json().get("status") in ("completed", "failed"):
                return {
                    "id": video_id,
                    "render_s": render,
                    "seen_at": time.time(),
                    "calls": calls,
                    "status": r.json()["status"],
                }
        return {
            "id": video_id,
            "render_s": render,
            "seen_at": None,
            "calls": calls,
            "status": "timeout",
        }

    return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(seconds))))


async def naive_status(client: Any, video_id: str) -> Any:
    """GET one status for the naive loop. A request on a keep-alive connection that the server
    closed as idle (uvicorn closes after 5 s, the loop's own interval) fails before reaching
    the app; it is sent again on a new connection, as any client would."""
    import httpx

    url = f"{EMULATOR}/openai/v1/videos/{video_id}"
    for attempt in range(3):
        try:
            return await client.get(url, headers=NAIVE_KEY)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def submit(
    client: Any, collector: OutcomeCollector, provider: str, i: int, render: float, tag: str
) -> str | None:
    body = {
        "prompt": f"{provider} {tag} {i} a kite over dunes [render:{render}]",
        "duration_s": 4,
        "policy": "explicit",
        "provider": provider,
        "allow_fallback": False,
        "metadata": {"bench": tag, "render_s": str(render)},
    }
    r = await client.post(f"{API}/v1/jobs", json=body, headers=AUTH)
    if r.status_code != 202:
        print(f"[detection] submit {provider} failed: {r.status_code} {r.text[:200]}", flush=True)
        return None
    job_id = str(r.json()["job_id"])
    collector.expect(job_id)
    return job_id


def pipeline_rows(jobs: dict[str, Any], finish: FinishTimes) -> list[dict[str, Any]]:
    rows = []
    for job in jobs.values():
        for attempt in job.attempts.values():
            if attempt.task is None:
                continue
            fin = finish.finish_at.get(attempt.task.task_id)
            detected = attempt.finished_at.timestamp() if attempt.finished_at else None
            rows.append(
                {
                    "job_id": job.job_id,
                    "state": job.state.value,
                    "render_s": float(job.request.metadata.get("render_s", "nan")),
                    "finish_at": fin,
                    "detected_at": detected,
                    "delay_s": detected - fin if fin is not None and detected is not None else None,
                }
            )
    return rows


def group(rows: list[dict[str, Any]], status_calls: int, jobs: int) -> dict[str, Any]:
    delays = [r["delay_s"] for r in rows if r.get("delay_s") is not None]
    return {
        "tasks": jobs,
        "detected": len(delays),
        "detection_delay_s": summary(delays),
        "status_calls": status_calls,
        "status_calls_per_job": round(status_calls / jobs, 2) if jobs else None,
    }


async def measure(args: argparse.Namespace, database: str) -> dict[str, Any]:
    import httpx

    tag = f"det-{secrets.token_hex(3)}"
    seconds = render_times(args.detection_n, args.detection_lo, args.detection_hi)
    collector = OutcomeCollector(tag)
    await collector.start()
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            finish = FinishTimes(client)
            stop = asyncio.Event()
            sampler = asyncio.create_task(finish.run(stop))
            stats0 = await common.emulator_stats(client)
            naive = asyncio.create_task(naive_loop(client, seconds, tag, args.detection_timeout_s))
            ids: dict[str, list[str]] = {"openai": [], "runway": []}
            for i, render in enumerate(seconds):
                for provider in ids:
                    job_id = await submit(client, collector, provider, i, render, tag)
                    if job_id:
                        ids[provider].append(job_id)
            print(
                f"[detection] submitted {sum(map(len, ids.values()))} jobs and {len(seconds)} "
                f"naive tasks, render {seconds[0]}-{seconds[-1]} s; waiting "
                f"(max {args.detection_timeout_s:.0f} s) ...",
                flush=True,
            )
            await collector.wait_all([j for v in ids.values() for j in v], args.detection_timeout_s)
            naive_rows = await naive
            await asyncio.sleep(2)  # the last status counters
            stats1 = await common.emulator_stats(client)
            stop.set()
            await sampler
    finally:
        await collector.stop()

    naive_calls = sum(r["calls"] for r in naive_rows)
    for r in naive_rows:
        fin = finish.finish_at.get(r["id"])
        r["finish_at"] = fin
        r["delay_s"] = r["seen_at"] - fin if r["seen_at"] is not None and fin is not None else None
    out: dict[str, Any] = {"render_times_s": seconds}
    for provider, label in (("openai", "webhook"), ("runway", "polling")):
        jobs = await common.load_jobs(database, ids[provider])
        calls = common.stats_delta(stats0, stats1, provider, "status")
        if provider == "openai":
            calls -= naive_calls
        rows = pipeline_rows(jobs, finish)
        out[label] = {
            "provider": provider,
            **group(rows, calls, len(ids[provider])),
            "job_states": {
                s: sum(1 for j in jobs.values() if j.state.value == s)
                for s in {j.state.value for j in jobs.values()}
            },
        }
        out[label]["rows"] = [
            {
                k: (round(v, 3) if isinstance(v, float) else v)
                for k, v in r.items()
                if k in ("render_s", "delay_s", "state")
            }
            for r in rows
        ]
    out["naive_5s"] = {
        "provider": "openai (direct)",
        **group(naive_rows, naive_calls, len(naive_rows)),
        "rows": [
            {
                "render_s": r["render_s"],
                "delay_s": round(r["delay_s"], 3) if r["delay_s"] is not None else None,
                "calls": r["calls"],
            }
            for r in naive_rows
        ],
    }
    for label in ("webhook", "polling"):
        ours, naive_cpj = (
            out[label]["status_calls_per_job"],
            out["naive_5s"]["status_calls_per_job"],
        )
        out[label]["fewer_calls_than_naive_x"] = round(naive_cpj / ours, 2) if ours else None
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from deploy.stack import default_specs

    load = common.wait_for_low_load(args.load_threshold, args.load_wait_s, "detection")
    database = common.fresh_database("detection")
    env = {
        "JOB_STORE_URI": database,
        "EMULATOR_RENDER_SCALE": "0.25",
        "EMULATOR_QUEUE_SECONDS": "0.5",
        "EMULATOR_RUNWAY_CONCURRENCY": "100",
        "DISPATCHER_CONCURRENCY": "openai:100,runway:100",
    }
    specs = default_specs(render_seconds=args.detection_lo)
    for spec in specs:  # the catalog's render-time priors, not the emulator's setting
        spec.env.pop("POLLER_EXPECTED_RENDER_S", None)
        spec.env.pop("DISPATCHER_EXPECTED_RENDER_S", None)
    run_dir = common.BENCH_DIR / f"run-{time.strftime('%Y%m%d-%H%M%S')}-detection"
    stack = common.start_stack("detection", specs, env, run_dir, args.port_wait_s)
    try:
        result = asyncio.run(measure(args, database))
    finally:
        stack.stop_all()
        if not args.keep_db:
            asyncio.run(common.drop_database(database))
    result["conditions"] = {
        "load": load,
        "load_after": common.load_note(),
        "database": database,
        "env": env,
        "logs": str(run_dir),
        "tasks_per_group": args.detection_n,
        "naive_interval_s": NAIVE_INTERVAL_S,
    }
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("detection")
    g.add_argument("--detection-n", type=int, default=20, help="tasks per group")
    g.add_argument("--detection-lo", type=float, default=20.0, help="shortest render, s")
    g.add_argument("--detection-hi", type=float, default=60.0, help="longest render, s")
    g.add_argument("--detection-timeout-s", type=float, default=240.0, help="max wait for all jobs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    common.add_common_arguments(parser)
    print(json.dumps(run(parser.parse_args()), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
