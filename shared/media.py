"""Probing videos and cutting poster thumbnails with PyAV (FFmpeg), shared by storage and QC.

Contract:

* `source` is a local path, an http(s) URL (e.g. a presigned object-store URL) or a seekable
  binary file object. FFmpeg reads what it needs with range requests / seeks, so nothing here
  ever holds the whole video in memory: a probe reads the container header, a thumbnail decodes
  a handful of frames around one timestamp.
* `InvalidMedia` means the bytes are not a playable video (no video stream, undecodable): a
  property of the file, never worth retrying. Any other exception (network, OS) is transient.
* These calls block; async callers run them in a worker thread (`probe_and_thumbnail_async`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, BinaryIO

import av
import av.error

THUMBNAIL_AT_S = 1.0
THUMBNAIL_MAX_WIDTH = 640
_MAX_FRAMES_TO_TARGET = 240  # bounded decode after a seek lands on an earlier keyframe
# FFmpeg network options (microseconds): fail a stalled read instead of hanging a handler.
_URL_OPTIONS = {"rw_timeout": "30000000", "timeout": "30000000", "reconnect": "1"}

Source = str | BinaryIO


class InvalidMedia(ValueError):
    """The source is not a decodable video."""


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float | None
    width: int
    height: int
    fps: float | None
    codec: str
    has_audio: bool


def probe(source: Source) -> MediaInfo:
    """Container and stream metadata of a video."""
    with _open(source) as container:
        return _info(container)


def thumbnail_jpeg(source: Source, at_s: float = THUMBNAIL_AT_S) -> bytes:
    """A JPEG of the frame at `at_s` (clamped to half the duration for short clips), at most
    THUMBNAIL_MAX_WIDTH pixels wide."""
    with _open(source) as container:
        return _thumbnail(container, _info(container), at_s)


def probe_and_thumbnail(source: Source, at_s: float = THUMBNAIL_AT_S) -> tuple[MediaInfo, bytes]:
    """Both, from one open of the source (one header read over the network)."""
    with _open(source) as container:
        info = _info(container)
        return info, _thumbnail(container, info, at_s)


async def probe_and_thumbnail_async(source: Source) -> tuple[MediaInfo, bytes]:
    return await asyncio.to_thread(probe_and_thumbnail, source)


def _open(source: Source) -> Any:
    is_url = isinstance(source, str) and source.startswith(("http://", "https://"))
    try:
        return av.open(source, mode="r", options=_URL_OPTIONS if is_url else {})
    except av.error.InvalidDataError as exc:
        raise InvalidMedia(f"not a readable media container: {exc}") from exc


def _info(container: Any) -> MediaInfo:
    if not container.streams.video:
        raise InvalidMedia("the file has no video stream")
    video = container.streams.video[0]
    duration = _duration_s(container, video)
    rate = video.average_rate or video.base_rate or video.guessed_rate
    return MediaInfo(
        duration_s=duration,
        width=int(video.codec_context.width),
        height=int(video.codec_context.height),
        fps=round(float(rate), 3) if rate else None,
        codec=str(video.codec_context.name),
        has_audio=bool(container.streams.audio),
    )


def _duration_s(container: Any, video: Any) -> float | None:
    if container.duration is not None:
        return round(float(container.duration / av.time_base), 3)
    if video.duration is not None and video.time_base is not None:
        return round(float(video.duration * video.time_base), 3)
    return None


def _thumbnail(container: Any, info: MediaInfo, at_s: float) -> bytes:
    video = container.streams.video[0]
    target = min(at_s, info.duration_s / 2) if info.duration_s else 0.0
    if target > 0 and video.time_base is not None:
        container.seek(int(target / video.time_base), stream=video, backward=True)
    frame = _frame_at(container, video, target)
    if frame is None:
        raise InvalidMedia("no decodable video frame")
    return _encode_jpeg(frame)


def _frame_at(container: Any, video: Any, target_s: float) -> Any:
    chosen = None
    try:
        for count, frame in enumerate(container.decode(video)):
            chosen = frame
            if frame.time is None or frame.time >= target_s or count >= _MAX_FRAMES_TO_TARGET:
                break
    except av.error.InvalidDataError as exc:
        if chosen is None:
            raise InvalidMedia(f"undecodable video: {exc}") from exc
    return chosen


def _encode_jpeg(frame: Any) -> bytes:
    width = min(THUMBNAIL_MAX_WIDTH, frame.width)
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"qscale": "3"}
    scaled = frame.reformat(width=width, height=height, format="yuvj420p")
    scaled.pts = None
    packets = [*encoder.encode(scaled), *encoder.encode(None)]
    if not packets:
        raise InvalidMedia("the JPEG encoder produced nothing")
    return b"".join(bytes(p) for p in packets)
