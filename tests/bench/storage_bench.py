"""Storage benchmark: re-host a 1 GiB result into the real MinIO through the storage code path
(`Rehoster.rehost`: provider download -> `put_stream` multipart upload + sha256 -> FFmpeg probe
over a presigned URL -> thumbnail) and report peak RSS and throughput.

The "provider" is a child process serving a real MP4 followed by a large MP4 `free` box, so the
file is a valid video of the requested size (FFmpeg skips the padding). Target: < 150 MB RSS.

    python -m tests.bench.storage_bench [--size-mib 1024]   # needs `make infra-up`
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import resource
import socket
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

CHUNK = 1 << 20


def small_mp4() -> bytes:
    import av
    import numpy as np

    # faststart (moov first) re-reads the output, so it needs a real file
    path = Path(tempfile.mkdtemp(prefix="reelforge-bench-")) / "head.mp4"
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "faststart"}) as out:
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 640, 360, "yuv420p"
        for i in range(48):
            img = np.full((360, 640, 3), i * 5, dtype=np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(video.encode(None))
    data = path.read_bytes()
    path.unlink()
    return data


def serve(port: int, size: int) -> None:
    """Child process: GET -> the MP4 plus a `free` box padding it to `size` bytes."""
    head = small_mp4()
    pad = size - len(head)
    box_header = struct.pack(">I4s", pad, b"free")
    zeros = bytes(CHUNK)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "video/mp4")
            self.send_header("content-length", str(size))
            self.end_headers()
            self.wfile.write(head + box_header)
            left = pad - len(box_header)
            while left > 0:
                n = min(left, CHUNK)
                self.wfile.write(zeros[:n])
                left -= n

        def log_message(self, *args: Any) -> None:
            pass

    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def bench(size: int) -> None:
    import httpx
    from prometheus_client import CollectorRegistry

    from services.storage.rehost import Rehoster
    from shared.events import TaskSucceeded
    from shared.jobs import Job, JobRequest
    from shared.metrics import ServiceMetrics
    from shared.providers.base import TaskRef, VideoOutput
    from shared.runtime import connect_blobstore
    from shared.settings import InfraSettings

    port = free_port()
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", str(port), "--bytes", str(size)
    )
    blob = await connect_blobstore(InfraSettings())
    client = httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5))

    class Provider:
        async def download(self, ref: TaskRef, output: VideoOutput) -> AsyncIterator[bytes]:
            async with client.stream("GET", f"http://127.0.0.1:{port}/v.mp4") as response:
                response.raise_for_status()
                async for chunk in response.aiter_bytes(CHUNK):
                    yield chunk

    try:
        await _wait_for(port)
        job = Job(job_id="job_bench", tenant_id="bench", request=JobRequest(prompt="bench"))
        task = TaskRef(provider="bench", model="bench", task_id="t1")
        event = TaskSucceeded(
            subject=job.job_id,
            tenant_id="bench",
            attempt_id="a1",
            task=task,
            outputs=(VideoOutput(url="http://bench"),),
        )
        rehoster = Rehoster(blob, ServiceMetrics(CollectorRegistry(), "bench"))
        rss_before = _peak_rss_mib()
        started = time.monotonic()
        video = await rehoster.rehost(Provider(), job, event)  # type: ignore[arg-type]
        seconds = time.monotonic() - started
        await rehoster.remove(job, "a1")
    finally:
        await client.aclose()
        child.terminate()
        await child.wait()
    mib = video.size_bytes / (1 << 20)
    print(f"re-hosted {mib:.0f} MiB in {seconds:.1f} s = {mib / seconds:.1f} MiB/s")
    print(
        f"probe: {video.width}x{video.height} {video.codec} {video.duration_s}s, "
        f"sha256 {video.sha256[:12]}"
    )
    print(
        f"peak RSS: {_peak_rss_mib():.0f} MiB (after imports and connect: {rss_before:.0f} MiB);"
        " target < 150 MB"
    )


async def _wait_for(port: int) -> None:
    for _ in range(300):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the bench server did not start")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.bytes)
    else:
        asyncio.run(bench(args.size_mib << 20))


if __name__ == "__main__":
    main()
