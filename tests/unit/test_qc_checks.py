"""Each defect of the labelled synthetic set is flagged by the right check, and only by it;
the good clips pass every check; prompt similarity is skipped (never passed) without a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.qc.checks import run_checks, score_clip
from services.qc.logic import CheckStatus, QcRules
from tests.qc_clips import LabelledClip, labelled_set, write_clip

CLIPS = {c.name: c for c in labelled_set()}


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("qc-clips")


def _path(clip: LabelledClip, clip_dir: Path) -> Path:
    path = clip_dir / f"{clip.name}.mp4"
    return path if path.exists() else write_clip(clip.spec, path)


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_each_clip_fails_exactly_the_checks_of_its_defects(name: str, clip_dir: Path) -> None:
    clip = CLIPS[name]
    expected = clip.expected.model_copy(update={"prompt": clip.prompt})
    results = run_checks(_path(clip, clip_dir), expected, QcRules())
    failed = {r.name for r in results if r.status is CheckStatus.FAIL}
    assert failed == set(clip.defects), [r.model_dump() for r in results if r.name in failed]


def test_good_clip_passes_every_check_and_reports_clip_as_skipped(clip_dir: Path) -> None:
    clip = CLIPS["good"]
    report = score_clip(
        _path(clip, clip_dir), clip.expected.model_copy(update={"prompt": "x"}), QcRules()
    )
    statuses = {c.name: c.status for c in report.checks}
    assert statuses.pop("prompt_similarity") is CheckStatus.SKIPPED
    assert set(statuses.values()) == {CheckStatus.PASS}
    similarity = next(c for c in report.checks if c.name == "prompt_similarity")
    assert "no CLIP model" in similarity.reason
    assert report.qualified
    assert report.score < 1.0, "a skipped check must never count as a pass"


def test_every_result_carries_a_reason_and_scored_checks_carry_a_threshold(clip_dir: Path) -> None:
    clip = CLIPS["shaky"]
    for result in run_checks(_path(clip, clip_dir), clip.expected, QcRules()):
        assert result.reason
        if result.status is not CheckStatus.SKIPPED and result.name not in ("audio",):
            assert result.score is not None, result
            assert result.threshold is not None, result


def test_a_file_that_is_not_a_video_fails_the_decode_check_only(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(b"this is not an mp4" * 100)
    report = score_clip(path, CLIPS["good"].expected, QcRules())
    assert [(c.name, c.status) for c in report.checks] == [("decode", CheckStatus.FAIL)]
    assert report.disqualified_by == ("decode",)


def test_thresholds_come_from_the_rules(clip_dir: Path) -> None:
    clip = CLIPS["frozen"]
    lenient = QcRules(freeze_max_s=5.0)
    results = run_checks(_path(clip, clip_dir), clip.expected, lenient)
    frozen = next(r for r in results if r.name == "frozen_frames")
    assert frozen.status is CheckStatus.PASS
    assert frozen.threshold == 5.0
