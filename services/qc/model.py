"""QC value types, pure: what a check returns, what a request expects, what a clip measured,
and every threshold (`QcRules`). No I/O imports (the architecture test walks them)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.jobs import JobRequest

SHORT_SIDE = {"480p": 480, "720p": 720, "1080p": 1080, "4k": 2160}
ASPECT = {"16:9": 16 / 9, "9:16": 9 / 16, "1:1": 1.0}
CHECK_ORDER = (
    "decode",
    "duration",
    "resolution",
    "fps",
    "black_frames",
    "frozen_frames",
    "audio",
    "too_static",
    "too_shaky",
    "face_stability",
    "prompt_similarity",
)


class CheckStatus(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIPPED = "skipped"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CheckResult(_Frozen):
    """One check on one candidate. `score` is the measured value, compared with `threshold`
    in the direction the reason states; `skipped` never counts as a pass."""

    name: str
    status: CheckStatus
    score: float | None = None
    threshold: float | None = None
    reason: str


class Expectation(_Frozen):
    """What the request asked for, in the units the checks compare."""

    duration_s: float = Field(gt=0)
    short_side: int = Field(gt=0)
    aspect: float = Field(gt=0, description="width / height")
    fps: int | None = None
    audio: bool = False
    prompt: str = ""

    @classmethod
    def from_request(cls, request: JobRequest) -> Expectation:
        return cls(
            duration_s=request.duration_s,
            short_side=SHORT_SIDE[request.resolution],
            aspect=ASPECT[request.aspect_ratio],
            fps=request.fps,
            audio=request.audio,
            prompt=request.prompt,
        )


class Measurements(_Frozen):
    """What `analysis.measure` found in one clip (all rates per second of video)."""

    duration_s: float
    width: int
    height: int
    fps: float
    frames: int
    has_audio: bool
    audio_dbfs: float | None = Field(None, description="RMS level of the decoded audio.")
    black_share: float = Field(description="Share of frames that are black.")
    longest_freeze_s: float = Field(description="Longest run of unchanged non-black frames.")
    motion: float | None = Field(None, description="Mean optical flow, frame widths per second.")
    jitter: float | None = Field(
        None, description="Mean change of the global flow between pairs, frame widths per pair."
    )
    face_samples: int = 0
    face_hits: int = 0
    face_changes: int = Field(0, description="Face present/absent switches between samples.")


class QcRules(_Frozen):
    """Every threshold and the pick rule; see the README for what each means."""

    duration_tolerance_s: float = 0.3
    duration_tolerance_ratio: float = 0.1
    resolution_tolerance: float = 0.02
    aspect_tolerance: float = 0.03
    fps_tolerance: float = 0.5
    fps_range: tuple[float, float] = (15.0, 60.0)
    black_max_share: float = 0.10
    freeze_max_s: float = 0.5
    static_min_motion: float = 0.02
    shaky_max_jitter: float = 0.01
    face_max_changes_per_s: float = 1.0
    audio_min_dbfs: float = -50.0
    similarity_min: float = 0.20
    similarity_good: float = 0.30
    weights: dict[str, float] = Field(default_factory=lambda: {"prompt_similarity": 2.0})
    hard_checks: frozenset[str] = frozenset(
        {"decode", "duration", "resolution", "fps", "black_frames", "frozen_frames", "audio"}
    )
    review_below: float = Field(0.75, description="A pick scoring under this goes to review too.")

    def weight(self, check: str) -> float:
        return self.weights.get(check, 1.0)
