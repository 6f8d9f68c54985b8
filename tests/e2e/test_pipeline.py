"""Issue 5's end-to-end behaviour on real Kafka, FerretDB, MinIO and the emulator."""

from __future__ import annotations

import asyncio
import io
import json
import secrets

import av
import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from shared.events import RequestJob
from shared.jobs import JobRequest
from shared.settings import InfraSettings
from tests.e2e.conftest import A, B, Outcomes, Receiver, publish_request, wait_job

pytestmark = pytest.mark.e2e


def body(prompt: str, **extra: object) -> dict[str, object]:
    return {"prompt": prompt, "duration_s": 5, "policy": "explicit", "provider": "kling", **extra}


async def probe_video(api: httpx.AsyncClient, job_id: str) -> tuple[int, int, float]:
    redirect = await api.get(f"/v1/jobs/{job_id}/video", headers=A)
    assert redirect.status_code == 307
    data = (await api.get(redirect.headers["location"])).content
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.codec_context.width, frames, float(container.duration or 0) / 1e6


async def test_http_job_ends_as_a_stored_mp4_with_an_event_and_a_signed_webhook(
    api: httpx.AsyncClient,
    outcomes: Outcomes,
    receiver: Receiver,
) -> None:
    created = await api.post(
        "/v1/jobs", json=body("a red fox in snow", callback_url=receiver.url), headers=A
    )
    assert created.status_code == 202
    job_id = created.json()["job_id"]
    event = await outcomes.wait(job_id)
    assert event["type"] == "reelforge.job.completed"
    job = await wait_job(api, job_id, {"completed"})
    video = job["result"]
    assert video["object_key"] == f"videos/demo/{job_id}/{job['picked_attempt']}.mp4"
    assert video["codec"] == "h264" and video["duration_s"] == pytest.approx(5, abs=0.2)
    assert event["video"]["sha256"] == video["sha256"]
    width, frames, duration = await probe_video(api, job_id)
    assert width == video["width"] and frames > 0 and duration == pytest.approx(5, abs=0.2)
    for _ in range(50):
        if receiver.for_job(job_id):
            break
        await asyncio.sleep(0.2)
    calls = receiver.for_job(job_id)
    assert len(calls) == 1 and calls[0]["verified"]
    assert calls[0]["event"]["type"] == "reelforge.job.completed"


async def test_a_gemini_omni_job_ends_as_a_stored_mp4_through_the_interactions_api(
    api: httpx.AsyncClient, outcomes: Outcomes
) -> None:
    request = body("a paper boat on a rainy street", provider="gemini", duration_s=4,
                   model="gemini-omni-1.1-flash", aspect_ratio="9:16")  # fmt: skip
    created = await api.post("/v1/jobs", json=request, headers=A)
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    event = await outcomes.wait(job_id)
    assert event["type"] == "reelforge.job.completed"
    job = await wait_job(api, job_id, {"completed"})
    attempt = next(a for a in job["attempts"] if a["attempt_id"] == job["picked_attempt"])
    assert (attempt["provider"], attempt["model"]) == ("gemini", "gemini-omni-1.1-flash")
    assert attempt["task"]["extra"] == {"surface": "interactions"}
    width, frames, duration = await probe_video(api, job_id)
    assert (width, job["result"]["height"]) == (180, 320)  # 720x1280 at render scale 0.25
    assert frames > 0 and duration == pytest.approx(4, abs=0.2)


async def test_job_published_on_the_request_topic_ends_as_a_video(
    api: httpx.AsyncClient,
    outcomes: Outcomes,
    kafka: object,
) -> None:
    key = f"e2e-{secrets.token_hex(4)}"
    await publish_request(
        kafka,
        RequestJob(  # type: ignore[arg-type]
            subject=key,
            tenant_id="demo",
            request=JobRequest(**body("a lighthouse", metadata={"key": key})),
        ),
    )
    job_id = await _find(api, key)
    event = await outcomes.wait(job_id)
    assert event["type"] == "reelforge.job.completed"
    assert event["metadata"] == {"key": key}
    assert (await probe_video(api, job_id))[1] > 0


async def _find(api: httpx.AsyncClient, key: str) -> str:
    for _ in range(150):
        for job in (await api.get("/v1/jobs", headers=A, params={"limit": 100})).json()["jobs"]:
            if job["idempotency_key"] == key:
                return str(job["job_id"])
        await asyncio.sleep(0.2)
    raise AssertionError(f"no job with idempotency key {key}")


async def test_idempotent_resubmission_creates_nothing_new(
    api: httpx.AsyncClient, kafka: object
) -> None:
    key = f"idem-{secrets.token_hex(4)}"
    first = await api.post("/v1/jobs", json=body("a kite"), headers={**A, "Idempotency-Key": key})
    again = await api.post("/v1/jobs", json=body("a kite"), headers={**A, "Idempotency-Key": key})
    assert again.status_code == 200 and again.json()["job_id"] == first.json()["job_id"]
    await publish_request(
        kafka, RequestJob(subject=key, tenant_id="demo", request=JobRequest(**body("a kite")))
    )  # type: ignore[arg-type]
    await wait_job(api, first.json()["job_id"], {"completed"})
    listed = (await api.get("/v1/jobs", headers=A, params={"limit": 100})).json()["jobs"]
    assert [j["job_id"] for j in listed if j["idempotency_key"] == key] == [first.json()["job_id"]]


