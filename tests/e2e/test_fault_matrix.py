"""The fault matrix (tests/e2e/fault_matrix.py) on the whole pipeline, on private servers.

`FAULT_MATRIX_N` jobs per row (3 under `make test`; `make fault-matrix` runs 10 and writes the
README's table). The session's stack is stopped for this module (its ports are fixed), run
again on private Kafka, PostgreSQL and MinIO started with the launcher's code, and restored on
the shared servers afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from deploy.localinfra.errors import InfraError
from deploy.localinfra.private import PrivateServer, private
from deploy.stack import ROOT, Stack, healthy
from shared.faultpoints import ENV as FAULT_DIR_ENV
from shared.kafka_admin import ensure_topics
from shared.topics import TOPICS, Topic
from tests.e2e.conftest import API, A, Receiver
from tests.e2e.fault_matrix import ROWS, Counts, Row, count, write_results

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
N = int(os.environ.get("FAULT_MATRIX_N", "3"))
RESULTS = Path(os.environ.get("FAULT_MATRIX_OUT", str(ROOT / ".bench" / "fault_matrix.json")))
EMULATOR = "http://127.0.0.1:8090/_emulator"
ROW_TIMEOUT_S = 150.0
DLQS = [spec.dlq for spec in TOPICS.values() if spec.dlq]


@dataclass
class Matrix:
    stack: Stack
    servers: dict[str, PrivateServer]
    fault_dir: Path
    kafka: str
    outcomes: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Counts] = field(default_factory=dict)


async def _collect(matrix: Matrix, consumer: AIOKafkaConsumer) -> None:
    async for record in consumer:
        if record.topic == Topic.JOBS_FINISHED.value:
            event = json.loads(record.value)
            matrix.outcomes[event["subject"]].append(event)
        else:
            matrix.dead_letters.append({"dlq": record.topic, **json.loads(record.value)})


@pytest.fixture(scope="module")
def private_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("matrix-servers")
    servers: dict[str, Any] = {}
    try:
        with (
            private("postgres", root / "pg") as pg,
            private("kafka", root / "kafka") as kafka,
            private("minio", root / "minio") as minio,
        ):
            servers.update(postgres=pg, kafka=kafka, minio=minio)
            yield servers
    except InfraError as exc:
        pytest.skip(f"no private servers for the fault matrix: {exc}")


@pytest.fixture(scope="module")
async def matrix(
    stack: Stack,
    private_servers: dict[str, PrivateServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Matrix]:
    kafka = private_servers["kafka"].address
    await ensure_topics(kafka)
    fault_dir = tmp_path_factory.mktemp("fault-points")
    shared_env = dict(stack.extra_env)
    stack.stop_all()
    stack.extra_env = {
        **shared_env,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "JOB_STORE_URI": private_servers["postgres"].address,
        "S3_ENDPOINT": private_servers["minio"].address,
        FAULT_DIR_ENV: str(fault_dir),
    }
    m = Matrix(stack, private_servers, fault_dir, kafka)
    consumer = AIOKafkaConsumer(
        Topic.JOBS_FINISHED.value,
        *DLQS,
        bootstrap_servers=kafka,
        group_id=None,
        auto_offset_reset="earliest",
    )
    try:
        await asyncio.to_thread(stack.start_all, 120)
        await consumer.start()
        collector = asyncio.create_task(_collect(m, consumer))
        yield m
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        await consumer.stop()
        write_results(RESULTS, N, m.results)
    finally:
        stack.stop_all()
        stack.extra_env = shared_env
        await asyncio.to_thread(stack.start_all, 120)  # the next modules use the shared servers


async def _supervise(stack: Stack, counts: Counts) -> None:
    """Restart any service that died (a fault point, or a crash while a server was down)."""
    while True:
        for name, proc in list(stack.procs.items()):
            if proc.poll() is None:
                continue
            counts.restarts += 1
            try:
                stack.start(name)
                await asyncio.to_thread(stack.wait_healthy, [name], 60)
            except RuntimeError:
                pass  # exited again (its server still down): the next round retries
        await asyncio.sleep(0.2)


async def _submit(api: httpx.AsyncClient, key: str, callback: str) -> str:
    """POST with an Idempotency-Key until it is answered: a retry after intake died replays."""
    body = {
        "prompt": f"a paper boat on a rainy street {key} [render:1]",
        "duration_s": 5,
        "policy": "explicit",
        "provider": "kling",
        "budget_usd": 1.0,
        "callback_url": callback,
    }
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            r = await api.post("/v1/jobs", json=body, headers={**A, "Idempotency-Key": key})
            if r.status_code in (200, 202):
                return str(r.json()["job_id"])
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.3)
    raise AssertionError(f"job {key} was never accepted")


async def _views(api: httpx.AsyncClient, ids: list[str]) -> dict[str, dict[str, Any]]:
    views: dict[str, dict[str, Any]] = {}
    for job_id in ids:
        try:
            views[job_id] = (await api.get(f"/v1/jobs/{job_id}", headers=A)).json()
        except httpx.HTTPError:
            views[job_id] = {}
    return views


async def _until(what: str, predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.25)
    return False


async def _outage(m: Matrix, row: Row, api: httpx.AsyncClient, ids: list[str]) -> bool:
    """Stop the row's server once a job renders; True if `/health/ready` reported it."""

    async def rendering() -> bool:
        return any(v.get("state") == "running" for v in (await _views(api, ids)).values())

    await _until("a job rendering", rendering, 60)
    server = m.servers[row.server or ""]
    await asyncio.to_thread(server.stop)

    async def noticed() -> bool:
        specs = [m.stack.specs[n] for n in ("dispatcher", "storage")]
        return not all(await asyncio.gather(*(asyncio.to_thread(healthy, s) for s in specs)))

    reported = await _until("/health/ready to report it", noticed, 30)
    await asyncio.sleep(row.outage_s)  # the outage's length, not a synchronisation
    await asyncio.to_thread(server.start)
    return reported


