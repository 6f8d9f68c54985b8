"""The whole pipeline as real processes (emulator + every service) on the real servers."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from faststream.kafka import KafkaBroker

from deploy.stack import Stack, default_specs
from shared.events import RequestJob
from shared.kafka_admin import ensure_topics
from shared.settings import InfraSettings
from shared.topics import Topic
from shared.webhooks import WebhookVerificationError, verify
from tests.pg_fixtures import throwaway_database

API = "http://127.0.0.1:8080"
A = {"Authorization": "Bearer demo-key"}
B = {"Authorization": "Bearer other-key"}
# Fast sweeps and short graces so recovery paths run within a test's time.
# The running stack's log directory, for `explain` (set by the session's `stack` fixture).
RUN_DIRS: list[Path] = []
# The session's job store (a throwaway PostgreSQL database), for tests that read it directly.
STORE_URIS: list[str] = []
FAST_ENV = {
    "RECONCILER_INTERVAL_S": "1",
    "RECONCILER_ACCEPTED_GRACE_S": "3",
    "RECONCILER_SUBMITTING_GRACE_S": "4",
    "RECONCILER_TRACKING_GRACE_S": "6",
    "RECONCILER_STORING_GRACE_S": "8",
    "DISPATCHER_CONCURRENCY": "kling:20,runway:4",
    "EMULATOR_RUNWAY_CONCURRENCY": "4",
    "POLLER_MIN_INTERVAL_S": "0.5",
    "NOTIFIER_RETRY_SCHEDULE_S": "[1, 2, 4]",
    "EMULATOR_RENDER_SCALE": "0.25",
}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    asyncio.run(ensure_topics(InfraSettings().kafka_bootstrap_servers))
    run_dir = Path(tmp_path_factory.mktemp("stack"))
    # A database of its own per session: leftovers of an aborted earlier run cannot leak in.
    uri, drop = asyncio.run(throwaway_database(InfraSettings().job_store_uri))
    STORE_URIS.append(uri)
    s = Stack(
        default_specs(render_seconds=2.0),
        run_dir,
        extra_env={**FAST_ENV, "JOB_STORE_URI": uri},
    )
    try:
        s.start_all(timeout_s=120)
        RUN_DIRS.append(run_dir)
        yield s
    finally:
        s.stop_all()
        asyncio.run(drop())


class Outcomes:
    """Every event on the public `jobs-finished` topic since the session started, by job."""

    def __init__(self) -> None:
        self.by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)

    async def run(self, consumer: AIOKafkaConsumer) -> None:
        async for record in consumer:
            event = json.loads(record.value)
            self.by_job[event["subject"]].append(event)

    async def wait(self, job_id: str, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.by_job.get(job_id):
                return self.by_job[job_id][0]
            await asyncio.sleep(0.1)
        raise AssertionError(f"no outcome event for {job_id} within {timeout}s")


@pytest.fixture(scope="session")
async def outcomes(stack: Stack) -> AsyncIterator[Outcomes]:
    consumer = AIOKafkaConsumer(
        Topic.JOBS_FINISHED.value,
        group_id=None,
        auto_offset_reset="latest",
        bootstrap_servers=InfraSettings().kafka_bootstrap_servers,
    )
    await consumer.start()
    collector = Outcomes()
    task = asyncio.create_task(collector.run(consumer))
    await asyncio.sleep(1.0)
    yield collector
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await consumer.stop()


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=API, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
async def kafka(stack: Stack) -> AsyncIterator[KafkaBroker]:
    async with KafkaBroker(InfraSettings().kafka_bootstrap_servers) as broker:
        yield broker


async def publish_request(broker: KafkaBroker, command: RequestJob) -> None:
    await broker.publish(
        command.model_dump_json().encode(), Topic.JOB_REQUESTS.value, key=command.subject.encode()
    )


class Receiver:
    """A webhook endpoint on 127.0.0.1 that verifies Standard Webhooks signatures."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.calls: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verify(receiver.secret, body, headers)
                    receiver.calls.append(
                        {
                            "verified": True,
                            "id": headers.get("webhook-id"),
                            "event": json.loads(body),
                        }
                    )
                    self.send_response(204)
                except WebhookVerificationError as exc:
                    receiver.calls.append({"verified": False, "error": str(exc)})
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_job(self, job_id: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c.get("event", {}).get("subject") == job_id]


@pytest.fixture
async def receiver(api: httpx.AsyncClient) -> AsyncIterator[Receiver]:
    secret = (await api.get("/v1/webhook-secret", headers=A)).json()["secret"]
    r = Receiver(secret)
    yield r
    r.server.shutdown()
    r.server.server_close()


async def wait_job(
    api: httpx.AsyncClient,
    job_id: str,
    states: set[str],
    timeout: float = 90.0,
    headers: dict[str, str] = A,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = (await api.get(f"/v1/jobs/{job_id}", headers=headers)).json()
        if job.get("state") in states:
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"job {job_id} did not reach {states} in {timeout}s: {job.get('state')}\n"
        + explain(job_id, job)
    )


def explain(job_id: str, job: dict[str, Any], limit: int = 60) -> str:
    """What a failed wait prints: the job's attempts, then the services' log lines naming it
    and their errors, so a failure on a CI machine can be understood from its output alone."""
    attempts = [
        {k: a.get(k) for k in ("attempt_id", "candidate", "provider", "state", "failure")}
        for a in job.get("attempts", [])
    ]
    mine: list[str] = []
    errors: list[str] = []
    for run_dir in RUN_DIRS[-1:]:
        for log in sorted(run_dir.glob("*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if job_id in line:
                    mine.append(f"{log.stem}: {line[:600]}")
                elif "ERROR" in line or "Traceback" in line:
                    errors.append(f"{log.stem}: {line[:600]}")
    return "\n".join(
        [f"attempts: {json.dumps(attempts, default=str)}", *mine[-limit:], *errors[-limit // 3 :]]
    )
