"""A job routed through each aggregator (fal, Replicate) on the emulator ends as a stored MP4,
and the aggregator's signed webhook reaches the intake as a verified hint."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.e2e.conftest import API, A, Outcomes, wait_job
from tests.e2e.test_pipeline import probe_video

pytestmark = pytest.mark.e2e


async def hints(api: httpx.AsyncClient, provider: str, outcome: str) -> float:
    """The intake's webhook-hint counter for one provider and outcome (labels in any order)."""
    total = 0.0
    for line in (await api.get(f"{API}/metrics")).text.splitlines():
        labels, _, value = line.rpartition(" ")
        if (
            labels.startswith("reelforge_webhook_hints_total{")
            and f'provider="{provider}"' in labels
            and f'outcome="{outcome}"' in labels
        ):
            total += float(value)
    return total


@pytest.mark.parametrize(
    ("provider", "model"),
    [("fal", "fal-ai/bytedance/seedance/v1/pro"), ("replicate", "bytedance/seedance-1-pro")],
)
async def test_a_job_routed_through_an_aggregator_ends_as_a_stored_video(
    api: httpx.AsyncClient, outcomes: Outcomes, provider: str, model: str
) -> None:
    created = await api.post(
        "/v1/jobs",
        json={
            "prompt": f"a paper boat on a rainy street via {provider}",
            "duration_s": 5,
            "policy": "explicit",
            "provider": provider,
            "model": model,
        },
        headers=A,
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    event = await outcomes.wait(job_id)
    assert event["type"] == "reelforge.job.completed", event
    assert (event["provider"], event["model"]) == (provider, model)
    job = await wait_job(api, job_id, {"completed"})
    assert job["result"]["duration_s"] == pytest.approx(5, abs=0.2)
    assert (await probe_video(api, job_id))[1] > 0
    for _ in range(50):  # the webhook may land just after the poll that finished the job
        if await hints(api, provider, "forwarded") or await hints(api, provider, "unknown_task"):
            break
        await asyncio.sleep(0.2)
    metrics = [
        line
        for line in (await api.get(f"{API}/metrics")).text.splitlines()
        if line.startswith("reelforge_webhook_hints_total")
    ]
    assert await hints(api, provider, "invalid") == 0, metrics
    delivered = await hints(api, provider, "forwarded") + await hints(api, provider, "unknown_task")
    assert delivered > 0, metrics
