"""Quality control rules, pure: measured numbers in, typed check results and a pick out.

No I/O here (a unit test walks the imports): decoding and OpenCV live in `analysis.py`, the
CLIP model in `similarity.py`. The per-check rules are in `verdicts.py`; this module combines
them into a candidate score, picks the best candidate and refines prompts. Every rule, with
its score and threshold, is documented in `services/qc/README.md`; the numbers come from
`QcRules`, which the settings can override.
"""

from __future__ import annotations

import re

from pydantic import Field

from services.qc.model import (
    CHECK_ORDER,
    CheckResult,
    CheckStatus,
    Expectation,
    Measurements,
    QcRules,
    _Frozen,
)
from services.qc.verdicts import evaluate, skipped, undecodable
from shared.jobs import AttemptState, Job, JobRequest

__all__ = [
    "CHECK_ORDER",
    "BudgetExhausted",
    "Candidate",
    "CandidateReport",
    "CheckResult",
    "CheckStatus",
    "Expectation",
    "Measurements",
    "Pick",
    "QcRules",
    "evaluate",
    "pick",
    "refine_prompt",
    "refined_request",
    "refinement_key",
    "report",
    "scored_candidates",
    "settled",
    "skipped",
    "undecodable",
]
QC_FAILURE_PREFIX = "quality control rejected every candidate"
_UNSETTLED = frozenset(
    {AttemptState.PENDING, AttemptState.SUBMITTED, AttemptState.RUNNING, AttemptState.SUCCEEDED}
)


class CandidateReport(_Frozen):
    """The QC verdict of one candidate, stored at `attempts.<id>.qc`."""

    checks: tuple[CheckResult, ...]
    score: float = Field(description="Weighted share of passed checks, 0..1 (see README).")
    disqualified_by: tuple[str, ...] = ()
    soft_failures: tuple[str, ...] = ()
    elapsed_s: float = 0.0

    @property
    def qualified(self) -> bool:
        return not self.disqualified_by

    def failed(self) -> tuple[str, ...]:
        return (*self.disqualified_by, *self.soft_failures)


def check_quality(result: CheckResult, rules: QcRules) -> float:
    """How much one check adds to the score: 1 for a pass, 0 for a fail or a skip; prompt
    similarity adds its similarity relative to `similarity_good` (capped at 1)."""
    if result.status is not CheckStatus.PASS:
        return 0.0
    if result.name == "prompt_similarity" and result.score is not None:
        return max(0.0, min(1.0, result.score / rules.similarity_good))
    return 1.0


def report(checks: list[CheckResult], rules: QcRules, elapsed_s: float = 0.0) -> CandidateReport:
    """Combine check results: skipped checks keep their weight in the denominator, so a check
    that did not run can never raise a candidate's score."""
    ordered = sorted(
        checks, key=lambda c: CHECK_ORDER.index(c.name) if c.name in CHECK_ORDER else 99
    )
    total = sum(rules.weight(c.name) for c in ordered)
    earned = sum(rules.weight(c.name) * check_quality(c, rules) for c in ordered)
    failed = [c.name for c in ordered if c.status is CheckStatus.FAIL]
    return CandidateReport(
        checks=tuple(ordered),
        score=round(earned / total, 4) if total else 0.0,
        disqualified_by=tuple(n for n in failed if n in rules.hard_checks),
        soft_failures=tuple(n for n in failed if n not in rules.hard_checks),
        elapsed_s=round(elapsed_s, 3),
    )


class Candidate(_Frozen):
    attempt_id: str
    candidate: int
    report: CandidateReport


class Pick(_Frozen):
    """The decision for one job: the pick (None when no candidate qualifies), its confidence
    and, for every candidate that goes to human review, why."""

    picked: str | None
    confidence: float
    ranking: tuple[str, ...]
    review: dict[str, str]


def _rank_key(c: Candidate) -> tuple[bool, float, int, int, str]:
    r = c.report
    return (not r.qualified, -r.score, len(r.soft_failures), c.candidate, c.attempt_id)


def pick(candidates: list[Candidate], rules: QcRules) -> Pick:
    """Disqualify candidates failing a hard check; rank the rest by score, then fewer soft
    failures, then candidate number (deterministic); pick the first. Every other candidate
    goes to review, and so does the pick when its score is under `review_below`."""
    ranked = sorted(candidates, key=_rank_key)
    best = ranked[0] if ranked and ranked[0].report.qualified else None
    review: dict[str, str] = {}
    for c in ranked:
        r = c.report
        if c is best:
            if r.score < rules.review_below:
                review[c.attempt_id] = (
                    f"low-confidence pick: score {r.score:.2f} under {rules.review_below:.2f}"
                )
        elif not r.qualified:
            review[c.attempt_id] = "disqualified: failed " + ", ".join(r.disqualified_by)
        else:
            top = f" (the pick scored {best.report.score:.2f})" if best else ""
            review[c.attempt_id] = f"not picked: score {r.score:.2f}{top}"
    return Pick(
        picked=best.attempt_id if best else None,
        confidence=best.report.score if best else 0.0,
        ranking=tuple(c.attempt_id for c in ranked),
        review=review,
    )


