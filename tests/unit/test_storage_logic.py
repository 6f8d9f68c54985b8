"""Pure storage decisions: keys, plans, event ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.storage import logic
from services.storage.logic import Plan
from shared.jobs import AttemptState, JobState, StoredVideo
from tests.unit.test_storage_fakes import make_job


def test_object_keys_are_deterministic_and_parse_back() -> None:
    keys = logic.object_keys("tenant-a", "job_1", "a1")
    assert keys == logic.object_keys("tenant-a", "job_1", "a1")
    assert keys.video == "videos/tenant-a/job_1/a1.mp4"
    assert keys.thumbnail == "videos/tenant-a/job_1/a1.jpg"
    assert logic.parse_object_key(keys.video) == logic.KeyRef("tenant-a", "job_1", "a1", True)
    assert logic.parse_object_key(keys.thumbnail) == logic.KeyRef("tenant-a", "job_1", "a1", False)


@pytest.mark.parametrize(
    "key",
    [
        "other/t/j/a.mp4",
        "videos/t/j.mp4",
        "videos/t/j/a.txt",
        "videos//j/a.mp4",
        "videos/t/j/a/b.mp4",
        "videos/t/j/.mp4",
    ],
)
def test_keys_this_service_did_not_write_do_not_parse(key: str) -> None:
    assert logic.parse_object_key(key) is None


@pytest.mark.parametrize(
    ("job_state", "attempt_state", "plan"),
    [
        (JobState.RUNNING, AttemptState.SUBMITTED, Plan.STORE),
        (JobState.STORING, AttemptState.SUCCEEDED, Plan.STORE),
        (JobState.SCORING, AttemptState.RUNNING, Plan.STORE),
        (JobState.CANCELLED, AttemptState.RUNNING, Plan.DISCARD),
        (JobState.FAILED, AttemptState.SUBMITTED, Plan.DISCARD),
        (JobState.COMPLETED, AttemptState.SUBMITTED, Plan.DISCARD),
        (JobState.QUEUED, AttemptState.SUBMITTED, Plan.WAIT),
        (JobState.SUBMITTING, AttemptState.SUBMITTED, Plan.STORE),
    ],
)
def test_plan_follows_job_and_attempt_state(
    job_state: JobState, attempt_state: AttemptState, plan: Plan
) -> None:
    job = make_job(state=job_state, attempt_state=attempt_state)
    assert logic.plan_for(job, job.attempts["a1"]) is plan


def test_an_attempt_already_stored_is_replayed_whatever_the_job_state() -> None:
    video = StoredVideo(bucket="b", object_key="k", sha256="0" * 64, size_bytes=1)
    for state in (JobState.STORING, JobState.COMPLETED, JobState.CANCELLED):
        job = make_job(state=state)
        attempt = job.attempts["a1"].model_copy(
            update={"state": AttemptState.STORED, "video": video}
        )
        assert logic.plan_for(job, attempt) is Plan.REPLAY


def test_completion_event_is_stable_across_replays_and_carries_the_job_metadata() -> None:
    job = make_job()
    video = StoredVideo(bucket="b", object_key="k", sha256="0" * 64, size_bytes=1)
    first = logic.job_completed(job, job.attempts["a1"], video)
    again = logic.job_completed(job, job.attempts["a1"], video)
    assert first.id == again.id
    assert first.metadata == {"order": "42"}
    assert first.cost_usd == 0.8
    assert first.subject == job.job_id


def test_cost_falls_back_to_the_job_spend_when_the_attempt_has_none() -> None:
    job = make_job()
    free = job.attempts["a1"].model_copy(update={"cost_usd": 0.0})
    assert logic.cost_of(job, free) == job.spent_usd


def test_expiry_margin() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert logic.expiry_margin_s(at + timedelta(minutes=5), at) == 300
    assert logic.expiry_margin_s(None, at) is None


def test_only_single_candidate_jobs_complete_in_storage() -> None:
    assert logic.completes_job(make_job(candidates=1))
    assert not logic.completes_job(make_job(candidates=3))