async def _run_row(m: Matrix, row: Row, receiver: Receiver) -> Counts:
    counts = Counts()
    supervisor = asyncio.create_task(_supervise(m.stack, counts))
    async with httpx.AsyncClient(base_url=API, timeout=15) as api, httpx.AsyncClient() as emu:
        await emu.post(f"{EMULATOR}/config", json={"reset": True})
        await emu.post(f"{EMULATOR}/stats/reset")
        if row.emulator:
            await emu.post(f"{EMULATOR}/config", json=row.emulator)
        if row.point:
            (m.fault_dir / row.point).write_text("armed")
        dead_before = len(m.dead_letters)
        tag = secrets.token_hex(3)
        keys = [f"matrix-{row.id}-{tag}-{i}" for i in range(N)]
        ids = [await _submit(api, key, receiver.url) for key in keys]
        reported = await _outage(m, row, api, ids) if row.kind == "outage" else True

        async def settled() -> bool:
            views = await _views(api, ids)
            ended = all(
                v.get("state") in ("completed", "failed", "cancelled") for v in views.values()
            )
            delivered = all(receiver.for_job(j) for j in ids)
            return ended and delivered and all(m.outcomes.get(j) for j in ids)

        await _until("every job to end", settled, ROW_TIMEOUT_S)
        await emu.post(f"{EMULATOR}/config", json={"reset": True})
        tasks = (await emu.get(f"{EMULATOR}/tasks", params={"provider": "kling"})).json()["tasks"]
        views = await _views(api, ids)
        calls = (await emu.get(f"{EMULATOR}/stats")).json()["calls"].get("kling", {})
    supervisor.cancel()
    await asyncio.gather(supervisor, return_exceptions=True)
    letters = m.dead_letters[dead_before:]
    result = count(views, m.outcomes, tasks, len(letters))
    result.webhooks_missing = sum(not receiver.for_job(j) for j in ids)
    result.restarts = counts.restarts
    result.provider_calls = "/".join(str(calls.get(k, 0)) for k in ("create", "status", "download"))
    result.health_reported = reported
    if row.point:
        result.fired = (m.fault_dir / f"{row.point}.fired").exists()
        (m.fault_dir / row.point).unlink(missing_ok=True)  # never reached: disarm
    for letter in letters:
        print(f"DLQ {letter['dlq']}: {letter.get('error_type')}: {letter.get('reason')}")
    return result


@pytest.fixture(scope="module")
async def hooks(matrix: Matrix) -> AsyncIterator[Receiver]:
    """One receiver for every row: a webhook retried after its row ended still lands here."""
    async with httpx.AsyncClient(base_url=API, timeout=15) as api:
        secret = (await api.get("/v1/webhook-secret", headers=A)).json()["secret"]
    receiver = Receiver(secret)
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
async def test_fault_matrix_row_loses_nothing(row: Row, matrix: Matrix, hooks: Receiver) -> None:
    result = await _run_row(matrix, row, hooks)
    matrix.results[row.name] = result
    assert result.fired, f"the fault point {row.point} was never reached"
    assert result.health_reported, f"/health/ready never reported {row.server} down"
    assert result.problems() == {}, f"{row.name}: {result}"
