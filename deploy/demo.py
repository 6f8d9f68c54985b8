"""`make demo`: run the main job end to end on the local servers and the provider emulator.

Starts the emulator and every service as processes, submits one job over HTTP (with a signed
completion webhook to a local receiver) and one by publishing on the `job-requests` topic,
shows their progress, and ends by printing where each MP4 is (object key and presigned URL),
its probed metadata and its completion event, after checking the MP4 decodes.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import av
import httpx
from aiokafka import AIOKafkaConsumer

from deploy.stack import Stack, default_specs
from shared.events import RequestJob
from shared.jobs import JobRequest
from shared.settings import InfraSettings
from shared.topics import Topic
from shared.webhooks import WebhookVerificationError, verify

API = "http://127.0.0.1:8080"
AUTH = {"Authorization": "Bearer demo-key"}
RECEIVER_PORT = 8099


class Receiver(BaseHTTPRequestHandler):
    secret = ""
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            verify(self.secret, body, {k.lower(): v for k, v in self.headers.items()})
            Receiver.received.append({"verified": True, **json.loads(body)})
            self.send_response(204)
        except WebhookVerificationError as exc:
            Receiver.received.append({"verified": False, "error": str(exc)})
            self.send_response(400)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def bar(progress: float, width: int = 30) -> str:
    done = int(progress * width)
    return "[" + "#" * done + "." * (width - done) + f"] {progress * 100:5.1f}%"


async def follow(client: httpx.AsyncClient, job_id: str, label: str) -> None:
    async with client.stream(
        "GET", f"{API}/v1/jobs/{job_id}/events", headers=AUTH, timeout=None
    ) as r:
        async for line in r.aiter_lines():
            if line.startswith("data:"):
                data = json.loads(line[5:])
                if "state" in data and "progress" in data:
                    queue = (
                        f" queue #{data['queue_position']}" if data.get("queue_position") else ""
                    )
                    print(
                        f"  {label:5} {data['state']:10} {bar(data['progress'])}{queue}", flush=True
                    )
                if data.get("terminal") or "result" in data:
                    return


async def find_by_metadata(client: httpx.AsyncClient, key: str, value: str) -> str:
    for _ in range(100):
        page = (await client.get(f"{API}/v1/jobs", headers=AUTH, params={"limit": 50})).json()
        for job in page["jobs"]:
            if job["request"]["metadata"].get(key) == value:
                return str(job["job_id"])
        await asyncio.sleep(0.2)
    raise RuntimeError("the job published on Kafka never appeared")


async def outcome_events(
    consumer: AIOKafkaConsumer, job_ids: set[str], timeout: float
) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def collect() -> None:
        async for record in consumer:
            event = json.loads(record.value)
            if event["subject"] in job_ids:
                found[event["subject"]] = event
                if set(found) == job_ids:
                    return

    await asyncio.wait_for(collect(), timeout)
    return found


async def report(client: httpx.AsyncClient, job_id: str, event: dict[str, Any]) -> None:
    job = (await client.get(f"{API}/v1/jobs/{job_id}", headers=AUTH)).json()
    video = job["result"]
    redirect = await client.get(f"{API}/v1/jobs/{job_id}/video", headers=AUTH)
    url = redirect.headers["location"]
    data = (await client.get(url)).content
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        decoded = len(list(container.decode(stream)))
    print(f"\njob {job_id}: {job['state']} via {event.get('provider')}/{event.get('model')}")
    print(f"  object key   s3://{video['bucket']}/{video['object_key']}")
    print(f"  presigned    {url[:120]}...")
    print(
        f"  metadata     {video['width']}x{video['height']} {video['fps']} fps, "
        f"{video['duration_s']} s, {video['codec']}, audio={video['has_audio']}, "
        f"{video['size_bytes']} bytes, sha256 {video['sha256'][:16]}..."
    )
    print(f"  decoded      {decoded} frames from the presigned URL (PyAV)")
    print(f"  event        {json.dumps(event)[:400]}")


async def run(stack: Stack) -> int:
    settings = InfraSettings()
    tag = secrets.token_hex(3)
    async with httpx.AsyncClient(timeout=30) as client:
        Receiver.secret = (await client.get(f"{API}/v1/webhook-secret", headers=AUTH)).json()[
            "secret"
        ]
        server = HTTPServer(("127.0.0.1", RECEIVER_PORT), Receiver)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        consumer = AIOKafkaConsumer(
            Topic.JOBS_FINISHED.value,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            auto_offset_reset="latest",
            group_id=None,
        )
        await consumer.start()
        await asyncio.sleep(1.0)  # let the consumer take its position before anything finishes
        body = {
            "prompt": "a paper boat drifting down a rainy street, cinematic",
            "duration_s": 4,
            "policy": "cheapest",
            "callback_url": f"http://127.0.0.1:{RECEIVER_PORT}/hook",
            "metadata": {"demo": f"http-{tag}"},
        }
        created = await client.post(
            f"{API}/v1/jobs", json=body, headers={**AUTH, "Idempotency-Key": f"demo-{tag}"}
        )
        created.raise_for_status()
        http_job = created.json()["job_id"]
        print(
            f"submitted over HTTP: {http_job} (quote {created.json()['quote_usd']} USD, "
            f"route {[r['provider'] + '/' + r['model'] for r in created.json()['route']][:3]})"
        )
        command = RequestJob(
            subject=f"demo-kafka-{tag}",
            tenant_id="demo",
            source="demo",
            request=JobRequest(
                prompt="a lighthouse at dusk, waves crashing",
                duration_s=5,
                policy="explicit",
                provider="kling",
                metadata={"demo": f"kafka-{tag}"},
            ),
        )
        from faststream.kafka import KafkaBroker

        async with KafkaBroker(settings.kafka_bootstrap_servers) as broker:
            await broker.publish(
                command.model_dump_json().encode(),
                Topic.JOB_REQUESTS.value,
                key=command.subject.encode(),
            )
        kafka_job = await find_by_metadata(client, "demo", f"kafka-{tag}")
        print(f"published on Kafka topic job-requests: {kafka_job}\n\nprogress:")
        await asyncio.wait_for(
            asyncio.gather(follow(client, http_job, "http"), follow(client, kafka_job, "kafka")),
            240,
        )
        events = await outcome_events(consumer, {http_job, kafka_job}, 60)
        await consumer.stop()
        for job_id, label in ((http_job, "HTTP"), (kafka_job, "Kafka")):
            print(f"\n== the job submitted over {label} ==", end="")
            await report(client, job_id, events[job_id])
        for _ in range(50):
            if Receiver.received:
                break
            await asyncio.sleep(0.2)
        server.shutdown()
        server.server_close()
        hooks = Receiver.received
        print(
            f"\nwebhook to the HTTP job's callback_url: {len(hooks)} received, "
            f"signature verified: {all(h.get('verified') for h in hooks) and bool(hooks)}"
        )
        ok = all(e["type"] == "reelforge.job.completed" for e in events.values()) and bool(hooks)
        return 0 if ok else 1


def main() -> int:
    stack = Stack(default_specs(render_seconds=4.0), run_dir=Path(".demo-run"))
    print("starting the provider emulator and the services (logs in .demo-run/) ...")
    try:
        stack.start_all(timeout_s=90)
        return asyncio.run(run(stack))
    except Exception as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop_all()
        print("\nservices stopped; the servers keep running (make infra-down stops them).")


if __name__ == "__main__":
    sys.exit(main())
