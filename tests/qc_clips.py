"""A labelled set of small synthetic clips for quality control, made with PyAV.

Each `LabelledClip` names the checks that must flag it (`defects`) and what the request asked
for (`expected`). Every clip is a textured scene seen through a moving window, so optical flow
has something to track; the defects are made the way real generators make them: a freeze
half-way, a cut to black, a hand-held jitter, a locked-off nearly still image, a face that
blinks in and out of existence, a missing audio track, a wrong length, size or frame rate.

`python -m tests.qc_clips DIR` writes the set to DIR (handy for looking at the clips).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from services.qc.logic import Expectation

Frame = NDArray[np.uint8]
AUDIO_RATE = 48000
PAINTERS: dict[str, Callable[[ClipSpec, np.random.Generator], Iterator[Frame]]] = {}


@dataclass(frozen=True)
class ClipSpec:
    kind: str
    width: int = 320
    height: int = 180
    seconds: float = 2.0
    fps: int = 24
    audio: bool = False
    seed: int = 7

    @property
    def frames(self) -> int:
        return max(1, round(self.seconds * self.fps))


@dataclass(frozen=True)
class LabelledClip:
    name: str
    spec: ClipSpec
    expected: Expectation
    defects: frozenset[str] = field(default_factory=frozenset)
    prompt: str = "a slow pan over a textured landscape"


def expectation(
    seconds: float = 2.0,
    short_side: int = 180,
    fps: int | None = 24,
    audio: bool = False,
    aspect: float = 16 / 9,
) -> Expectation:
    return Expectation(
        duration_s=seconds, short_side=short_side, aspect=aspect, fps=fps, audio=audio
    )


def labelled_set() -> list[LabelledClip]:
    """The clips the unit test and the bench score, with the checks each must fail."""
    base = expectation()
    good = ClipSpec("pan")
    return [
        LabelledClip("good", good, base),
        LabelledClip("good_with_audio", replace(good, audio=True), expectation(audio=True)),
        LabelledClip("good_face", ClipSpec("face_steady"), base, prompt="an astronaut portrait"),
        LabelledClip("frozen", ClipSpec("freeze"), base, frozenset({"frozen_frames"})),
        LabelledClip("black", ClipSpec("cut_to_black"), base, frozenset({"black_frames"})),
        LabelledClip("shaky", ClipSpec("shaky"), base, frozenset({"too_shaky"})),
        LabelledClip("static", ClipSpec("still"), base, frozenset({"too_static"})),
        LabelledClip("too_short", replace(good, seconds=1.0), base, frozenset({"duration"})),
        LabelledClip(
            "low_resolution", replace(good, width=192, height=108), base, frozenset({"resolution"})
        ),
        LabelledClip(
            "wrong_aspect", replace(good, width=240, height=180), base, frozenset({"resolution"})
        ),
        LabelledClip("wrong_fps", replace(good, fps=12), base, frozenset({"fps"})),
        LabelledClip(
            "face_flicker",
            ClipSpec("face_flicker"),
            base,
            frozenset({"face_stability"}),
            prompt="an astronaut portrait",
        ),
        LabelledClip("no_audio", good, expectation(audio=True), frozenset({"audio"})),
    ]


def write_clip(spec: ClipSpec, path: Path) -> Path:
    """Encode `spec` as H.264/yuv420p MP4 (plus an AAC tone when `spec.audio`)."""
    rng = np.random.default_rng(spec.seed)
    container = av.open(str(path), mode="w", format="mp4")
    try:
        video = container.add_stream("libx264", rate=spec.fps)
        video.width, video.height, video.pix_fmt = spec.width, spec.height, "yuv420p"
        video.codec_context.options = {"preset": "ultrafast", "crf": "23"}
        audio = container.add_stream("aac", rate=AUDIO_RATE, layout="mono") if spec.audio else None
        for i, bgr in enumerate(PAINTERS[spec.kind](spec, rng)):
            frame = av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, spec.fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            _write_tone(container, audio, spec.seconds)
    finally:
        container.close()
    return path


def _write_tone(
    container: av.container.OutputContainer, stream: av.AudioStream, seconds: float
) -> None:
    total, chunk = int(seconds * AUDIO_RATE), 1024
    for start in range(0, total, chunk):
        t = np.arange(start, min(start + chunk, total), dtype=np.float32) / AUDIO_RATE
        tone = (0.2 * np.sin(2 * math.pi * 440.0 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, start, Fraction(1, AUDIO_RATE)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


# --- scenes ---------------------------------------------------------------------------------


def _texture(spec: ClipSpec, rng: np.random.Generator, margin: int) -> Frame:
    """A colourful textured plate larger than the frame, so a window can move over it."""
    h, w = spec.height + 2 * margin, spec.width + 2 * margin
    noise = rng.integers(0, 256, size=(h // 16 + 2, w // 16 + 2, 3), dtype=np.uint8)
    plate = np.asarray(cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
    for _ in range(12):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        cv2.circle(plate, centre, int(rng.integers(6, max(8, h // 5))), colour, -1, cv2.LINE_AA)
    return plate


def _window(plate: Frame, spec: ClipSpec, x: float, y: float) -> Frame:
    xi, yi = round(x), round(y)
    return np.ascontiguousarray(plate[yi : yi + spec.height, xi : xi + spec.width])


def _panning(spec: ClipSpec, rng: np.random.Generator) -> Iterator[Frame]:
    margin = spec.width // 2
    plate = _texture(spec, rng, margin)
    speed = spec.width * 0.12 / spec.fps  # 12 % of the frame width per second
    for i in range(spec.frames):
        img = _window(plate, spec, margin * 0.2 + speed * i, margin * 0.5)
        t = i / spec.fps
        cx = int(spec.width * (0.5 + 0.3 * math.sin(1.7 * t)))
        cv2.circle(img, (cx, spec.height // 2), spec.height // 8, (240, 240, 240), -1, cv2.LINE_AA)
        yield img


def _freeze(spec: ClipSpec, rng: np.random.Generator) -> Iterator[Frame]:
    last: Frame | None = None
    for i, img in enumerate(_panning(spec, rng)):
        last = img if last is None or i < spec.frames * 0.4 else last
        yield last


def _cut_to_black(spec: ClipSpec, rng: np.random.Generator) -> Iterator[Frame]:
    for i, img in enumerate(_panning(spec, rng)):
        yield img if i < spec.frames * 0.4 else np.zeros_like(img)


def _shaky(spec: ClipSpec, rng: np.random.Generator) -> Iterator[Frame]:
    margin = spec.width // 4
    plate = _texture(spec, rng, margin)
    amplitude = spec.width * 0.025
    for _ in range(spec.frames):
        dx, dy = rng.uniform(-amplitude, amplitude, size=2)
        yield _window(plate, spec, margin + dx, margin + dy)


def _still(spec: ClipSpec, rng: np.random.Generator) -> Iterator[Frame]:
    """A locked-off shot of a still plate with sensor grain: alive, so not frozen, but static."""
    plate = _texture(spec, rng, 0)
    for _ in range(spec.frames):
        grain = rng.normal(0, 6, size=plate.shape)
        yield np.clip(plate + grain, 0, 255).astype(np.uint8)


def face_patch(height: int) -> Frame:
    """scikit-image's public-domain astronaut photo, cropped to the face, BGR."""
    from skimage import data

    crop = np.ascontiguousarray(data.astronaut()[20:220, 140:330, ::-1])  # type: ignore[no-untyped-call]
    width = int(crop.shape[1] * height / crop.shape[0])
    return np.asarray(cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA), np.uint8)