FIX_HINTS = {
    "duration": "keep the requested length",
    "resolution": "render at the requested resolution and aspect ratio",
    "fps": "keep the requested frame rate",
    "black_frames": "no black or blank frames",
    "frozen_frames": "continuous motion with no frozen frames",
    "audio": "include the soundtrack",
    "too_static": "clear, continuous motion in the scene",
    "too_shaky": "a steady, stabilised camera",
    "face_stability": "keep every face consistently visible",
    "prompt_similarity": "follow the prompt closely",
}
MAX_FEEDBACK = 500
MAX_PROMPT = 4000


def refine_prompt(prompt: str, feedback: str, failed_checks: tuple[str, ...] = ()) -> str:
    """The deterministic refinement rule (no LLM): the original prompt, then
    "Avoid: <feedback>." with whitespace collapsed, then "Fix: <hints>." for the candidate's
    failed checks in check order. The original prompt is shortened, never the feedback, when
    the result would pass the request limit."""
    words = " ".join(feedback.split())[:MAX_FEEDBACK].rstrip(" .")
    tail = []
    if words:
        tail.append(f"Avoid: {words}.")
    hints = [FIX_HINTS[n] for n in CHECK_ORDER if n in failed_checks and n in FIX_HINTS]
    if hints:
        tail.append("Fix: " + "; ".join(hints) + ".")
    suffix = " ".join(tail)
    room = MAX_PROMPT - len(suffix) - 1
    base = " ".join(prompt.split())[: max(0, room)]
    return f"{base} {suffix}".strip() if suffix else base


class BudgetExhausted(ValueError):
    pass


def refined_request(
    request: JobRequest,
    *,
    prompt: str,
    job_id: str,
    review_id: str,
    spent_usd: float,
    reserved_usd: float = 0.0,
) -> JobRequest:
    """The request of the new attempt: the original with the refined prompt, linked through
    metadata, and capped at what is left of the original budget: what the job spent and what
    earlier refinements were granted (`reserved_usd`) are gone. The caller reserves the
    grant on the original job before asking, so all refinements together stay in the cap."""
    budget = request.budget_usd
    if budget is not None:
        budget = round(budget - spent_usd - reserved_usd, 6)
        if budget <= 0:
            raise BudgetExhausted(
                f"the job spent ${spent_usd:.2f} and earlier refinements hold"
                f" ${reserved_usd:.2f} of its ${request.budget_usd:.2f}"
            )
    data = request.model_dump(mode="json")
    data.update(
        prompt=prompt,
        budget_usd=budget,
        metadata={**request.metadata, "refines": job_id, "review_id": review_id},
    )
    return JobRequest.model_validate(data)


_KEY = re.compile(r"[^A-Za-z0-9_.:-]")


def refinement_key(review_id: str) -> str:
    """Idempotency key of the refinement request: one new attempt per rejected review."""
    return "refine-" + _KEY.sub("_", review_id)


def scored_candidates(job: Job) -> list[Candidate]:
    return [
        Candidate(
            attempt_id=a.attempt_id,
            candidate=a.candidate,
            report=CandidateReport.model_validate(
                {k: v for k, v in a.qc.items() if k in CandidateReport.model_fields}
            ),
        )
        for a in job.attempts.values()
        if a.state is AttemptState.STORED and a.video is not None and a.qc and "score" in a.qc
    ]


def settled(job: Job, *, require_all_candidates: bool = True) -> bool:
    """Can the job be picked now? Every attempt is terminal (stored, failed or cancelled; a
    succeeded attempt is still being stored), every stored one is scored, at least one is,
    and (unless `require_all_candidates` is off, as in the sweep) an attempt exists for each
    candidate the request asked for."""
    attempts = list(job.attempts.values())
    if any(a.state in _UNSETTLED for a in attempts):
        return False
    stored = [a for a in attempts if a.state is AttemptState.STORED]
    if not stored or any(not a.qc or "score" not in a.qc for a in stored):
        return False
    seen = {a.candidate for a in attempts}
    return not require_all_candidates or len(seen) >= job.request.candidates


def failure_message(decision: Pick, candidates: list[Candidate]) -> str:
    why = {c.attempt_id: ", ".join(c.report.disqualified_by) for c in candidates}
    parts = [f"{aid} ({why[aid]})" for aid in decision.ranking]
    return f"{QC_FAILURE_PREFIX}: " + "; ".join(parts)
