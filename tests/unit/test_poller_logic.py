from __future__ import annotations

import secrets

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from services.poller.logic import (
    RenderTimes,
    Schedule,
    ScheduleConfig,
    murmur2,
    next_delay,
    partition_of,
    remaining_estimate,
)

CFG = ScheduleConfig(min_interval_s=1.0, max_interval_s=60.0)


def test_first_poll_comes_after_a_share_of_the_expected_render_time() -> None:
    assert (
        next_delay(elapsed=0, expected=60, progress=None, polls=0, provider_hint=None, cfg=CFG)
        == 18
    )


def test_progress_gives_the_remaining_time_and_the_poll_lands_just_after_it() -> None:
    # 40% after 20 s: 30 s remain; sleep most of it, then land just after the finish
    assert remaining_estimate(20, 60, 0.4) == pytest.approx(30)
    far = next_delay(elapsed=20, expected=60, progress=0.4, polls=1, provider_hint=None, cfg=CFG)
    assert far == pytest.approx(25.5)
    near = next_delay(elapsed=48, expected=60, progress=0.97, polls=3, provider_hint=None, cfg=CFG)
    assert 1.0 <= near <= 2.0


def test_overdue_tasks_back_off_gently_and_never_past_the_cap() -> None:
    assert (
        next_delay(elapsed=70, expected=60, progress=None, polls=4, provider_hint=None, cfg=CFG)
        == 2.5
    )
    assert (
        next_delay(elapsed=900, expected=60, progress=None, polls=9, provider_hint=None, cfg=CFG)
        == 60
    )


def test_the_providers_poll_hint_is_a_floor_except_for_the_landing_poll() -> None:
    # 10 s remain: the approach would poll after 8.5 s, the hint asks for 9
    far = next_delay(elapsed=50, expected=60, progress=None, polls=2, provider_hint=9, cfg=CFG)
    assert far == 9
    landing = next_delay(elapsed=57, expected=60, progress=None, polls=3, provider_hint=5, cfg=CFG)
    assert landing == pytest.approx(2.55)
    late = next_delay(elapsed=70, expected=60, progress=None, polls=4, provider_hint=5, cfg=CFG)
    assert late == 5


def test_fewer_polls_than_a_fixed_five_second_loop_for_a_minute_long_render() -> None:
    render, elapsed, polls = 60.0, 0.0, 0
    while True:
        progress = min(elapsed / render, 1.0) if elapsed > 0 else None
        if elapsed >= render:
            break
        elapsed += next_delay(
            elapsed=elapsed,
            expected=50,
            progress=progress,
            polls=polls,
            provider_hint=None,
            cfg=CFG,
        )
        polls += 1
    detection = elapsed - render
    assert polls <= 12 / 3  # the fixed 5 s loop makes 12 calls for this render
    assert detection <= 2.5  # and detects, on average, 2.5 s late


def test_learned_render_time_replaces_the_prior() -> None:
    times = RenderTimes(weight=0.5)
    assert times.expected("m", 90) == 90
    times.observe("m", 10)
    times.observe("m", 20)
    assert times.expected("m", 90) == 15


def test_schedule_pops_due_tasks_in_order_and_honours_reschedules_and_removals() -> None:
    s = Schedule()
    s.set(("a", "1"), 5)
    s.set(("b", "1"), 1)
    s.set(("c", "1"), 3)
    s.set(("a", "1"), 2)  # rescheduled earlier
    s.discard(("c", "1"))
    assert s.pop_due(4, limit=10) == [("b", "1"), ("a", "1")]
    assert len(s) == 0
    assert s.next_due() is None


def test_murmur2_and_partitioning_match_kafkas_default_partitioner() -> None:
    for _ in range(500):
        data = secrets.token_bytes(secrets.randbelow(40))
        assert murmur2(data) == aiokafka_murmur2(data) & 0xFFFFFFFF
    assert 0 <= partition_of("job_abc", 6) < 6
