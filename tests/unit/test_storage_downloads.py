"""Issue 11, finding 4: result downloads are bounded in size and in total time, follow redirects
only to allowed addresses, and a result that keeps failing fails its attempt after a bounded
number of tries. Real HTTP on 127.0.0.1 (allow-listed) through the real Kling adapter and the
guarded transport; the redirect to the metadata address is refused before any connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.storage.handlers import on_task_succeeded
from services.storage.rehost import DownloadLimits, Rehoster
from shared.egress import EgressGuard, guarded_transport, parse_allow
from shared.events import TaskFailed
from shared.messaging import TransientError
from shared.metrics import ServiceMetrics
from shared.providers.base import TaskRef, VideoOutput
from shared.providers.errors import FailureClass, ProviderRejected, ProviderUnavailable
from shared.providers.kling import KlingProvider
from shared.topics import Topic
from tests.fakes import FakeBlobStore, FakeJobRepository
from tests.unit.test_storage_fakes import FakeProvider, make_context, make_job, succeeded

BOUND_S = 20.0  # "ends at all", never a timing assertion
Respond = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class LocalServer:
    """Answers every GET on 127.0.0.1 with `respond`."""

    respond: Respond
    server: asyncio.Server | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        with contextlib.suppress(ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            await self.respond(writer)
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/result.mp4"


@contextlib.asynccontextmanager
async def serving(respond: Respond) -> AsyncIterator[LocalServer]:
    s = LocalServer(respond)
    s.server = await asyncio.start_server(s.handle, "127.0.0.1", 0)
    try:
        yield s
    finally:
        s.server.close()
        for writer in s.writers:
            writer.close()
        await s.server.wait_closed()


async def trickle(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 100000000\r\n\r\n")
    for _ in range(100_000):  # bounded; the server's close ends it sooner
        if writer.is_closing():
            return
        writer.write(b"\x00")
        await writer.drain()
        await asyncio.sleep(0.05)


async def three_mib(writer: asyncio.StreamWriter) -> None:
    size = 3 << 20
    writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
    for _ in range(size >> 16):
        writer.write(b"\x00" * (1 << 16))
        await writer.drain()


async def to_metadata(writer: asyncio.StreamWriter) -> None:
    writer.write(
        b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    await writer.drain()


@contextlib.asynccontextmanager
async def kling() -> AsyncIterator[KlingProvider]:
    transport = guarded_transport(EgressGuard(parse_allow("127.0.0.1/32")))
    async with httpx.AsyncClient(transport=transport, timeout=10.0) as client:
        yield KlingProvider(client, access_key="a", secret_key="s", base_url="http://unused")


async def rehost_from(url: str, limits: DownloadLimits) -> tuple[FakeBlobStore, Exception]:
    blob = FakeBlobStore("videos-test")
    rehoster = Rehoster(blob, ServiceMetrics(CollectorRegistry(), "storage"), limits=limits)
    job = make_job(provider="kling")
    event = succeeded(job).model_copy(
        update={
            "task": TaskRef(provider="kling", model="kling-v2-6", task_id="t1"),
            "outputs": (VideoOutput(url=url),),
        }
    )
    async with kling() as provider:
        with pytest.raises((ProviderRejected, ProviderUnavailable)) as caught:
            await asyncio.wait_for(rehoster.rehost(provider, job, event), BOUND_S)
    return blob, caught.value


async def test_a_download_that_trickles_forever_ends_at_the_total_cap() -> None:
    async with serving(trickle) as server:
        blob, error = await rehost_from(server.url, DownloadLimits(total_s=0.5))
    assert isinstance(error, ProviderUnavailable)
    assert error.failure_class is FailureClass.TIMEOUT
    assert "not complete within 0.5 s" in error.message
    assert blob.objects == {}


async def test_an_oversize_result_is_refused() -> None:
    async with serving(three_mib) as server:
        blob, error = await rehost_from(server.url, DownloadLimits(max_bytes=1 << 20))
    assert isinstance(error, ProviderRejected)
    assert "larger than the 1048576 byte download cap" in error.message
    assert blob.objects == {}


async def test_a_redirect_to_the_metadata_address_is_refused_before_connecting() -> None:
    async with serving(to_metadata) as server:
        blob, error = await rehost_from(server.url, DownloadLimits())
    assert isinstance(error, ProviderRejected)
    assert "egress refused" in error.message
    assert "169.254.169.254 is link-local" in error.message
    assert blob.objects == {}


async def test_a_result_that_keeps_failing_fails_its_attempt_after_bounded_tries() -> None:
    repo, blob = FakeJobRepository(), FakeBlobStore("videos-test")
    job = make_job()
    await repo.create(job)
    outage = ProviderUnavailable(FailureClass.TIMEOUT, "download not complete within 900 s")
    ctx, published = make_context(repo, blob, FakeProvider(error=outage))
    assert ctx.max_download_tries == 3

    for _ in range(2):
        with pytest.raises(TransientError, match=r"download failed \(\d/3\)"):
            await on_task_succeeded(ctx, succeeded(job))
    assert published.on(Topic.TASKS_FAILED) == []
    await on_task_succeeded(ctx, succeeded(job))

    [failed] = published.on(Topic.TASKS_FAILED)
    assert isinstance(failed, TaskFailed)
    assert failed.failure.failure_class is FailureClass.TIMEOUT  # dispatcher: retry/fallback
    assert failed.failure.message.startswith("download failed 3 times; last: ")
    assert ctx.download_failures == {}
