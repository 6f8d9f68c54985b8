"""Scale-out and crash safety: poller replicas split and take over tasks; SIGKILL of any one
service mid-run loses no job and delivers no duplicate completion."""

from __future__ import annotations

import asyncio
import re
import secrets
import time

import httpx
import pytest

from deploy.stack import ServiceSpec, Stack
from shared.events import RequestJob
from shared.jobs import JobRequest
from tests.e2e.conftest import A, Outcomes, Receiver, publish_request, wait_job

pytestmark = pytest.mark.e2e


async def gauge(port: int, name: str) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    found = re.search(rf"^{name}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def submit_kling(api: httpx.AsyncClient, prompt: str, n: int, **extra: object) -> list[str]:
    ids = []
    for _ in range(n):
        r = await api.post(
            "/v1/jobs",
            json={
                "prompt": prompt,
                "duration_s": 5,
                "policy": "explicit",
                "provider": "kling",
                **extra,
            },
            headers=A,
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["job_id"])
    return ids


def assert_one_completion_each(outcomes: Outcomes, job_ids: list[str]) -> None:
    for job_id in job_ids:
        events = outcomes.by_job[job_id]
        assert {e["type"] for e in events} == {"reelforge.job.completed"}, events
        # At-least-once: a crash between publish and commit may repeat the record, but always
        # with the same CloudEvents id, which is what consumers de-duplicate on.
        assert len({e["id"] for e in events}) == 1, events


async def test_two_poller_replicas_split_tasks_and_one_finishes_all_after_the_other_is_killed(
    stack: Stack,
    api: httpx.AsyncClient,
    outcomes: Outcomes,
) -> None:
    first = stack.specs["poller-kling"]
    second = ServiceSpec(
        "poller-kling-2", "services.poller", 8111, {**first.env, "POLLER_METRICS_PORT": "8111"}
    )
    stack.specs[second.name] = second
    try:
        stack.start(second.name)
        stack.wait_healthy([second.name])
        await until(
            lambda: _both_own(first.port, second.port), 60, "both replicas to own partitions"
        )
        job_ids = await submit_kling(api, "a parade [render:8]", 12)

        async def both_tracking() -> bool:
            return all(
                [await gauge(p, "reelforge_inflight_tasks") > 0 for p in (first.port, second.port)]
            )

        await until(both_tracking, 30, "both replicas to track tasks")
        stack.kill(second.name)  # SIGKILL: no goodbye to the group, no hand-over
        for job_id in job_ids:
            await outcomes.wait(job_id, timeout=120)
        await asyncio.sleep(2)
        assert_one_completion_each(outcomes, job_ids)
        assert await gauge(first.port, "reelforge_poller_owned_partitions") == 6
    finally:
        stack.kill(second.name)
        stack.specs.pop(second.name, None)


async def _both_own(a: int, b: int) -> bool:
    return all([await gauge(p, "reelforge_poller_owned_partitions") > 0 for p in (a, b)])


@pytest.mark.parametrize(
    "victim", ["intake", "dispatcher", "poller-kling", "storage", "notifier", "reconciler"]
)
async def test_sigkill_of_a_service_mid_run_loses_no_job_and_duplicates_no_completion(
    victim: str,
    stack: Stack,
    api: httpx.AsyncClient,
    outcomes: Outcomes,
    kafka: object,
    receiver: Receiver,
) -> None:
    tag = secrets.token_hex(3)
    keys = [f"kill-{victim}-{tag}-{i}" for i in range(4)]
    for key in keys:  # over Kafka, so submissions do not depend on intake being up
        await publish_request(
            kafka,
            RequestJob(
                subject=key,
                tenant_id="demo",
                request=JobRequest(  # type: ignore[arg-type]
                    prompt="a train crossing a bridge [render:3]",
                    duration_s=5,
                    policy="explicit",
                    provider="kling",
                    callback_url=receiver.url,
                ),
            ),
        )
    await asyncio.sleep(1.5)
    stack.kill(victim)
    await asyncio.sleep(1.0)
    stack.start(victim)
    stack.wait_healthy([victim], timeout_s=90)
    job_ids = [await _job_for(api, key) for key in keys]
    for job_id in job_ids:
        await outcomes.wait(job_id, timeout=120)
        await wait_job(api, job_id, {"completed"})
    await until(lambda: _delivered(receiver, job_ids), 60, "one webhook per job")
    await asyncio.sleep(2)
    assert_one_completion_each(outcomes, job_ids)
    for job_id in job_ids:
        calls = receiver.for_job(job_id)
        assert all(c["verified"] for c in calls)
        assert len({c["id"] for c in calls}) == 1  # same webhook-id if ever re-sent


async def _delivered(receiver: Receiver, job_ids: list[str]) -> bool:
    return all(receiver.for_job(j) for j in job_ids)


async def _job_for(api: httpx.AsyncClient, key: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            jobs = (await api.get("/v1/jobs", headers=A, params={"limit": 100})).json()["jobs"]
        except httpx.HTTPError:
            jobs = []
        for job in jobs:
            if job["idempotency_key"] == key:
                return str(job["job_id"])
        await asyncio.sleep(0.3)
    raise AssertionError(f"no job for {key}")
