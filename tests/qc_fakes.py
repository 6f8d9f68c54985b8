"""In-memory fakes for the QC service's own port (`ReviewStore`) and its publisher, plus a
helper that builds a multi-candidate job whose candidates are real clips in a blob store.
(Candidates for `tests/fakes.py` once the lead merges them.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from services.qc.checks import score_clip
from services.qc.logic import CandidateReport, Expectation, QcRules
from services.qc.reviews import Refinement, Review, ReviewStatus, decided_changes
from services.qc.similarity import PromptScorer
from shared.blobstore import BlobStore
from shared.events import Envelope
from shared.jobs import Attempt, AttemptState, Job, JobRequest, JobState, StoredVideo
from shared.topics import Topic


class FakeReviewStore:
    def __init__(self) -> None:
        self.docs: dict[str, Review] = {}

    async def ensure_indexes(self) -> None:
        return None

    async def add(self, review: Review) -> bool:
        if any(
            (r.job_id, r.attempt_id) == (review.job_id, review.attempt_id)
            for r in self.docs.values()
        ):
            return False
        self.docs[review.review_id] = review
        return True

    async def get(self, review_id: str, tenant_id: str) -> Review | None:
        review = self.docs.get(review_id)
        return review if review and review.tenant_id == tenant_id else None

    async def find(
        self, tenant_id: str, status: ReviewStatus | None = None, limit: int = 100
    ) -> list[Review]:
        found = [
            r
            for r in self.docs.values()
            if r.tenant_id == tenant_id and (status is None or r.status is status)
        ]
        return sorted(found, key=lambda r: (-r.created_at.timestamp(), r.review_id))[:limit]

    async def list_for_job(self, job_id: str, tenant_id: str) -> list[Review]:
        return sorted(
            (r for r in self.docs.values() if r.job_id == job_id and r.tenant_id == tenant_id),
            key=lambda r: r.candidate,
        )

    async def decide(
        self, review_id: str, tenant_id: str, status: ReviewStatus, feedback: str | None
    ) -> Review | None:
        review = await self.get(review_id, tenant_id)
        if review is None or review.status is not ReviewStatus.PENDING:
            return None
        self.docs[review_id] = review.model_copy(
            update=decided_changes(status, feedback) | {"status": status}
        )
        return self.docs[review_id]

    async def set_refinement(self, review_id: str, refinement: Refinement) -> Review | None:
        review = self.docs.get(review_id)
        if review is None or review.refinement is not None:
            return None
        self.docs[review_id] = review.model_copy(update={"refinement": refinement})
        return self.docs[review_id]


@dataclass
class RecordingPublisher:
    sent: list[tuple[Topic, Envelope]] = field(default_factory=list)

    async def __call__(self, topic: Topic, event: Envelope) -> None:
        self.sent.append((topic, event))

    def record(self, topic: str, event: Envelope) -> None:
        """A sink for `FakeJobRepository.relay_to`: what the outbox relay would publish."""
        self.sent.append((Topic(topic), event))

    def on(self, topic: Topic) -> list[Envelope]:
        return [e for t, e in self.sent if t is topic]


async def job_with_candidates(
    blobs: BlobStore,
    job_id: str,
    clips: list[Path | None],
    *,
    tenant_id: str = "demo",
    request: JobRequest | None = None,
    state: JobState = JobState.SCORING,
) -> Job:
    """A job with one attempt per clip: stored in `blobs` (None: the attempt failed)."""
    request = request or JobRequest(
        prompt="a slow pan over a textured landscape",
        duration_s=2,
        candidates=len(clips),
        budget_usd=10.0,
    )
    attempts = {}
    for n, clip in enumerate(clips):
        aid = f"att{n}"
        if clip is None:
            attempts[aid] = Attempt(
                attempt_id=aid,
                candidate=n,
                provider="openai",
                model="sora-2",
                state=AttemptState.FAILED,
                cost_usd=0.4,
            )
            continue
        key = f"videos/{job_id}/{aid}.mp4"
        put = await blobs.put_bytes(key, clip.read_bytes(), "video/mp4")
        video = StoredVideo(
            bucket=blobs.bucket, object_key=key, sha256=put.sha256, size_bytes=put.size
        )
        attempts[aid] = Attempt(
            attempt_id=aid,
            candidate=n,
            provider="openai",
            model="sora-2",
            state=AttemptState.STORED,
            video=video,
            cost_usd=0.4,
        )
    return Job(
        job_id=job_id,
        tenant_id=tenant_id,
        request=request,
        state=state,
        attempts=attempts,
        spent_usd=0.4 * len(clips),
    )


def small_clip_scorer(
    path: Path, expected: Expectation, rules: QcRules, scorer: PromptScorer | None
) -> CandidateReport:
    """The labelled clips are 320x180: judge their size against that, everything else as asked."""
    return score_clip(path, expected.model_copy(update={"short_side": 180}), rules, scorer)
