"""Score one clip file: every check of `services/qc/README.md`, in one decoding pass.

`score_clip` is blocking and CPU-bound (about a second for a 5 s 720p clip on two cores);
the service runs it in a worker thread, one candidate at a time.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from services.qc.analysis import UndecodableVideo, measure
from services.qc.logic import (
    CandidateReport,
    CheckResult,
    Expectation,
    QcRules,
    evaluate,
    report,
    undecodable,
)
from services.qc.similarity import NO_MODEL, PromptScorer
from services.qc.verdicts import check_similarity

log = logging.getLogger(__name__)


def run_checks(
    path: Path, expected: Expectation, rules: QcRules, scorer: PromptScorer | None = None
) -> list[CheckResult]:
    """The check results of one clip (a clip that cannot be decoded fails `decode` only)."""
    try:
        analysis = measure(path)
    except UndecodableVideo as exc:
        return undecodable(str(exc))
    results = evaluate(analysis.measurements, expected, rules)
    results.append(_similarity(scorer, analysis.samples, expected.prompt, rules))
    return results


def score_clip(
    path: Path, expected: Expectation, rules: QcRules, scorer: PromptScorer | None = None
) -> CandidateReport:
    started = time.perf_counter()
    results = run_checks(path, expected, rules, scorer)
    return report(results, rules, time.perf_counter() - started)


def _similarity(
    scorer: PromptScorer | None, samples: list[NDArray[np.uint8]], prompt: str, rules: QcRules
) -> CheckResult:
    if scorer is None:
        return check_similarity(None, NO_MODEL, rules)
    if not prompt.strip():
        return check_similarity(None, "no prompt to compare with", rules)
    if not samples:
        return check_similarity(None, "no frame sampled", rules)
    return check_similarity(scorer.similarity(samples, prompt), "", rules)
