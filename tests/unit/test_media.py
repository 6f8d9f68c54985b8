"""shared.media on small MP4s made with PyAV in the test (no fixtures on disk)."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from shared import media


def make_mp4(
    path: Path | io.BytesIO,
    *,
    seconds: float = 2.0,
    fps: int = 12,
    size: tuple[int, int] = (160, 96),
    audio: bool = False,
) -> None:
    """A small H.264 (+ optional AAC) MP4 whose frames brighten over time."""
    width, height = size
    with av.open(path, mode="w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast"}
        sound = out.add_stream("aac", rate=16000) if audio else None
        frames = int(seconds * fps)
        for i in range(frames):
            level = int(255 * i / max(1, frames - 1))
            img = np.full((height, width, 3), level, dtype=np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(video.encode(None))
        if sound is not None:
            samples = 1024
            for i in range(int(seconds * 16000 / samples)):
                frame = av.AudioFrame.from_ndarray(
                    np.zeros((1, samples), dtype=np.float32), format="fltp", layout="mono"
                )
                frame.sample_rate, frame.pts = 16000, i * samples
                frame.time_base = Fraction(1, 16000)
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))


def test_probe_reports_duration_resolution_fps_codec_and_audio(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    make_mp4(path, seconds=2.0, fps=12, size=(160, 96), audio=True)

    info = media.probe(str(path))

    assert info.width == 160
    assert info.height == 96
    assert info.fps == pytest.approx(12.0)
    assert info.codec == "h264"
    assert info.has_audio is True
    assert info.duration_s == pytest.approx(2.0, abs=0.2)


def test_probe_of_a_silent_clip_says_no_audio(tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    make_mp4(path)
    assert media.probe(str(path)).has_audio is False


def test_thumbnail_is_a_jpeg_of_a_frame_about_one_second_in(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    make_mp4(path, seconds=3.0, fps=10)

    jpeg = media.thumbnail_jpeg(str(path))

    assert jpeg[:3] == b"\xff\xd8\xff"
    with av.open(io.BytesIO(jpeg)) as decoded:
        frame = next(decoded.decode(video=0))
        brightness = frame.to_ndarray(format="gray").mean()
    # frames brighten linearly over 3 s: ~1 s in is about a third of full white
    assert 50 < brightness < 130
    assert frame.width == 160


def test_short_clip_thumbnail_falls_back_to_an_early_frame(tmp_path: Path) -> None:
    path = tmp_path / "short.mp4"
    make_mp4(path, seconds=0.5, fps=8)
    info, jpeg = media.probe_and_thumbnail(str(path))
    assert jpeg.startswith(b"\xff\xd8")
    assert info.duration_s is not None
    assert info.duration_s < 1.0


def test_probe_reads_a_file_object(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    make_mp4(buffer)
    buffer.seek(0)
    assert media.probe(buffer).width == 160


def test_garbage_is_invalid_media(tmp_path: Path) -> None:
    path = tmp_path / "junk.mp4"
    path.write_bytes(b"not a video at all" * 100)
    with pytest.raises(media.InvalidMedia):
        media.probe(str(path))
