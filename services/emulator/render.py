"""PyAV renderer: real H.264/yuv420p MP4s (optional AAC tone) plus a thumbnail.

Frames show a moving gradient, a moving disc, a frame counter and the prompt text; a real face
(scikit-image's public-domain astronaut photo) is composited when the spec asks for one. The
same spec gives the same frames, and in practice the same bytes (bitexact muxing, one thread).
Rendering runs in a bounded thread pool so the event loop never blocks; results are cached on
disk under the data dir, keyed by a hash of the spec.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from numpy.typing import NDArray

Frame = NDArray[np.uint8]
log = logging.getLogger(__name__)
AUDIO_RATE = 48000
AUDIO_CHUNK = 1024


@dataclass(frozen=True)
class RenderSpec:
    prompt: str
    width: int
    height: int
    seconds: float
    fps: int = 24
    audio: bool = False
    face: bool = False
    seed: int = 0

    def cache_key(self) -> str:
        raw = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:32]

    def scaled(self, scale: float) -> RenderSpec:
        if scale == 1.0:
            return self
        return replace(self, width=_even(self.width * scale), height=_even(self.height * scale))


@dataclass(frozen=True)
class RenderedVideo:
    video_path: Path
    thumbnail_path: Path


def _even(value: float) -> int:
    return max(16, round(value / 2.0) * 2)


def _face_patch() -> Frame:
    from skimage import data

    astronaut: Frame = data.astronaut()  # type: ignore[no-untyped-call]
    return np.ascontiguousarray(astronaut[20:220, 140:330, ::-1])  # RGB -> BGR, face crop


class FramePainter:
    """Draws frame i of a spec; pure numpy/OpenCV, deterministic for a spec."""

    def __init__(self, spec: RenderSpec) -> None:
        self.spec = spec
        self.total = max(1, round(spec.seconds * spec.fps))
        rng = np.random.default_rng(spec.seed + int(spec.cache_key()[:8], 16))
        self.tint = rng.integers(40, 200, size=3).astype(np.float32)
        self.phase = float(rng.uniform(0, 2 * math.pi))
        w, h = spec.width, spec.height
        self.xs = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
        self.ys = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
        self.lines = textwrap.wrap(spec.prompt, width=max(12, w // 14))[:4]
        self.face = self._sized_face() if spec.face else None

    def _sized_face(self) -> Frame:
        patch = _face_patch()
        target_h = max(16, int(self.spec.height * 0.45))
        target_w = max(16, int(patch.shape[1] * target_h / patch.shape[0]))
        target_w = min(target_w, self.spec.width // 2)
        resized = cv2.resize(patch, (target_w, target_h), interpolation=cv2.INTER_AREA)
        return np.asarray(resized, dtype=np.uint8)

    def paint(self, i: int) -> Frame:
        t = i / self.spec.fps
        img = self._background(t)
        self._disc(img, t)
        if self.face is not None:
            self._composite_face(img, t)
        self._text(img, i)
        return img

    def _background(self, t: float) -> Frame:
        shift = (self.xs + 0.15 * t) % 1.0
        base = np.empty((self.spec.height, self.spec.width, 3), dtype=np.float32)
        base[..., 0] = self.tint[0] * (0.5 + 0.5 * shift)
        base[..., 1] = self.tint[1] * (0.4 + 0.6 * self.ys)
        base[..., 2] = self.tint[2] * (0.5 + 0.5 * np.sin(2 * math.pi * shift + self.phase))
        return np.clip(base, 0, 255).astype(np.uint8)

    def _disc(self, img: Frame, t: float) -> None:
        w, h = self.spec.width, self.spec.height
        cx = int(w * (0.5 + 0.35 * math.sin(1.3 * t + self.phase)))
        cy = int(h * (0.5 + 0.30 * math.cos(0.9 * t)))
        cv2.circle(img, (cx, cy), max(4, min(w, h) // 8), (240, 240, 240), -1, cv2.LINE_AA)

    def _composite_face(self, img: Frame, t: float) -> None:
        assert self.face is not None
        fh, fw = self.face.shape[:2]
        x = int((self.spec.width - fw) * (0.5 + 0.1 * math.sin(0.8 * t)))
        y = int((self.spec.height - fh) * (0.5 + 0.1 * math.cos(0.6 * t)))
        img[y : y + fh, x : x + fw] = self.face

    def _text(self, img: Frame, i: int) -> None:
        scale = max(0.3, self.spec.height / 720.0)
        step = int(34 * scale) + 4
        label = f"reelforge emulator  frame {i + 1}/{self.total}"
        rows = [label, *self.lines]
        for row, line in enumerate(rows):
            origin = (int(12 * scale) + 2, step * (row + 1))
            cv2.putText(
                img, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA
            )
            cv2.putText(
                img, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
            )


def render_to_files(spec: RenderSpec, video_path: Path, thumbnail_path: Path) -> RenderedVideo:
    """Encode the clip and its thumbnail; files appear atomically (write then rename)."""
    painter = FramePainter(spec)
    tmp_video = video_path.with_suffix(f".{os.getpid()}.tmp.mp4")
    thumb_frame = _encode(spec, painter, tmp_video)
    ok, encoded = cv2.imencode(thumbnail_path.suffix, thumb_frame)
    if not ok:
        raise RuntimeError("thumbnail encoding failed")
    tmp_thumb = thumbnail_path.with_suffix(f".{os.getpid()}.tmp{thumbnail_path.suffix}")
    tmp_thumb.write_bytes(encoded.tobytes())
    os.replace(tmp_thumb, thumbnail_path)
    os.replace(tmp_video, video_path)
    return RenderedVideo(video_path, thumbnail_path)


def _encode(spec: RenderSpec, painter: FramePainter, path: Path) -> Frame:
    container = av.open(str(path), mode="w", format="mp4", options={"fflags": "+bitexact"})
    try:
        video = container.add_stream("libx264", rate=spec.fps)
        video.width, video.height, video.pix_fmt = spec.width, spec.height, "yuv420p"
        video.codec_context.options = {"preset": "ultrafast", "crf": "26"}
        video.codec_context.thread_count = 1
        audio = container.add_stream("aac", rate=AUDIO_RATE, layout="mono") if spec.audio else None
        thumb = _encode_video(container, video, painter)
        if audio is not None:
            _encode_audio(container, audio, spec.seconds)
    finally:
        container.close()
    return thumb


def _encode_video(
    container: av.container.OutputContainer, stream: av.VideoStream, painter: FramePainter
) -> Frame:
    thumb = painter.paint(0)
    for i in range(painter.total):
        bgr = painter.paint(i)
        if i == painter.total // 2:
            thumb = bgr
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="yuv420p")
        frame.pts = i
        frame.time_base = Fraction(1, painter.spec.fps)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    return thumb


def _encode_audio(
    container: av.container.OutputContainer, stream: av.AudioStream, seconds: float
) -> None:
    total = int(seconds * AUDIO_RATE)
    for start in range(0, total, AUDIO_CHUNK):
        n = min(AUDIO_CHUNK, total - start)
        t = (np.arange(start, start + n, dtype=np.float32)) / AUDIO_RATE
        tone = (0.2 * np.sin(2 * math.pi * 440.0 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = start
        frame.time_base = Fraction(1, AUDIO_RATE)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


class Renderer:
    """Renders specs off the event loop, at most `workers` at a time, caching results on disk."""

    def __init__(self, data_dir: Path, scale: float = 1.0, workers: int = 1) -> None:
        self.data_dir = data_dir
        self.scale = scale
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, workers), thread_name_prefix="render"
        )
        self._inflight: dict[str, asyncio.Future[RenderedVideo]] = {}
        data_dir.mkdir(parents=True, exist_ok=True)

    def scale_for(self, spec: RenderSpec) -> float:
        """`[fullsize]` in the prompt renders at the requested size whatever RENDER_SCALE says."""
        return 1.0 if "[fullsize]" in spec.prompt.lower() else self.scale

    def paths(self, spec: RenderSpec) -> RenderedVideo:
        key = spec.scaled(self.scale_for(spec)).cache_key()
        return RenderedVideo(self.data_dir / f"{key}.mp4", self.data_dir / f"{key}.webp")

    def _start(self, spec: RenderSpec) -> asyncio.Future[RenderedVideo] | RenderedVideo:
        target = self.paths(spec)
        if target.video_path.exists() and target.thumbnail_path.exists():
            return target
        key = target.video_path.stem
        future = self._inflight.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            scaled = spec.scaled(self.scale_for(spec))
            future = loop.run_in_executor(
                self._executor, render_to_files, scaled, target.video_path, target.thumbnail_path
            )
            self._inflight[key] = future
            future.add_done_callback(lambda f: self._finished(key, f))
        return future

    def _finished(self, key: str, future: asyncio.Future[RenderedVideo]) -> None:
        self._inflight.pop(key, None)
        if not future.cancelled() and future.exception() is not None:
            log.error("render %s failed: %s", key, future.exception())

    def prefetch(self, spec: RenderSpec) -> None:
        """Start rendering now (in the pool) so the result is ready when the task finishes."""
        self._start(spec)

    async def render(self, spec: RenderSpec) -> RenderedVideo:
        started = self._start(spec)
        if isinstance(started, RenderedVideo):
            return started
        return await asyncio.shield(started)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
