"""Replicas racing on the same jobs (issue: the job store): two dispatchers admitting, two
kling pollers tracking, and cancels arriving at every stage. Every job must end with exactly
one outcome event id matching its final state, no provider task submitted twice, and no lost
update (spend equals the sum of its attempts' costs; completed jobs keep their stored result)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from deploy.stack import ServiceSpec, Stack
from tests.e2e.conftest import A, Outcomes, wait_job
from tests.e2e.test_resilience import submit_kling

pytestmark = pytest.mark.e2e
JOBS = 24
CANCEL_AFTER_S = (0.0, 0.2, 0.6, 1.2, 2.0, 3.0)  # before admission, submitting, rendering, ...
OUTCOME_OF = {
    "completed": "reelforge.job.completed",
    "cancelled": "reelforge.job.cancelled",
    "failed": "reelforge.job.failed",
}


def replica(stack: Stack, of: str, name: str, port: int, port_var: str) -> ServiceSpec:
    spec = ServiceSpec(name, stack.specs[of].module, port, {**stack.specs[of].env})
    spec.env[port_var] = str(port)
    stack.specs[name] = spec
    return spec


async def cancel_later(api: httpx.AsyncClient, job_id: str, after_s: float) -> int:
    await asyncio.sleep(after_s)
    response = await api.post(f"/v1/jobs/{job_id}/cancel", headers=A)
    return response.status_code


async def test_replicas_and_cancels_racing_leave_one_outcome_and_no_double_task(
    stack: Stack, api: httpx.AsyncClient, outcomes: Outcomes
) -> None:
    extra = [
        replica(stack, "dispatcher", "dispatcher-2", 8091, "DISPATCHER_METRICS_PORT"),
        replica(stack, "poller-kling", "poller-kling-2", 8111, "POLLER_METRICS_PORT"),
    ]
    try:
        for spec in extra:
            stack.start(spec.name)
        stack.wait_healthy([s.name for s in extra])
        started = time.time()
        job_ids = await submit_kling(api, "a race between replicas", JOBS)
        doomed = job_ids[::2]  # every other job gets a cancel, at staggered moments
        codes = await asyncio.gather(
            *(
                cancel_later(api, job_id, CANCEL_AFTER_S[i % len(CANCEL_AFTER_S)])
                for i, job_id in enumerate(doomed)
            )
        )
        assert set(codes) <= {200, 202, 409}, codes  # 409: it had already ended
        finals = [
            await wait_job(api, job_id, {"completed", "cancelled", "failed"}, timeout=120)
            for job_id in job_ids
        ]
        await asyncio.sleep(3.0)  # let any straggling duplicate outcome arrive
    finally:
        for spec in extra:
            stack.kill(spec.name)
            del stack.specs[spec.name]

    states = {job["job_id"]: job["state"] for job in finals}
    assert all(states[j] == "completed" for j in job_ids[1::2]), states  # never cancelled
    for job in finals:
        job_id = job["job_id"]
        events = outcomes.by_job[job_id]
        assert len({e["id"] for e in events}) == 1, (job_id, events)  # one outcome id
        assert {e["type"] for e in events} == {OUTCOME_OF[job["state"]]}, (job_id, events)
        attempt_list = job["attempts"]  # the public view lists them
        spent = round(sum(a["cost_usd"] for a in attempt_list), 4)
        assert job["spent_usd"] == pytest.approx(spent), job  # no lost spend update
        if job["state"] == "completed":
            picked = next(a for a in attempt_list if a["attempt_id"] == job["picked_attempt"])
            assert picked["state"] == "stored" and job["result"] is not None, job

    # The provider saw exactly one task per recorded attempt: none submitted twice.
    async with httpx.AsyncClient(base_url="http://127.0.0.1:8090", timeout=10) as emulator:
        tasks = (await emulator.get("/_emulator/tasks", params={"provider": "kling"})).json()
    ours = [
        t["external_id"]
        for t in tasks["tasks"]
        if t["external_id"] and t["external_id"].split(".")[0] in states
    ]
    assert len(ours) == len(set(ours))
    recorded = {
        f"{job['job_id']}.{a['attempt_id']}"
        for job in finals
        for a in (
            job["attempts"].values() if isinstance(job["attempts"], dict) else job["attempts"]
        )
        if a.get("task")
    }
    assert set(ours) == recorded
    assert time.time() - started < 300
