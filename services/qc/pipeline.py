"""What the QC service does with a stored candidate, through ports only.

Every step is idempotent, so a redelivered `CandidateStored` is harmless:

1. score the candidate unless `attempts.<id>.qc` already holds a score, and write it there;
2. when the job is settled (`logic.settled`), pick (`logic.pick`) and move the job
   SCORING/STORING -> COMPLETED with `result` and `picked_attempt` (a conditional transition:
   a replay finds it done), or -> FAILED when no candidate qualifies;
3. add the review-queue entries (unique per job and attempt);
4. publish `JobCompleted` / `JobFailed` on `jobs-finished`, then mark the announcement in the
   first-ranked attempt's qc (`announced_at`), so a crash between steps republishes at most
   once more and consumers de-duplicate on the job id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from services.qc.adapters import downloaded
from services.qc.checks import score_clip
from services.qc.logic import (
    QC_FAILURE_PREFIX,
    Candidate,
    CandidateReport,
    Expectation,
    Pick,
    QcRules,
    failure_message,
    pick,
    report,
    scored_candidates,
    settled,
    undecodable,
)
from services.qc.reviews import Review, ReviewStore, review_id_for
from services.qc.similarity import PromptScorer
from shared.blobstore import BlobNotFound, BlobStore
from shared.events import CandidateStored, Envelope, JobCompleted, JobFailed, stable_event_id
from shared.jobs import Job, JobState, StoredVideo, now
from shared.messaging import PermanentError
from shared.metrics import ServiceMetrics
from shared.providers.base import Failure
from shared.providers.errors import FailureClass
from shared.repository import JobRepository
from shared.topics import Topic

log = logging.getLogger(__name__)
Publish = Callable[[Topic, Envelope], Awaitable[None]]
Scorer = Callable[[Path, Expectation, QcRules, PromptScorer | None], CandidateReport]
FINISHING = (JobState.SCORING, JobState.STORING)
STILL_RUNNING = (JobState.RUNNING, JobState.STORING, JobState.SCORING)


@dataclass
class QcPipeline:
    repo: JobRepository
    blobs: BlobStore
    reviews: ReviewStore
    publish: Publish
    rules: QcRules
    prompt_scorer: PromptScorer | None = None
    metrics: ServiceMetrics | None = None
    work_dir: Path | None = None
    score: Scorer = score_clip
    _cpu: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))

    async def on_candidate_stored(self, event: CandidateStored) -> None:
        job = await self.repo.get(event.job_id)
        if job is None or event.attempt_id not in job.attempts:
            raise PermanentError(f"no job {event.job_id} with attempt {event.attempt_id}")
        attempt = job.attempts[event.attempt_id]
        if not job.state.terminal and not (attempt.qc and "score" in attempt.qc):
            scored = await self._score(job, event.video)
            job = await self.repo.update(
                job.job_id,
                {f"attempts.{attempt.attempt_id}.qc": scored.model_dump(mode="json")},
                expected_states=STILL_RUNNING,
            ) or await self._reread(job.job_id)
        await self.finish(job)

    async def finish(self, job: Job, *, require_all_candidates: bool = True) -> None:
        """Pick, complete or fail, queue reviews and announce, if the job is settled."""
        if job.state.terminal:
            await self._announce_if_ours(job)
            return
        if not settled(job, require_all_candidates=require_all_candidates):
            return
        candidates = scored_candidates(job)
        decision = pick(candidates, self.rules)
        done = await self._close(job, decision, candidates)
        await self._queue_reviews(done, decision)
        await self._announce_if_ours(done)

    async def sweep_once(self, stale_s: float, batch: int) -> int:
        """Finish jobs that no event will finish: their last candidate failed (no
        `CandidateStored` follows) or the dispatcher made fewer candidates than asked."""
        cutoff = now() - timedelta(seconds=stale_s)
        finished = 0
        for job in await self.repo.find_stale(FINISHING, cutoff, limit=batch):
            if settled(job, require_all_candidates=False):
                await self.finish(job, require_all_candidates=False)
                finished += 1
        return finished

    async def _score(self, job: Job, video: StoredVideo) -> CandidateReport:
        expected = Expectation.from_request(job.request)
        async with self._cpu:
            try:
                async with downloaded(self.blobs, video.object_key, self.work_dir) as path:
                    result = await asyncio.to_thread(
                        self.score, path, expected, self.rules, self.prompt_scorer
                    )
            except BlobNotFound:
                result = report(
                    undecodable(f"stored object {video.object_key} is missing"), self.rules
                )
        if self.metrics:
            self.metrics.candidates_scored.labels(
                "qualified" if result.qualified else "disqualified"
            ).inc()
        log.info("scored %s: %.2f %s", job.job_id, result.score, result.failed() or "all passed")
        return result

    async def _close(self, job: Job, decision: Pick, candidates: list[Candidate]) -> Job:
        changes: dict[str, Any]
        provider = ""
        if decision.picked is not None:
            chosen = job.attempts[decision.picked]
            changes = {"result": chosen.video, "picked_attempt": chosen.attempt_id, "progress": 1.0}
            target, provider = JobState.COMPLETED, chosen.provider
        else:
            failure = Failure(
                failure_class=FailureClass.GENERATION_FAILED,
                message=failure_message(decision, candidates)[:1000],
            )
            changes, target = {"failure": failure}, JobState.FAILED
        # The outcome is stored with the close (outbox), and the marker that says so with it.
        marker = decision.picked or (decision.ranking[0] if decision.ranking else None)
        if marker is not None:
            changes[f"attempts.{marker}.qc.announced_at"] = now()

        def outcome(after: Job) -> list[tuple[Topic, Envelope]]:
            event = _outcome(after)
            return [(Topic.JOBS_FINISHED, event)] if event is not None else []

        moved = await self.repo.transition(
            job.job_id, target, changes, expected=FINISHING, announce=outcome
        )
        if moved is not None and self.metrics:
            self.metrics.job_transitions.labels(target.value, provider).inc()
        return moved or await self._reread(job.job_id)

    async def _queue_reviews(self, job: Job, decision: Pick) -> None:
        for attempt_id, reason in decision.review.items():
            attempt = job.attempts[attempt_id]
            if attempt.video is None or attempt.qc is None:
                continue
            await self.reviews.add(
                Review(
                    review_id=review_id_for(job.job_id, attempt_id),
                    job_id=job.job_id,
                    tenant_id=job.tenant_id,
                    attempt_id=attempt_id,
                    candidate=attempt.candidate,
                    provider=attempt.provider,
                    model=attempt.model,
                    picked=attempt_id == decision.picked,
                    reason=reason,
                    prompt=job.request.prompt,
                    video=attempt.video,
                    qc=attempt.qc,
                    created_at=now(),
                )
            )

    async def _announce_if_ours(self, job: Job) -> None:
        """Publish the outcome of a job QC closed, unless already announced."""
        event = _outcome(job)
        if event is None:
            return
        marker = job.picked_attempt or self._first_ranked(job)
        attempt = job.attempts.get(marker) if marker else None
        if attempt is None or (attempt.qc or {}).get("announced_at"):
            return
        await self.publish(Topic.JOBS_FINISHED, event)
        await self.repo.update(job.job_id, {f"attempts.{marker}.qc.announced_at": now()})

    def _first_ranked(self, job: Job) -> str | None:
        candidates = scored_candidates(job)
        return pick(candidates, self.rules).ranking[0] if candidates else None

    async def _reread(self, job_id: str) -> Job:
        job = await self.repo.get(job_id)
        if job is None:
            raise PermanentError(f"job {job_id} vanished")
        return job


def _outcome(job: Job) -> JobCompleted | JobFailed | None:
    common = {
        "subject": job.job_id,
        "tenant_id": job.tenant_id,
        "source": "qc",
        "traceparent": job.trace_parent,
        "metadata": dict(job.request.metadata),
    }
    if job.state is JobState.COMPLETED and job.picked_attempt and job.result is not None:
        attempt = job.attempts[job.picked_attempt]
        if not attempt.qc:
            return None
        return JobCompleted(
            id=stable_event_id(job.job_id, attempt.attempt_id, "reelforge.job.completed"),
            attempt_id=attempt.attempt_id,
            provider=attempt.provider,
            model=attempt.model,
            video=job.result,
            cost_usd=job.spent_usd,
            **common,
        )
    if (
        job.state is JobState.FAILED
        and job.failure
        and job.failure.message.startswith(QC_FAILURE_PREFIX)
    ):
        failed_id = stable_event_id(job.job_id, None, "reelforge.job.failed")
        return JobFailed(id=failed_id, failure=job.failure, cost_usd=job.spent_usd, **common)
    return None
