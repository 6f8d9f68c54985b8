"""The check rules, pure: `Measurements` against an `Expectation` and `QcRules` give one
`CheckResult` per check. Each rule, its score and threshold are documented in the README."""

from __future__ import annotations

import math

from services.qc.model import (
    CheckResult,
    CheckStatus,
    Expectation,
    Measurements,
    QcRules,
)


def _result(
    name: str, ok: bool, score: float | None, threshold: float | None, reason: str
) -> CheckResult:
    return CheckResult(
        name=name,
        status=CheckStatus.PASS if ok else CheckStatus.FAIL,
        score=None if score is None else round(score, 4),
        threshold=None if threshold is None else round(threshold, 4),
        reason=reason,
    )


def skipped(name: str, reason: str) -> CheckResult:
    return CheckResult(name=name, status=CheckStatus.SKIPPED, reason=reason)


def check_duration(m: Measurements, e: Expectation, r: QcRules) -> CheckResult:
    allowed = max(r.duration_tolerance_s, r.duration_tolerance_ratio * e.duration_s)
    off = abs(m.duration_s - e.duration_s)
    return _result(
        "duration",
        off <= allowed,
        off,
        allowed,
        f"{m.duration_s:.2f} s against {e.duration_s:g} s asked "
        f"(off by {off:.2f} s, allowed {allowed:.2f} s)",
    )


def check_resolution(m: Measurements, e: Expectation, r: QcRules) -> CheckResult:
    short = min(m.width, m.height)
    aspect = m.width / m.height
    aspect_off = abs(aspect / e.aspect - 1)
    size_ratio = short / e.short_side
    ok = size_ratio >= 1 - r.resolution_tolerance and aspect_off <= r.aspect_tolerance
    return _result(
        "resolution",
        ok,
        size_ratio,
        1 - r.resolution_tolerance,
        f"{m.width}x{m.height}: short side {short} px against {e.short_side} asked, "
        f"aspect {aspect:.3f} against {e.aspect:.3f} (off {aspect_off:.1%}, "
        f"allowed {r.aspect_tolerance:.0%})",
    )


def check_fps(m: Measurements, e: Expectation, r: QcRules) -> CheckResult:
    if e.fps is None:
        low, high = r.fps_range
        return _result(
            "fps",
            low <= m.fps <= high,
            m.fps,
            low,
            f"{m.fps:.2f} fps; none asked, so it must lie in [{low:g}, {high:g}]",
        )
    off = abs(m.fps - e.fps)
    return _result(
        "fps",
        off <= r.fps_tolerance,
        off,
        r.fps_tolerance,
        f"{m.fps:.2f} fps against {e.fps} asked (off by {off:.2f})",
    )


def check_black(m: Measurements, r: QcRules) -> CheckResult:
    return _result(
        "black_frames",
        m.black_share <= r.black_max_share,
        m.black_share,
        r.black_max_share,
        f"{m.black_share:.0%} of frames are black (at most {r.black_max_share:.0%})",
    )


def check_frozen(m: Measurements, r: QcRules) -> CheckResult:
    return _result(
        "frozen_frames",
        m.longest_freeze_s <= r.freeze_max_s,
        m.longest_freeze_s,
        r.freeze_max_s,
        f"longest freeze {m.longest_freeze_s:.2f} s (at most {r.freeze_max_s:g} s); "
        "a frame is frozen when under 0.1% of its pixels change by more than 8 levels",
    )


def check_audio(m: Measurements, e: Expectation, r: QcRules) -> CheckResult:
    if not e.audio:
        return _result("audio", True, None, None, "no audio asked")
    if not m.has_audio:
        return _result("audio", False, None, r.audio_min_dbfs, "audio asked but no audio track")
    level = m.audio_dbfs if m.audio_dbfs is not None else -math.inf
    return _result(
        "audio",
        level >= r.audio_min_dbfs,
        max(level, -120.0),
        r.audio_min_dbfs,
        f"audio track at {level:.1f} dBFS RMS (at least {r.audio_min_dbfs:g})",
    )


def check_static(m: Measurements, r: QcRules) -> CheckResult:
    if m.motion is None:
        return skipped("too_static", "no pair of non-black frames to compare")
    return _result(
        "too_static",
        m.motion >= r.static_min_motion,
        m.motion,
        r.static_min_motion,
        f"mean optical flow {m.motion:.3f} frame widths/s (at least {r.static_min_motion:g})",
    )


def check_shaky(m: Measurements, r: QcRules) -> CheckResult:
    if m.jitter is None:
        return skipped("too_shaky", "no pair of non-black frames to compare")
    return _result(
        "too_shaky",
        m.jitter <= r.shaky_max_jitter,
        m.jitter,
        r.shaky_max_jitter,
        f"global motion changes by {m.jitter:.4f} frame widths between frames "
        f"(at most {r.shaky_max_jitter:g})",
    )


def check_faces(m: Measurements, r: QcRules) -> CheckResult:
    if m.face_samples == 0:
        return skipped("face_stability", "no frame sampled for faces")
    if m.face_hits == 0:
        return _result(
            "face_stability",
            True,
            0.0,
            r.face_max_changes_per_s,
            f"no face in {m.face_samples} sampled frames: nothing can flicker",
        )
    rate = m.face_changes / max(m.duration_s, 1.0)
    return _result(
        "face_stability",
        rate <= r.face_max_changes_per_s,
        rate,
        r.face_max_changes_per_s,
        f"face seen in {m.face_hits}/{m.face_samples} samples, appearing or vanishing "
        f"{m.face_changes} times ({rate:.2f}/s, at most {r.face_max_changes_per_s:g}/s)",
    )


def check_similarity(similarity: float | None, why_not: str, r: QcRules) -> CheckResult:
    if similarity is None:
        return skipped("prompt_similarity", why_not)
    return _result(
        "prompt_similarity",
        similarity >= r.similarity_min,
        similarity,
        r.similarity_min,
        f"CLIP cosine similarity of frames and prompt {similarity:.3f} "
        f"(at least {r.similarity_min:g})",
    )


def evaluate(m: Measurements, e: Expectation, r: QcRules) -> list[CheckResult]:
    """All frame-based checks, in `CHECK_ORDER` (prompt similarity is added by the caller)."""
    return [
        check_duration(m, e, r),
        check_resolution(m, e, r),
        check_fps(m, e, r),
        check_black(m, r),
        check_frozen(m, r),
        check_audio(m, e, r),
        check_static(m, r),
        check_shaky(m, r),
        check_faces(m, r),
    ]


def undecodable(reason: str) -> list[CheckResult]:
    return [_result("decode", False, None, None, f"the file cannot be decoded: {reason}")]