async def test_a_tenant_cannot_read_another_tenants_job(api: httpx.AsyncClient) -> None:
    job_id = (await api.post("/v1/jobs", json=body("a secret"), headers=A)).json()["job_id"]
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/video", f"/v1/jobs/{job_id}/events"):
        assert (await api.get(path, headers=B)).status_code == 404
    assert (await api.post(f"/v1/jobs/{job_id}/cancel", headers=B)).status_code == 404


async def test_a_cancelled_job_ends_cancelled_and_its_provider_task_is_cancelled(
    api: httpx.AsyncClient,
    outcomes: Outcomes,
) -> None:
    created = await api.post(
        "/v1/jobs",
        json={
            "prompt": "slow ocean [render:20]",
            "duration_s": 5,
            "policy": "explicit",
            "provider": "runway",
        },
        headers=A,
    )
    job_id = created.json()["job_id"]
    running = await wait_job(api, job_id, {"running"})
    task_id = running["attempts"][0]["task"]["task_id"]
    cancelled = await api.post(f"/v1/jobs/{job_id}/cancel", headers=A)
    assert cancelled.json()["state"] == "cancelled"
    event = await outcomes.wait(job_id)
    assert event["type"] == "reelforge.job.cancelled"
    for _ in range(50):  # the runway poller deletes the task at the provider
        task = await api.get(
            f"http://127.0.0.1:8090/runway/v1/tasks/{task_id}",
            headers={"Authorization": "Bearer key_emulator", "X-Runway-Version": "2024-11-06"},
        )
        # runwayml types a deleted task as `Cancelled`: GET answers it with status CANCELLED.
        if task.json().get("status") == "CANCELLED":
            break
        await asyncio.sleep(0.2)
    assert task.json()["status"] == "CANCELLED"
    job = await wait_job(api, job_id, {"cancelled"})
    assert job["result"] is None


async def test_a_provider_failure_falls_back_to_the_next_provider(
    api: httpx.AsyncClient,
    outcomes: Outcomes,
) -> None:
    chain = [
        {"provider": "runway", "model": "gen4.5"},
        {"provider": "kling", "model": "kling-v2-6"},
    ]
    created = await api.post(
        "/v1/jobs",
        json={
            "prompt": "a storm [fail:internal@runway]",
            "duration_s": 5,
            "policy": "fallback_chain",
            "fallback_chain": chain,
        },
        headers=A,
    )
    job_id = created.json()["job_id"]
    event = await outcomes.wait(job_id, timeout=120)
    assert event["type"] == "reelforge.job.completed"
    assert (event["provider"], event["model"]) == ("kling", "kling-v2-6")
    job = await wait_job(api, job_id, {"completed"})
    runway = [a for a in job["attempts"] if a["provider"] == "runway"]
    assert len(runway) == 2 and all(
        a["state"] == "failed" for a in runway
    )  # one retry, then fallback
    assert all(a["failure"]["failure_class"] == "generation_failed" for a in runway)
    assert job["route_index"] == 1


async def test_a_job_that_fails_everywhere_ends_failed_with_the_reason(
    api: httpx.AsyncClient,
    outcomes: Outcomes,
) -> None:
    created = await api.post(
        "/v1/jobs", json=body("forbidden [fail:moderation_input]", allow_fallback=False), headers=A
    )
    event = await outcomes.wait(created.json()["job_id"])
    assert event["type"] == "reelforge.job.failed"
    assert event["failure"]["failure_class"] == "moderation_input"


async def test_an_invalid_request_on_the_topic_is_dead_lettered_with_a_reason(
    kafka: object,
) -> None:
    dlq = AIOKafkaConsumer(
        "job-requests-dlq",
        group_id=None,
        auto_offset_reset="latest",
        bootstrap_servers=InfraSettings().kafka_bootstrap_servers,
    )
    await dlq.start()
    try:
        await asyncio.sleep(1.0)
        await kafka.publish(b'{"not": "a request"}', "job-requests", key=b"bad-1")  # type: ignore[attr-defined]
        record = await asyncio.wait_for(dlq.getone(), 30)
    finally:
        await dlq.stop()
    entry = json.loads(record.value)
    assert entry["key"] == "bad-1" and entry["reason"].startswith("invalid message")
    assert entry["payload"] == '{"not": "a request"}'


async def test_a_multi_candidate_job_is_scored_the_best_picked_and_the_rest_queued_for_review(
    api: httpx.AsyncClient,
    outcomes: Outcomes,
) -> None:
    created = await api.post(
        "/v1/jobs",
        json=body("a woman walking on a beach [fullsize] [face]", candidates=3),
        headers=A,
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    event = await outcomes.wait(job_id, timeout=180)
    assert event["type"] == "reelforge.job.completed"
    job = await wait_job(api, job_id, {"completed"})
    assert len(job["attempts"]) == 3
    scored = [a for a in job["attempts"] if a["qc"]]
    assert len(scored) == 3, [(a["attempt_id"], a["state"], a["failure"]) for a in job["attempts"]]
    picked = next(a for a in job["attempts"] if a["attempt_id"] == job["picked_attempt"])
    assert event["attempt_id"] == picked["attempt_id"]
    assert picked["qc"]["score"] == max(a["qc"]["score"] for a in scored)
    reviews = (
        await api.get("http://127.0.0.1:8087/v1/reviews", headers=A, params={"status": "all"})
    ).json()["reviews"]
    mine = [r for r in reviews if r["job_id"] == job_id]
    assert {r["attempt_id"] for r in mine if not r["picked"]} == {
        a["attempt_id"] for a in scored if a["attempt_id"] != picked["attempt_id"]
    }
