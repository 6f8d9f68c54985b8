"""The pick rule and the prompt refinement rule (pure)."""

from __future__ import annotations

import pytest

from services.qc.logic import (
    BudgetExhausted,
    Candidate,
    CheckResult,
    CheckStatus,
    QcRules,
    pick,
    refine_prompt,
    refined_request,
    refinement_key,
    report,
)
from shared.jobs import JobRequest

RULES = QcRules()
ALL = (
    "duration",
    "resolution",
    "fps",
    "black_frames",
    "frozen_frames",
    "audio",
    "too_static",
    "too_shaky",
    "face_stability",
)


def _checks(failed: tuple[str, ...] = (), similarity: float | None = None) -> list[CheckResult]:
    results = [
        CheckResult(
            name=n, status=CheckStatus.FAIL if n in failed else CheckStatus.PASS, reason="r"
        )
        for n in ALL
    ]
    if similarity is None:
        results.append(
            CheckResult(name="prompt_similarity", status=CheckStatus.SKIPPED, reason="none")
        )
    else:
        results.append(
            CheckResult(
                name="prompt_similarity",
                status=CheckStatus.PASS,
                score=similarity,
                threshold=0.2,
                reason="r",
            )
        )
    return results


def _candidate(
    aid: str, n: int, failed: tuple[str, ...] = (), sim: float | None = None, rules: QcRules = RULES
) -> Candidate:
    return Candidate(attempt_id=aid, candidate=n, report=report(_checks(failed, sim), rules))


def test_a_skipped_check_keeps_its_weight_so_it_never_counts_as_a_pass() -> None:
    without_clip = report(_checks(), RULES)
    assert without_clip.score == pytest.approx(9 / 11, abs=1e-4)
    with_clip = report(_checks(similarity=0.30), RULES)
    assert with_clip.score == 1.0


def test_hard_failures_disqualify_and_soft_failures_only_lower_the_score() -> None:
    hard = report(_checks(failed=("black_frames",)), RULES)
    soft = report(_checks(failed=("too_shaky",)), RULES)
    assert hard.disqualified_by == ("black_frames",)
    assert not hard.qualified
    assert soft.qualified
    assert soft.soft_failures == ("too_shaky",)
    assert soft.score < report(_checks(), RULES).score


def test_picks_the_best_qualified_candidate_and_queues_the_others_for_review() -> None:
    decision = pick(
        [
            _candidate("a1", 0, failed=("frozen_frames",)),
            _candidate("a2", 1, failed=("too_static",)),
            _candidate("a3", 2),
        ],
        RULES,
    )
    assert decision.picked == "a3"
    assert decision.ranking == ("a3", "a2", "a1")
    assert set(decision.review) == {"a1", "a2"}
    assert decision.review["a1"].startswith("disqualified: failed frozen_frames")
    assert decision.review["a2"].startswith("not picked")


def test_ties_break_on_candidate_number_so_the_pick_is_deterministic() -> None:
    first = pick([_candidate("b", 1), _candidate("a", 0)], RULES)
    second = pick([_candidate("a", 0), _candidate("b", 1)], RULES)
    assert first.picked == second.picked == "a"


def test_a_pick_under_the_confidence_threshold_goes_to_review_too() -> None:
    decision = pick([_candidate("a1", 0, failed=("too_shaky", "face_stability"))], RULES)
    assert decision.picked == "a1"
    assert decision.confidence < RULES.review_below
    assert decision.review["a1"].startswith("low-confidence pick")


def test_a_confident_pick_is_not_reviewed() -> None:
    decision = pick([_candidate("a1", 0, sim=0.31)], RULES)
    assert decision.picked == "a1"
    assert decision.review == {}


def test_no_pick_when_every_candidate_is_disqualified() -> None:
    decision = pick(
        [_candidate("a1", 0, failed=("duration",)), _candidate("a2", 1, failed=("black_frames",))],
        RULES,
    )
    assert decision.picked is None
    assert decision.confidence == 0.0
    assert set(decision.review) == {"a1", "a2"}


def test_rules_are_configurable() -> None:
    rules = QcRules(hard_checks=frozenset({"too_shaky"}), review_below=0.5)
    decision = pick(
        [
            _candidate("a1", 0, failed=("too_shaky",), rules=rules),
            _candidate("a2", 1, failed=("black_frames",), rules=rules),
        ],
        rules,
    )
    assert decision.picked == "a2"
    assert decision.review == {"a1": "disqualified: failed too_shaky"}


def test_refined_prompt_appends_feedback_and_fix_hints_deterministically() -> None:
    refined = refine_prompt("A cat  surfing a wave", " the cat looks\nblurry. ", ("too_shaky",))
    assert refined == (
        "A cat surfing a wave Avoid: the cat looks blurry. Fix: a steady, stabilised camera."
    )
    assert refine_prompt("A cat", "", ()) == "A cat"


def test_refined_prompt_stays_within_the_request_limit_by_shortening_the_original() -> None:
    refined = refine_prompt("x" * 4000, "too dark", ("black_frames",))
    assert len(refined) <= 4000
    assert refined.endswith("Avoid: too dark. Fix: no black or blank frames.")


def test_refined_request_links_the_job_and_caps_the_budget() -> None:
    original = JobRequest(prompt="p", budget_usd=5.0, candidates=3, metadata={"shot": "12"})
    new = refined_request(original, prompt="p2", job_id="job_1", review_id="rev_1", spent_usd=2.0)
    assert new.prompt == "p2"
    assert new.budget_usd == 3.0
    assert new.candidates == 3
    assert new.metadata == {"shot": "12", "refines": "job_1", "review_id": "rev_1"}
    with pytest.raises(BudgetExhausted):
        refined_request(original, prompt="p2", job_id="job_1", review_id="rev_1", spent_usd=5.0)
    assert (
        refined_request(
            JobRequest(prompt="p"), prompt="q", job_id="j", review_id="r", spent_usd=9.0
        ).budget_usd
        is None
    )
    assert refinement_key("rev_job_1_a/2") == "refine-rev_job_1_a_2"
