"""The re-host step: provider bytes -> object store -> probe + poster thumbnail.

The download iterator is handed straight to `BlobStore.put_stream`, which uploads it in
multipart parts while hashing: memory stays at one part plus a few chunks whatever the size.
The probe reads the stored object back through a presigned URL with range requests, so it
never holds the file either.

Every download is bounded (`DownloadLimits`): a size cap, refused as soon as it is passed,
and a total time cap over the whole transfer (httpx's timeouts are per read, so a source
trickling a byte at a time would otherwise never end). Where the bytes may come from is the
egress guard's job (the storage client's transport, `shared/egress.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from services.storage import logic
from shared import media
from shared.blobstore import BlobStore
from shared.events import TaskSucceeded
from shared.faultpoints import reach
from shared.jobs import Job, StoredVideo, now
from shared.metrics import ServiceMetrics
from shared.providers.base import VideoProvider
from shared.providers.errors import FailureClass, ProviderRejected, ProviderUnavailable

Prober = Callable[[BlobStore, str], Awaitable[tuple[media.MediaInfo, bytes]]]
PRESIGN_FOR_PROBE_S = 900


async def probe_stored(blob: BlobStore, key: str) -> tuple[media.MediaInfo, bytes]:
    """Default prober: FFmpeg reads the stored object over a short-lived presigned URL."""
    url = await blob.presigned_get(key, PRESIGN_FOR_PROBE_S)
    return await media.probe_and_thumbnail_async(url)


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int = 2 << 30
    total_s: float = 900.0


async def bounded(
    chunks: AsyncIterator[bytes], limits: DownloadLimits, provider: str
) -> AsyncIterator[bytes]:
    """`chunks`, cut off past `max_bytes` (permanent: the same result stays too large) or
    after `total_s` in all (transient: the next try may be faster)."""
    deadline = asyncio.get_running_loop().time() + limits.total_s
    received = 0
    iterator = aiter(chunks)
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                raise ProviderUnavailable(
                    FailureClass.TIMEOUT,
                    f"{provider}: download not complete within {limits.total_s:g} s "
                    f"({received} bytes received)",
                ) from exc
            received += len(chunk)
            if received > limits.max_bytes:
                raise ProviderRejected(
                    FailureClass.GENERATION_FAILED,
                    f"{provider}: result larger than the {limits.max_bytes} byte download cap",
                )
            yield chunk
    finally:  # close the provider's stream (and its connection) whatever ended the loop
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()


@dataclass
class Rehoster:
    blob: BlobStore
    metrics: ServiceMetrics
    probe: Prober = probe_stored
    clock: Callable[[], datetime] = field(default=now)
    limits: DownloadLimits = field(default_factory=DownloadLimits)

    async def rehost(self, provider: VideoProvider, job: Job, event: TaskSucceeded) -> StoredVideo:
        """Copy outputs[0] of the task into the store; raises ProviderError from the download
        and `media.InvalidMedia` when the bytes are not a video (objects then removed)."""
        output = event.outputs[0]
        keys = logic.object_keys(job.tenant_id, job.job_id, event.attempt_id)
        started = time.monotonic()
        put = await self.blob.put_stream(
            keys.video,
            _crash_point_after_first_chunk(
                bounded(provider.download(event.task, output), self.limits, event.task.provider)
            ),
            content_type=output.mime_type,
            metadata={
                "job-id": job.job_id,
                "attempt-id": event.attempt_id,
                "provider": event.task.provider,
            },
        )
        try:
            info, jpeg = await self.probe(self.blob, keys.video)
        except media.InvalidMedia:
            await self.blob.delete(keys.video)
            raise
        await self.blob.put_bytes(keys.thumbnail, jpeg, "image/jpeg")
        self._observe(event, put.size, time.monotonic() - started)
        return logic.stored_video(self.blob.bucket, keys, put.size, put.sha256, info)

    async def remove(self, job: Job, attempt_id: str) -> None:
        """Delete what a re-host of this attempt wrote (the job ended while it ran)."""
        keys = logic.object_keys(job.tenant_id, job.job_id, attempt_id)
        for key in (keys.video, keys.thumbnail):
            await self.blob.delete(key)

    def _observe(self, event: TaskSucceeded, size: int, seconds: float) -> None:
        provider = event.task.provider
        self.metrics.rehost_bytes.labels(provider).inc(size)
        self.metrics.rehost_seconds.labels(provider).observe(seconds)
        self.metrics.video_size.labels(provider).observe(size)
        margin = logic.expiry_margin_s(event.outputs[0].expires_at, self.clock())
        if margin is not None:
            self.metrics.url_expiry_margin.labels(provider).observe(margin)


async def _crash_point_after_first_chunk(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The download, with the fault point `storage.mid_upload` after its first chunk."""
    first = True
    async for chunk in chunks:
        yield chunk
        if first:
            first = False
            reach("storage.mid_upload")
