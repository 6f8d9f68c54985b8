"""One behaviour suite for the BlobStore port, run on the fake and on MinIO."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shared.blobstore import BlobNotFound, BlobStore
from tests.fakes import FakeBlobStore


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


class BlobStoreContract:
    @pytest.fixture
    def store(self) -> BlobStore:
        raise NotImplementedError

    async def test_streams_an_object_in_and_reads_it_back(self, store: BlobStore) -> None:
        data = os.urandom(300_000)
        result = await store.put_stream(
            "jobs/a/video.mp4", chunks_of(data, 65_536), "video/mp4", {"job-id": "a"}
        )
        assert result.size == len(data)
        assert result.sha256 == hashlib.sha256(data).hexdigest()
        back = b"".join([c async for c in store.get_stream("jobs/a/video.mp4")])
        assert back == data
        info = await store.stat("jobs/a/video.mp4")
        assert info is not None and info.size == len(data)
        assert info.content_type == "video/mp4"
        assert info.metadata.get("job-id") == "a"

    async def test_writing_a_key_again_overwrites_it(self, store: BlobStore) -> None:
        await store.put_bytes("k", b"one", "text/plain")
        await store.put_bytes("k", b"two", "text/plain")
        assert b"".join([c async for c in store.get_stream("k")]) == b"two"

    async def test_missing_objects_are_reported_not_raised_by_stat(self, store: BlobStore) -> None:
        assert await store.stat("nope") is None
        with pytest.raises(BlobNotFound):
            _ = [c async for c in store.get_stream("nope")]

    async def test_deletes_and_lists_old_objects_for_retention(self, store: BlobStore) -> None:
        await store.put_bytes("old/x", b"x", "text/plain")
        future = datetime.now(UTC) + timedelta(minutes=5)
        assert [i.key for i in await store.list_older_than("old/", future)] == ["old/x"]
        past = datetime.now(UTC) - timedelta(minutes=5)
        assert await store.list_older_than("old/", past) == []
        await store.delete("old/x")
        assert await store.stat("old/x") is None


class TestFakeBlobStore(BlobStoreContract):
    @pytest.fixture
    def store(self) -> BlobStore:
        return FakeBlobStore()


@pytest.mark.integration
class TestMinioBlobStore(BlobStoreContract):
    @pytest.fixture
    def store(self, minio_store: BlobStore) -> BlobStore:
        return minio_store

    async def test_presigned_url_fetches_without_credentials(self, store: BlobStore) -> None:
        await store.put_bytes("shared/clip.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4")
        url = await store.presigned_get("shared/clip.mp4", expires_s=60)
        async with httpx.AsyncClient() as client:
            response = await client.get(url)
        assert response.status_code == 200
        assert response.content == b"\x00\x00\x00\x18ftypmp42"

    async def test_a_multipart_upload_larger_than_one_part_round_trips(
        self, store: BlobStore
    ) -> None:
        data = os.urandom(20 * 1024 * 1024)
        result = await store.put_stream("big.bin", chunks_of(data, 1 << 20))
        assert result.size == len(data)
        digest = hashlib.sha256()
        async for chunk in store.get_stream("big.bin"):
            digest.update(chunk)
        assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
