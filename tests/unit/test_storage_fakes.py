"""Fakes and builders for the storage tests (unit and integration import them); the one test
here checks that the fake provider streams in chunks like the real adapters."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from services.storage.handlers import StorageContext
from services.storage.rehost import Rehoster
from shared import media
from shared.blobstore import BlobStore
from shared.events import Envelope, TaskSucceeded
from shared.jobs import Attempt, AttemptState, Job, JobRequest, JobState, ModelChoice
from shared.metrics import ServiceMetrics
from shared.providers.base import (
    GenerationRequest,
    ProviderCapabilities,
    TaskRef,
    TaskStatus,
    VideoOutput,
    WebhookHint,
)
from shared.providers.errors import ProviderError
from shared.repository import JobRepository
from shared.topics import Topic
from tests.conftest import random_id
from tests.fakes import FakeJobRepository


@dataclass
class FakeProvider:
    """Streams `data` (or raises `error`) in small chunks; remembers deleted task ids."""

    data: bytes = b""
    error: ProviderError | None = None
    name: str = "openai"
    chunk: int = 4096
    deletable: bool = True
    deleted: list[str] = field(default_factory=list)
    on_chunk: object = None  # optional async callable run after the first chunk

    @property
    def capabilities(self) -> ProviderCapabilities:
        return ProviderCapabilities(
            cancel=False, delete=self.deletable, webhooks=False, per_request_callback=False
        )

    async def download(self, ref: TaskRef, output: VideoOutput) -> AsyncIterator[bytes]:
        if self.error is not None:
            raise self.error
        for start in range(0, len(self.data), self.chunk):
            yield self.data[start : start + self.chunk]
            if start == 0 and self.on_chunk is not None:
                await self.on_chunk()  # type: ignore[operator]

    async def delete(self, ref: TaskRef) -> bool:
        self.deleted.append(ref.task_id)
        return True

    async def submit(self, request: GenerationRequest, model: str) -> TaskRef:
        raise NotImplementedError

    async def status(self, ref: TaskRef) -> TaskStatus:
        raise NotImplementedError

    async def cancel(self, ref: TaskRef) -> bool:
        return False

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookHint:
        raise NotImplementedError


@dataclass
class RecordingPublisher:
    sent: list[tuple[Topic, Envelope]] = field(default_factory=list)

    async def __call__(self, topic: Topic, event: Envelope) -> None:
        self.sent.append((topic, event))

    def record(self, topic: str, event: Envelope) -> None:
        """A sink for `FakeJobRepository.relay_to`: what the outbox relay would publish."""
        self.sent.append((Topic(topic), event))

    def on(self, topic: Topic) -> list[Envelope]:
        return [e for t, e in self.sent if t is topic]


async def probe_fake_blob(blob: BlobStore, key: str) -> tuple[media.MediaInfo, bytes]:
    """Prober for FakeBlobStore: FFmpeg reads the stored bytes from memory."""
    data = b"".join([c async for c in blob.get_stream(key)])
    return media.probe_and_thumbnail(io.BytesIO(data))


def make_job(
    *,
    candidates: int = 1,
    state: JobState = JobState.RUNNING,
    attempt_state: AttemptState = AttemptState.SUBMITTED,
    provider: str = "openai",
    callback_url: str | None = None,
) -> Job:
    job_id = random_id("job")
    task = TaskRef(provider=provider, model="sora-2", task_id=random_id("task"))
    attempt = Attempt(
        attempt_id="a1",
        provider=provider,
        model="sora-2",
        state=attempt_state,
        task=task,
        cost_usd=0.8,
    )
    request = JobRequest(
        prompt="a cat", candidates=candidates, metadata={"order": "42"}, callback_url=callback_url
    )  # type: ignore[arg-type]
    return Job(
        job_id=job_id,
        tenant_id="tenant-a",
        request=request,
        state=state,
        route=(ModelChoice(provider=provider, model="sora-2"),),
        attempts={"a1": attempt},
        spent_usd=0.8,
    )


def succeeded(job: Job, attempt_id: str = "a1") -> TaskSucceeded:
    task = job.attempts[attempt_id].task
    assert task is not None
    return TaskSucceeded(
        subject=job.job_id,
        tenant_id=job.tenant_id,
        attempt_id=attempt_id,
        task=task,
        outputs=(VideoOutput(url="https://provider.example/v.mp4"),),
    )


def make_context(
    repo: JobRepository,
    blob: BlobStore,
    provider: FakeProvider,
    registry: CollectorRegistry | None = None,
) -> tuple[StorageContext, RecordingPublisher]:
    metrics = ServiceMetrics(registry or CollectorRegistry(), "storage")
    publisher = RecordingPublisher()
    if isinstance(repo, FakeJobRepository):
        repo.relay_to(publisher.record)
    ctx = StorageContext(
        repo=repo,
        rehoster=Rehoster(blob, metrics, probe_fake_blob),
        providers={provider.name: provider},
        publish=publisher,
        metrics=metrics,
    )
    return ctx, publisher


async def test_fake_provider_streams_in_chunks() -> None:
    provider = FakeProvider(data=b"x" * 10_000, chunk=4096)
    job = make_job()
    chunks = [c async for c in provider.download(succeeded(job).task, VideoOutput())]
    assert [len(c) for c in chunks] == [4096, 4096, 1808]
