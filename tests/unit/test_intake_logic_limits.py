"""The pure parts of intake's limits: the sliding-minute tenant rate and the hint gate."""

from __future__ import annotations

from services.intake.logic import HintGate, TenantRate


def test_a_tenant_rate_admits_up_to_the_limit_then_names_the_wait() -> None:
    rate = TenantRate()
    assert [rate.admit("t", 3, 60.0 + i) for i in range(3)] == [0, 0, 0]
    assert rate.admit("t", 3, 70.0) == 50  # the window's own count: wait for the next minute
    assert rate.admit("other", 3, 70.0) == 0


def test_the_previous_minute_counts_while_it_still_overlaps() -> None:
    rate = TenantRate()
    for _ in range(4):
        assert rate.admit("t", 4, 119.0) == 0
    # At 120 s the 4 requests of the previous minute still weigh fully (4 >= 4): a moment
    # later they weigh a little less and one more fits.
    assert rate.admit("t", 4, 120.0) == 1
    assert rate.admit("t", 4, 121.0) == 0
    # Now 1 in this minute: the previous one must weigh under 3, i.e. a quarter of it (15 s)
    # must have slid out; the answer is the first whole second after that.
    wait = rate.admit("t", 4, 121.0)
    assert wait == 15
    assert rate.admit("t", 4, 121.0 + wait - 1) > 0
    assert rate.admit("t", 4, 121.0 + wait) == 0


def test_a_rate_of_zero_is_no_limit() -> None:
    rate = TenantRate()
    assert all(rate.admit("t", 0, 1.0) == 0 for _ in range(1000))


def test_a_gap_of_more_than_a_minute_forgets_the_past() -> None:
    rate = TenantRate()
    for _ in range(2):
        rate.admit("t", 2, 10.0)
    assert rate.admit("t", 2, 200.0) == 0


def test_the_hint_gate_passes_one_hint_per_task_per_window() -> None:
    gate = HintGate(window_s=3.0)
    assert gate.admit("kling", "a", 100.0)
    assert not gate.admit("kling", "a", 102.9)
    assert gate.admit("kling", "b", 102.9)
    assert gate.admit("runway", "a", 102.9)
    assert gate.admit("kling", "a", 103.0)


def test_the_hint_gate_stays_bounded_under_a_flood_of_task_ids() -> None:
    gate = HintGate(window_s=3.0, max_entries=100)
    admitted = sum(gate.admit("kling", f"t{i}", 100.0) for i in range(1000))
    assert admitted == 100  # a flood inside one window is refused, not remembered
    assert gate.admit("kling", "late", 104.0)  # old entries are dropped once they expire
