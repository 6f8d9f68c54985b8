"""The `BlobStore` port and `MinioBlobStore`, its adapter for MinIO / any S3 server.

Contract (the same suite runs against `tests/fakes.FakeBlobStore` and MinIO):

* `put_stream` consumes an async iterator of chunks and stores it under `key`, computing
  size and SHA-256 on the way. Memory stays bounded (one multipart part plus a few chunks)
  whatever the object's size. Writing the same key again overwrites it (keys are
  deterministic, so a replayed message overwrites rather than duplicates).
* `stat` returns None for a missing key; `get_stream` raises `BlobNotFound`.
* `presigned_get` returns a URL that fetches the object with no credentials until it expires.
* `list_older_than` finds objects under a prefix last modified before a time (retention).
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.error import S3Error

from shared.errors import ConfigurationError, DependencyUnavailable
from shared.settings import InfraSettings

PART_SIZE = 5 * 1024 * 1024  # S3's minimum part size: the least memory per part
_QUEUE_CHUNKS = 4


class BlobNotFound(KeyError):
    pass


@dataclass(frozen=True)
class PutResult:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    last_modified: datetime | None
    content_type: str | None
    metadata: dict[str, str]


class BlobStore(Protocol):
    bucket: str

    async def ensure_bucket(self) -> None: ...

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> PutResult: ...

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> PutResult: ...

    def get_stream(self, key: str) -> AsyncIterator[bytes]: ...

    async def stat(self, key: str) -> BlobInfo | None: ...

    async def delete(self, key: str) -> None: ...

    async def presigned_get(self, key: str, expires_s: int = 3600) -> str: ...

    async def list_older_than(self, prefix: str, before: datetime) -> list[BlobInfo]: ...


class _ChunkReader:
    """A blocking file-like view of chunks fed from the event loop (bounded queue)."""

    def __init__(self) -> None:
        self.q: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._buf = bytearray()
        self._eof = False
        self.aborted = threading.Event()

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or len(self._buf) < size):
            chunk = self.q.get()
            if chunk is None:
                self._eof = True
            else:
                self._buf.extend(chunk)
        if self.aborted.is_set():
            raise OSError("upload aborted: the source stream failed")
        n = len(self._buf) if size < 0 else min(size, len(self._buf))
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


async def _offer(reader: _ChunkReader, item: bytes | None, upload: asyncio.Task[Any]) -> bool:
    """Hand a chunk to the uploading thread without blocking the loop; False if it stopped."""
    while not upload.done():
        try:
            reader.q.put_nowait(item)
            return True
        except queue.Full:
            await asyncio.sleep(0.002)
    return False


class MinioBlobStore:
    def __init__(self, client: Minio, bucket: str) -> None:
        self._client = client
        self.bucket = bucket

    @classmethod
    def from_settings(cls, settings: InfraSettings) -> MinioBlobStore:
        parts = urlsplit(settings.s3_endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(
                "S3_ENDPOINT", f"expected http(s)://host:port, got {settings.s3_endpoint!r}"
            )
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=settings.connect_timeout_s, read=60),
            retries=urllib3.Retry(
                total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)
            ),
            maxsize=16,
        )
        client = Minio(
            parts.netloc,
            access_key=settings.s3_access_key.get_secret_value(),
            secret_key=settings.s3_secret_key.get_secret_value(),
            secure=parts.scheme == "https",
            region=settings.s3_region,
            http_client=http,
        )
        return cls(client, settings.s3_bucket)

    async def ensure_bucket(self) -> None:
        def _ensure() -> None:
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

        await self._call(_ensure)

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> PutResult:
        reader = _ChunkReader()
        digest = hashlib.sha256()
        size = 0
        upload = asyncio.create_task(
            self._call(
                self._client.put_object,
                self.bucket,
                key,
                reader,
                -1,
                content_type=content_type,
                metadata=metadata or {},
                part_size=PART_SIZE,
                num_parallel_uploads=1,  # one part in memory at a time
            )
        )
        try:
            async for chunk in chunks:
                if not await _offer(reader, chunk, upload):
                    break
                digest.update(chunk)
                size += len(chunk)
        except BaseException:
            reader.aborted.set()
            raise
        finally:
            await _offer(reader, None, upload)
            if reader.aborted.is_set():
                await asyncio.gather(upload, return_exceptions=True)
        await upload
        return PutResult(key, size, digest.hexdigest())

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> PutResult:
        async def one() -> AsyncIterator[bytes]:
            yield data

        return await self.put_stream(key, one(), content_type)

    async def get_stream(self, key: str, chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
        def _open() -> Any:
            return self._client.get_object(self.bucket, key)

        response = await self._call(_open)
        try:
            while True:
                chunk = await asyncio.to_thread(response.read, chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            response.close()
            response.release_conn()

    async def stat(self, key: str) -> BlobInfo | None:
        try:
            st = await self._call(self._client.stat_object, self.bucket, key)
        except BlobNotFound:
            return None
        meta = {
            k.lower().removeprefix("x-amz-meta-"): v
            for k, v in (st.metadata or {}).items()
            if k.lower().startswith("x-amz-meta-")
        }
        return BlobInfo(key, st.size or 0, st.last_modified, st.content_type, meta)

    async def delete(self, key: str) -> None:
        await self._call(self._client.remove_object, self.bucket, key)

    async def presigned_get(self, key: str, expires_s: int = 3600) -> str:
        return str(
            await self._call(
                self._client.presigned_get_object, self.bucket, key, timedelta(seconds=expires_s)
            )
        )

    async def list_older_than(self, prefix: str, before: datetime) -> list[BlobInfo]:
        def _list() -> list[BlobInfo]:
            found = self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
            return [
                BlobInfo(o.object_name or "", o.size or 0, o.last_modified, None, {})
                for o in found
                if o.last_modified is not None and o.last_modified < before
            ]

        found: list[BlobInfo] = await self._call(_list)
        return found

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise BlobNotFound(args[1] if len(args) > 1 else "") from exc
            if exc.code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
                raise ConfigurationError(
                    "S3_ACCESS_KEY/S3_SECRET_KEY",
                    f"the S3 server refused the credentials ({exc.code})",
                ) from exc
            raise DependencyUnavailable("s3", f"{exc.code}: {exc.message}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DependencyUnavailable("s3", str(exc)) from exc