def _with_face(
    spec: ClipSpec, rng: np.random.Generator, visible: Callable[[int], bool]
) -> Iterator[Frame]:
    face = face_patch(int(spec.height * 0.6))
    fh, fw = face.shape[:2]
    for i, img in enumerate(_panning(spec, rng)):
        if visible(i):
            x = int((spec.width - fw) * (0.5 + 0.15 * math.sin(i / spec.fps)))
            y = (spec.height - fh) // 2
            img[y : y + fh, x : x + fw] = face
        yield img


def _face_steady(spec: ClipSpec, rng: np.random.Generator) -> Iterator[Frame]:
    return _with_face(spec, rng, lambda i: True)


def _face_flicker(spec: ClipSpec, rng: np.random.Generator) -> Iterator[Frame]:
    block = max(1, spec.fps // 4)  # a quarter of a second on, a quarter off
    return _with_face(spec, rng, lambda i: (i // block) % 2 == 0)


def _studio(spec: ClipSpec, rng: np.random.Generator) -> Iterator[Frame]:
    """Like the provider emulator's renders: a drifting gradient, a moving disc and a face."""
    xs = np.linspace(0.0, 1.0, spec.width, dtype=np.float32)[None, :]
    ys = np.linspace(0.0, 1.0, spec.height, dtype=np.float32)[:, None]
    tint = rng.integers(60, 200, size=3).astype(np.float32)
    face = face_patch(int(spec.height * 0.45))
    fh, fw = face.shape[:2]
    for i in range(spec.frames):
        t = i / spec.fps
        shift = (xs + 0.15 * t) % 1.0
        img = np.empty((spec.height, spec.width, 3), dtype=np.float32)
        img[..., 0] = tint[0] * (0.5 + 0.5 * shift)
        img[..., 1] = tint[1] * (0.4 + 0.6 * ys)
        img[..., 2] = tint[2] * (0.5 + 0.5 * np.sin(2 * math.pi * shift))
        frame = np.clip(img, 0, 255).astype(np.uint8)
        cx = int(spec.width * (0.5 + 0.35 * math.sin(1.3 * t)))
        cv2.circle(
            frame, (cx, spec.height // 3), spec.height // 8, (240, 240, 240), -1, cv2.LINE_AA
        )
        x = int((spec.width - fw) * (0.5 + 0.1 * math.sin(0.8 * t)))
        frame[(spec.height - fh) // 2 : (spec.height - fh) // 2 + fh, x : x + fw] = face
        yield frame


PAINTERS.update(
    studio=_studio,
    pan=_panning,
    freeze=_freeze,
    cut_to_black=_cut_to_black,
    shaky=_shaky,
    still=_still,
    face_steady=_face_steady,
    face_flicker=_face_flicker,
)


def write_set(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return {c.name: write_clip(c.spec, directory / f"{c.name}.mp4") for c in labelled_set()}


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "qc-clips")
    for name, path in write_set(out).items():
        print(f"{name}: {path}")
