"""Decode a clip once with PyAV and measure it with numpy/OpenCV, in bounded memory.

One pass over the frames keeps only small rolling state (the previous frame, at analysis
size) and a few tiny samples for the CLIP check, whatever the clip's length:

* every frame becomes a half-resolution grey image (never under 360 px on its short side):
  the decoder's luma plane, shrunk with OpenCV's area filter and stretched from video range
  (16-235) to full range, which is 7x cheaper than asking the decoder for grey;
* black: mean luma under `BLACK_MEAN` with its 99th percentile under `BLACK_P99`;
* frozen: under 0.1% of pixels change by more than 8 levels from the previous frame (the
  measured rule; "mean difference under 0.5" flagged a small moving object as frozen);
* motion: OpenCV DIS optical flow (ultrafast preset) on 320 px wide frames, between every
  pair of non-black frames: mean magnitude (static?) and frame-to-frame change of the median
  flow vector (shaky?);
* faces: the Haar frontal-face cascade shipped in the OpenCV wheel, `FACE_SAMPLES_PER_S`
  times a second, on the grey image shrunk to `FACE_SHORT_SIDE` px (faces under
  `FACE_MIN_SIZE` of the short side are not looked for), without `equalizeHist` (it stopped
  every detection on flat backgrounds when measured).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from services.qc.logic import Measurements

Gray = NDArray[np.uint8]
BLACK_MEAN = 20.0
BLACK_P99 = 40
FREEZE_DELTA = 8
FREEZE_SHARE = 0.001
FLOW_WIDTH = 320
ANALYSIS_MIN_SHORT_SIDE = 360
FACE_SAMPLES_PER_S = 4.0
FACE_SHORT_SIDE = 240
FACE_MIN_SIZE = 0.10  # of the short side
FACE_SCALE_STEP = 1.2
_LIMITED_TO_FULL = np.clip((np.arange(256) - 16) * 255.0 / 219.0, 0, 255).astype(np.uint8)
_PLANAR_8BIT = {"yuv420p", "yuv422p", "yuv444p", "yuvj420p", "yuvj422p", "yuvj444p", "nv12", "gray"}
SIMILARITY_FRAMES = 4
SIMILARITY_SIDE = 256


class UndecodableVideo(ValueError):
    """The file has no decodable video stream."""


@dataclass
class Probe:
    duration_s: float
    width: int
    height: int
    fps: float
    frames: int
    has_audio: bool


@dataclass
class ClipAnalysis:
    measurements: Measurements
    samples: list[NDArray[np.uint8]] = field(default_factory=list)  # RGB, for CLIP


class _FaceDetector:
    def __init__(self) -> None:
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the Haar cascade at {path}")

    def present(self, gray: Gray) -> bool:
        h, w = gray.shape
        if min(h, w) > FACE_SHORT_SIDE:
            scale = FACE_SHORT_SIDE / min(h, w)
            gray = _shrink(gray, (_even(w * scale), _even(h * scale)))
        side = max(24, int(min(gray.shape) * FACE_MIN_SIZE))
        found = self._cascade.detectMultiScale(
            gray, scaleFactor=FACE_SCALE_STEP, minNeighbors=5, minSize=(side, side)
        )
        return len(found) > 0


def probe(path: Path) -> Probe:
    """Container metadata only (a few ms): no frame is decoded."""
    with _open(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        duration = _duration(container, stream)
        frames = stream.frames or round(duration * fps)
        return Probe(
            duration,
            stream.codec_context.width,
            stream.codec_context.height,
            fps,
            frames,
            bool(container.streams.audio),
        )


def measure(path: Path) -> ClipAnalysis:
    """Probe, decode every frame once, and measure (see the module docstring)."""
    info = probe(path)
    state = _PassState(info)
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"  # frame threading held ~6 MB more frames and gained nothing
        try:
            for index, frame in enumerate(container.decode(stream)):
                state.add(index, frame)
        except av.error.FFmpegError as exc:
            raise UndecodableVideo(f"decoding failed at frame {state.frames}: {exc}") from exc
        if state.frames == 0:
            raise UndecodableVideo("no frame could be decoded")
    dbfs = audio_level(path) if info.has_audio else None
    return ClipAnalysis(state.result(dbfs), state.samples)


def audio_level(path: Path) -> float | None:
    """RMS level of the first audio stream in dBFS (-inf for digital silence)."""
    total, count = 0.0, 0
    with _open(path) as container:
        for frame in container.decode(container.streams.audio[0]):
            raw = frame.to_ndarray()
            samples = raw.astype(np.float64)
            if np.issubdtype(raw.dtype, np.integer):
                samples /= float(np.iinfo(raw.dtype).max)
            total += float(np.square(samples).sum())
            count += samples.size
    if count == 0:
        return None
    rms = math.sqrt(total / count)
    return 20 * math.log10(rms) if rms > 0 else -math.inf


class _PassState:
    """Rolling state of the single decoding pass."""

    def __init__(self, info: Probe) -> None:
        self.info = info
        scale = max(0.5, min(1.0, ANALYSIS_MIN_SHORT_SIDE / max(1, min(info.width, info.height))))
        self.size = (_even(info.width * scale), _even(info.height * scale))
        flow_h = _even(FLOW_WIDTH * info.height / max(1, info.width))
        self.flow_size = (FLOW_WIDTH, flow_h)
        self.flow = cv2.DISOpticalFlow_create(  # type: ignore[attr-defined]
            cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST
        )
        self.faces = _FaceDetector()
        fps = info.fps or 24.0
        self.face_every = max(1, round(fps / FACE_SAMPLES_PER_S))
        wanted = max(1, info.frames)
        self.sample_at = {
            int(wanted * (k + 0.5) / SIMILARITY_FRAMES) for k in range(SIMILARITY_FRAMES)
        }
        self.samples: list[NDArray[np.uint8]] = []
        self.prev: Gray | None = None
        self.prev_small: Gray | None = None
        self.prev_global: NDArray[np.float32] | None = None
        self.frames = self.black = self.run = self.longest_run = 0
        self.flow_sum = self.jitter_sum = 0.0
        self.flow_pairs = self.jitter_pairs = 0
        self.face_samples = self.face_hits = self.face_changes = 0
        self.last_face: bool | None = None

    def add(self, index: int, frame: Any) -> None:
        gray = _gray(frame, self.size)
        self.frames += 1
        if index in self.sample_at:
            self.samples.append(_rgb_sample(frame))
        if _is_black(gray):
            self.black += 1
            self.prev = self.prev_small = None
            self.prev_global = None
            self.run = 0
            return
        small = _shrink(gray, self.flow_size)
        if self.prev is not None and self.prev_small is not None:
            self._compare(self.prev, gray, self.prev_small, small)
        if index % self.face_every == 0:
            self._faces(gray)
        self.prev, self.prev_small = gray, small

    def _compare(self, prev: Gray, gray: Gray, prev_small: Gray, small: Gray) -> None:
        changed = np.count_nonzero(cv2.absdiff(prev, gray) > FREEZE_DELTA) / gray.size
        self.run = self.run + 1 if changed < FREEZE_SHARE else 0
        self.longest_run = max(self.longest_run, self.run)
        flow = self.flow.calc(prev_small, small, None)
        self.flow_sum += float(np.mean(np.hypot(flow[..., 0], flow[..., 1])))
        self.flow_pairs += 1
        global_motion = np.median(flow[::4, ::4].reshape(-1, 2), axis=0)
        if self.prev_global is not None:
            self.jitter_sum += float(np.hypot(*(global_motion - self.prev_global)))
            self.jitter_pairs += 1
        self.prev_global = global_motion

    def _faces(self, gray: Gray) -> None:
        present = self.faces.present(gray)
        self.face_samples += 1
        self.face_hits += present
        if self.last_face is not None and present != self.last_face:
            self.face_changes += 1
        self.last_face = present

    def result(self, audio_dbfs: float | None) -> Measurements:
        info, fps = self.info, self.info.fps or 24.0
        width = float(self.flow_size[0])
        motion = self.flow_sum / self.flow_pairs / width * fps if self.flow_pairs else None
        jitter = self.jitter_sum / self.jitter_pairs / width if self.jitter_pairs else None
        return Measurements(
            duration_s=info.duration_s,
            width=info.width,
            height=info.height,
            fps=info.fps,
            frames=self.frames,
            has_audio=info.has_audio,
            audio_dbfs=audio_dbfs,
            black_share=self.black / max(1, self.frames),
            longest_freeze_s=self.longest_run / fps,
            motion=motion,
            jitter=jitter,
            face_samples=self.face_samples,
            face_hits=self.face_hits,
            face_changes=self.face_changes,
        )


def _gray(frame: Any, size: tuple[int, int]) -> Gray:
    """Full-range grey at `size`, from the luma plane when the format allows."""
    name = frame.format.name
    if name not in _PLANAR_8BIT:
        out: Gray = frame.reformat(width=size[0], height=size[1], format="gray").to_ndarray()
        return out
    plane = frame.planes[0]
    luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : frame.width]
    small = _shrink(luma, size)
    full_range = name.startswith("yuvj") or name == "gray"
    return small if full_range else np.asarray(cv2.LUT(small, _LIMITED_TO_FULL), dtype=np.uint8)


def _shrink(image: Gray, size: tuple[int, int]) -> Gray:
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _is_black(gray: Gray) -> bool:
    return float(gray.mean()) < BLACK_MEAN and int(np.percentile(gray, 99)) < BLACK_P99


def _rgb_sample(frame: Any) -> NDArray[np.uint8]:
    w, h = frame.width, frame.height
    scale = SIMILARITY_SIDE / max(1, min(w, h))
    rgb: NDArray[np.uint8] = frame.reformat(
        width=_even(w * scale), height=_even(h * scale), format="rgb24"
    ).to_ndarray()
    return rgb


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def _duration(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration / av.time_base)
    return 0.0


class _open:
    """`av.open` that reports an unreadable file as `UndecodableVideo`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Any:
        try:
            self.container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as exc:
            raise UndecodableVideo(str(exc)) from exc
        if not self.container.streams.video:
            self.container.close()
            raise UndecodableVideo("no video stream")
        return self.container

    def __exit__(self, *exc: object) -> None:
        self.container.close()


def iter_gray(path: Path) -> Iterator[Gray]:
    """Every frame as full-size grey (tests and the bench use it to inspect clips)."""
    with _open(path) as container:
        for frame in container.decode(container.streams.video[0]):
            yield frame.to_ndarray(format="gray")
