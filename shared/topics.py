"""The one registry of Kafka topics: names, partitions, who produces, who consumes, DLQs.

Code, `deploy/create_topics.py`, docker-compose and the README topic map all read this
registry, so a topic is declared exactly once. Every message is keyed by job id, so all
events of one job land on one partition, in order, and are owned by one replica of each
consumer group.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

PROVIDERS: tuple[str, ...] = ("openai", "gemini", "vertex", "runway", "kling", "fal", "replicate")


class Topic(StrEnum):
    JOB_REQUESTS = "job-requests"
    JOBS_ACCEPTED = "jobs-accepted"
    TASKS_OPENAI = "provider-tasks-openai"
    TASKS_GEMINI = "provider-tasks-gemini"
    TASKS_VERTEX = "provider-tasks-vertex"
    TASKS_RUNWAY = "provider-tasks-runway"
    TASKS_KLING = "provider-tasks-kling"
    TASKS_FAL = "provider-tasks-fal"
    TASKS_REPLICATE = "provider-tasks-replicate"
    TASKS_SUCCEEDED = "tasks-succeeded"
    TASKS_FAILED = "tasks-failed"
    CANDIDATES_STORED = "candidates-stored"
    JOBS_FINISHED = "jobs-finished"
    JOB_UPDATES = "job-updates"


def provider_topic(provider: str) -> Topic:
    """The topic that carries submitted tasks (and webhook hints) for one provider's poller."""
    return Topic(f"provider-tasks-{provider}")


@dataclass(frozen=True)
class TopicSpec:
    topic: Topic
    partitions: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    description: str
    public: bool = False
    has_dlq: bool = True

    @property
    def dlq(self) -> str | None:
        return f"{self.topic.value}-dlq" if self.has_dlq else None


def _provider_spec(provider: str) -> TopicSpec:
    return TopicSpec(
        provider_topic(provider),
        6,
        ("dispatcher", "intake"),
        (f"poller-{provider}",),
        f"TaskSubmitted records for {provider} tasks, plus TaskHinted webhook hints; the poller "
        "replica that owns a partition tracks its tasks.",
    )


TOPICS: dict[Topic, TopicSpec] = {
    spec.topic: spec
    for spec in (
        TopicSpec(
            Topic.JOB_REQUESTS,
            6,
            ("external",),
            ("intake",),
            "Public input: RequestJob commands that other services publish instead of calling HTTP.",
            public=True,
        ),
        TopicSpec(
            Topic.JOBS_ACCEPTED,
            6,
            ("intake", "reconciler"),
            ("dispatcher",),
            "JobAccepted: a validated, quoted and recorded job waiting to be routed and submitted.",
        ),
        *(_provider_spec(p) for p in PROVIDERS),
        TopicSpec(
            Topic.TASKS_SUCCEEDED,
            6,
            tuple(f"poller-{p}" for p in PROVIDERS),
            ("storage", "dispatcher-slots"),
            "TaskSucceeded: a provider finished a render; storage re-hosts it before its URL expires (the dispatcher only counts the freed slot).",
        ),
        TopicSpec(
            Topic.TASKS_FAILED,
            6,
            (*(f"poller-{p}" for p in PROVIDERS), "storage"),
            ("dispatcher",),
            "TaskFailed: a provider task failed; the dispatcher retries, falls back or fails the job.",
        ),
        TopicSpec(
            Topic.CANDIDATES_STORED,
            6,
            ("storage",),
            ("qc",),
            "CandidateStored: one stored candidate of a multi-candidate job, ready for scoring.",
        ),
        TopicSpec(
            Topic.JOBS_FINISHED,
            6,
            ("storage", "dispatcher", "intake", "qc", "reconciler"),
            ("notifier", "external"),
            "Public output: JobCompleted, JobFailed and JobCancelled, one per job, keyed by job id.",
            public=True,
        ),
        TopicSpec(
            Topic.JOB_UPDATES,
            6,
            ("dispatcher", *(f"poller-{p}" for p in PROVIDERS), "storage", "notifier"),
            ("intake",),
            "JobUpdated: progress and state changes for live streams (SSE); ephemeral, no DLQ.",
            public=True,
            has_dlq=False,
        ),
    )
}
