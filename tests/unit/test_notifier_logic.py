"""Pure notifier decisions: response verdicts, the retry schedule, URL rules."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from services.notifier import logic
from services.notifier.logic import Verdict
from services.notifier.settings import DEFAULT_SCHEDULE_S
from shared.events import JobCancelled
from shared.jobs import JobState

AT = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_any_2xx_is_delivered(status: int) -> None:
    assert logic.decide(status, None, 1, (5,), AT).verdict is Verdict.DELIVERED


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, None), (302, None), (404, None), (429, None), (None, "ConnectTimeout: ...")],
)
def test_other_answers_and_no_answer_are_retried_on_the_schedule(
    status: int | None, error: str | None
) -> None:
    decision = logic.decide(status, error, 1, (5, 30), AT, jitter=0)
    assert decision.verdict is Verdict.RETRY
    assert decision.next_attempt_at == AT + timedelta(seconds=5)


def test_gone_stops_at_once() -> None:
    decision = logic.decide(410, None, 1, DEFAULT_SCHEDULE_S, AT)
    assert decision.verdict is Verdict.DEAD
    assert "410" in decision.reason


def test_exhausted_schedule_is_dead_with_the_last_answer_as_reason() -> None:
    decision = logic.decide(503, None, 3, (1, 2), AT)
    assert decision.verdict is Verdict.DEAD
    assert "3 attempts" in decision.reason
    assert "HTTP 503" in decision.reason


def test_default_schedule_spans_about_two_days_and_a_third_in_twelve_attempts() -> None:
    total = sum(DEFAULT_SCHEDULE_S)
    assert 2.3 * 86400 < total < 2.4 * 86400  # 55.7 h (the brief said ~2.7 days; it sums to 2.3)
    assert len(DEFAULT_SCHEDULE_S) + 1 == 12


def test_jitter_stays_within_its_fraction() -> None:
    rand = random.Random(7)
    delays = [logic.retry_delay(2, (5, 100), 0.2, rand) for _ in range(200)]
    assert all(d is not None and 80 <= d <= 120 for d in delays)
    assert len({round(d or 0, 3) for d in delays}) > 50


def test_an_egress_refusal_is_dead_at_once_with_its_reason() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    decision = logic.decide(None, None, 1, (5, 30), at, refused="10.0.0.1 is private")
    assert decision.verdict is Verdict.DEAD
    assert decision.reason == "egress refused: 10.0.0.1 is private"


def test_delivery_id_is_per_job_and_outcome() -> None:
    assert logic.delivery_id("job_1", "reelforge.job.failed") == "job_1:reelforge.job.failed"


def test_update_for_a_cancelled_job_is_terminal() -> None:
    event = JobCancelled(subject="job_1", tenant_id="t")
    update = logic.job_updated(event)
    assert update.state is JobState.CANCELLED
    assert update.subject == "job_1"
