"""Shared helpers of the pipeline benchmarks: machine load, port checks, a stack on a fresh
database, the outcome collector on `jobs-finished`, emulator admin calls and percentiles.

Benchmarks measure; they assert nothing about speed. Every wait here is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / ".bench"
API = "http://127.0.0.1:8080"
EMULATOR = "http://127.0.0.1:8090"
AUTH = {"Authorization": "Bearer demo-key"}
# The ports the stack of deploy.stack uses (and that e2e runs of other developers may hold).
STACK_PORTS = tuple(range(8080, 8112))


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


def load_note() -> str:
    one, five, fifteen = loadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def wait_for_low_load(threshold: float, max_wait_s: float, label: str) -> dict[str, Any]:
    """Wait (bounded) until the 1-minute load average is below `threshold`; report what was seen."""
    started = time.monotonic()
    before = loadavg()
    while loadavg()[0] >= threshold and time.monotonic() - started < max_wait_s:
        time.sleep(5)
    after = loadavg()
    waited = time.monotonic() - started
    note = {
        "load_before_wait": round(before[0], 2),
        "load_at_start": [round(x, 2) for x in after],
        "waited_s": round(waited, 1),
        "low_load_reached": after[0] < threshold,
        "threshold": threshold,
    }
    print(
        f"[{label}] load average {load_note()} (waited {waited:.0f} s for < {threshold}; "
        f"{'reached' if after[0] < threshold else 'NOT reached, measuring anyway'})",
        flush=True,
    )
    return note


def busy_ports(ports: Iterable[int]) -> list[int]:
    from deploy.stack import port_in_use

    return [p for p in ports if port_in_use(p)]


def wait_for_free_ports(ports: Iterable[int], max_wait_s: float, label: str) -> None:
    """Other developers may run the e2e stack on the same ports: wait (bounded), else give up."""
    ports = tuple(ports)
    deadline = time.monotonic() + max_wait_s
    while True:
        busy = busy_ports(ports)
        if not busy:
            return
        if time.monotonic() >= deadline:
            raise PortsBusy(
                f"[{label}] ports still busy after {max_wait_s:.0f} s: {busy} "
                "(another stack, e.g. an e2e run, is using them)"
            )
        print(f"[{label}] ports busy {busy}; waiting ...", flush=True)
        time.sleep(10)


class PortsBusy(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_database(kind: str) -> str:
    """A new, migrated PostgreSQL database on the job store's server for one benchmark run;
    returns its URI (what the services get as JOB_STORE_URI)."""
    from shared.settings import InfraSettings
    from tests.pg_fixtures import migrated_database

    name = f"reelforge_bench_{kind}_{time.strftime('%Y%m%d_%H%M%S')}"
    uri, _ = asyncio.run(migrated_database(InfraSettings().job_store_uri, name))
    return uri


async def drop_database(uri: str) -> None:
    from urllib.parse import urlsplit

    from tests.pg_fixtures import _admin_execute

    name = urlsplit(uri).path.lstrip("/")
    assert name.startswith("reelforge_bench_"), name  # never drop anything else
    await _admin_execute(uri, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def load_jobs(uri: str, job_ids: list[str]) -> dict[str, Any]:
    """Job records straight from the bench's own database (no HTTP round trip per job)."""
    from shared.pg import connect_pool
    from shared.pg_repository import PgJobRepository

    pool = await connect_pool(uri, min_size=1, max_size=4)
    out: dict[str, Any] = {}
    try:
        repo = PgJobRepository(pool)
        for job_id in job_ids:
            job = await repo.get(job_id)
            if job is not None:
                out[job.job_id] = job
    finally:
        await pool.close()
    return out


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); nan when empty."""
    if not values:
        return math.nan
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(values: list[float], digits: int = 3) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": round(min(values), digits),
        "p50": round(percentile(values, 50), digits),
        "p90": round(percentile(values, 90), digits),
        "p99": round(percentile(values, 99), digits),
        "max": round(max(values), digits),
        "mean": round(sum(values) / len(values), digits),
    }


def ts(value: datetime | str | float) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.timestamp()


@dataclass
class Outcome:
    type: str
    event_time: float  # the event's own `time` (set by the producing service)
    received: float  # when this benchmark's consumer got it (wall clock)
    event: dict[str, Any] = field(repr=False)


class OutcomeCollector:
    """Every event on `jobs-finished` for the job ids this benchmark submitted."""

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag  # also accept events whose job metadata has bench == tag
        self.wanted: set[str] = set()
        self.by_job: dict[str, Outcome] = {}
        self.duplicates = 0
        self._waiters: dict[str, asyncio.Future[Outcome]] = {}
        self._task: asyncio.Task[None] | None = None
        self._consumer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        from shared.settings import InfraSettings
        from shared.topics import Topic

        self._consumer = AIOKafkaConsumer(
            Topic.JOBS_FINISHED.value,
            bootstrap_servers=InfraSettings().kafka_bootstrap_servers,
            group_id=None,
            auto_offset_reset="latest",
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(1.5)  # let it take its position before anything finishes

    async def _run(self) -> None:
        async for record in self._consumer:
            received = time.time()
            try:
                event = json.loads(record.value)
            except ValueError:
                continue
            job_id = event.get("subject")
            tagged = self.tag is not None and (event.get("metadata") or {}).get("bench") == self.tag
            if job_id not in self.wanted and not tagged:
                continue
            if job_id in self.by_job:
                self.duplicates += 1
                continue
            outcome = Outcome(event.get("type", ""), ts(event["time"]), received, event)
            self.by_job[job_id] = outcome
            waiter = self._waiters.pop(job_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(outcome)

    def expect(self, job_id: str) -> asyncio.Future[Outcome]:
        self.wanted.add(job_id)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if job_id in self.by_job:
            future.set_result(self.by_job[job_id])
        else:
            self._waiters[job_id] = future
        return future

    async def wait_all(self, job_ids: Iterable[str], timeout_s: float) -> None:
        ids = set(job_ids)
        deadline = time.monotonic() + timeout_s
        while not ids <= set(self.by_job) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.25)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()


async def emulator_stats(client: Any, base: str = EMULATOR) -> dict[str, dict[str, int]]:
    return dict((await client.get(f"{base}/_emulator/stats")).json()["calls"])


def stats_delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], provider: str, kind: str
) -> int:
    return after.get(provider, {}).get(kind, 0) - before.get(provider, {}).get(kind, 0)


def start_stack(
    name: str, specs: list[Any], extra_env: dict[str, str], run_dir: Path, port_wait_s: float
) -> Any:
    """Start the emulator and the services after checking their ports are free (bounded wait)."""
    from deploy.stack import Stack
    from shared.kafka_admin import ensure_topics
    from shared.settings import InfraSettings

    ports = sorted({s.port for s in specs} | set(STACK_PORTS))
    asyncio.run(ensure_topics(InfraSettings().kafka_bootstrap_servers))
    for attempt in range(3):  # another run may take a port between our check and our start
        wait_for_free_ports(ports, port_wait_s, name)
        stack = Stack(specs, run_dir, extra_env=extra_env)
        try:
            stack.start_all(timeout_s=120)
            break
        except BaseException as exc:
            stack.stop_all()
            if "already in use" not in str(exc) or attempt == 2:
                raise
            print(f"[{name}] a port was taken while starting; retrying", flush=True)
            time.sleep(5)
    return stack


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def proc_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def proc_cpu_s(pid: int) -> float:
    """utime + stime of the process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, for a machine CPU% over an interval."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return total - idle, total


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("machine")
    g.add_argument(
        "--load-threshold",
        type=float,
        default=1.5,
        help="wait for the 1-min load average below this before measuring",
    )
    g.add_argument("--load-wait-s", type=float, default=120.0, help="max wait for low load")
    g.add_argument(
        "--port-wait-s",
        type=float,
        default=240.0,
        help="max wait for the stack ports 8080-8111 to be free",
    )
    g.add_argument("--keep-db", action="store_true", help="keep the bench databases")
