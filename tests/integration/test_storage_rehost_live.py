"""Storage on the real servers: a real MP4 served over local HTTP is re-hosted into MinIO by
the handler, with the job in the job store (PostgreSQL) and the real FFmpeg probe."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.storage import logic
from services.storage.handlers import StorageContext, on_task_succeeded
from services.storage.rehost import Rehoster
from shared.blobstore import MinioBlobStore
from shared.jobs import AttemptState, JobState
from shared.metrics import ServiceMetrics
from shared.pg_repository import PgJobRepository
from shared.providers.base import TaskRef, VideoOutput
from shared.topics import Topic
from tests.fakes import pg_outbox
from tests.unit.test_media import make_mp4
from tests.unit.test_storage_fakes import FakeProvider, RecordingPublisher, make_job, succeeded

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served_mp4() -> Iterator[tuple[str, bytes]]:
    buffer = io.BytesIO()
    make_mp4(buffer, seconds=3.0, fps=24, size=(320, 180), audio=True)
    data = buffer.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "video/mp4")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/result.mp4", data
    server.shutdown()
    server.server_close()


class HttpProvider(FakeProvider):
    """Streams the result from the local server with httpx, 64 KiB at a time."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    async def download(self, ref: TaskRef, output: VideoOutput) -> AsyncIterator[bytes]:
        async with httpx.AsyncClient(timeout=10) as client, client.stream("GET", self.url) as r:
            r.raise_for_status()
            async for chunk in r.aiter_bytes(65536):
                yield chunk


async def test_rehosts_a_real_mp4_into_minio_with_checksum_probe_and_thumbnail(
    pg_repo: PgJobRepository, minio_store: MinioBlobStore, served_mp4: tuple[str, bytes]
) -> None:
    url, data = served_mp4
    job = make_job()
    await pg_repo.create(job)
    provider = HttpProvider(url)
    metrics = ServiceMetrics(CollectorRegistry(), "storage")
    published = RecordingPublisher()
    ctx = StorageContext(
        repo=pg_repo,
        rehoster=Rehoster(minio_store, metrics),
        providers={"openai": provider},
        publish=published,
        metrics=metrics,
    )

    await on_task_succeeded(ctx, succeeded(job))
    await on_task_succeeded(ctx, succeeded(job))  # a redelivery changes nothing

    keys = logic.object_keys(job.tenant_id, job.job_id, "a1")
    stored = b"".join([c async for c in minio_store.get_stream(keys.video)])
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest()
    thumb = b"".join([c async for c in minio_store.get_stream(keys.thumbnail)])
    assert thumb[:3] == b"\xff\xd8\xff"
    done = await pg_repo.get(job.job_id)
    assert done is not None
    assert done.state is JobState.COMPLETED
    assert done.attempts["a1"].state is AttemptState.STORED
    video = done.result
    assert video is not None
    assert video.sha256 == hashlib.sha256(data).hexdigest()
    assert video.size_bytes == len(data)
    assert (video.width, video.height, video.codec, video.has_audio) == (320, 180, "h264", True)
    assert video.fps == pytest.approx(24.0)
    assert video.duration_s == pytest.approx(3.0, abs=0.2)
    # The completion went into the outbox with the job's last write; the redelivery re-sent
    # the same event, under the same id.
    stored_events = [
        e for t, e in await pg_outbox(pg_repo.pool, job.job_id) if t == "jobs-finished"
    ]
    resent = published.on(Topic.JOBS_FINISHED)
    assert len(stored_events) == 1 and len(resent) == 1
    assert stored_events[0].id == resent[0].id
