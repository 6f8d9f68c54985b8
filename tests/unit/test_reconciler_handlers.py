"""The reconciler's sweep on the fakes: what it writes to the job record, what it announces
through the outbox and publishes on the (recording) broker, and what it asks the provider."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.dispatcher.handlers import DispatcherDeps, admit
from services.dispatcher.settings import DispatcherSettings
from services.reconciler.handlers import ReconcilerDeps, sweep
from services.reconciler.settings import ReconcilerSettings
from shared.events import JobFailed, TaskSubmitted
from shared.jobs import Attempt, AttemptState, Job, JobRequest, JobState, ModelChoice, now
from shared.metrics import ServiceMetrics
from shared.providers.base import TaskRef
from shared.providers.catalog import find_model
from shared.routing import price
from shared.topics import Topic, provider_topic
from tests.fakes import CrashAfterCreate, FakeJobRepository, FakeVideoProvider

KLING = ModelChoice(provider="kling", model="kling-v2-6")
RUNWAY = ModelChoice(provider="runway", model="gen4.5")


class RecordingBroker:
    """The Kafka edge: what the reconciler published directly (not through the outbox)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, body: bytes, topic: str, **_: Any) -> None:
        self.sent.append((topic, json.loads(body)))


class Later:
    """The reconciler's clock, ahead of the records' real `updated_at` by more than a grace."""

    def __init__(self, ahead: timedelta = timedelta(minutes=10)) -> None:
        self.ahead = ahead

    def __call__(self) -> Any:
        return now() + self.ahead


def make_deps(
    repo: FakeJobRepository, *providers: FakeVideoProvider
) -> tuple[ReconcilerDeps, RecordingBroker, CollectorRegistry]:
    registry = CollectorRegistry()
    broker = RecordingBroker()
    deps = ReconcilerDeps(
        settings=ReconcilerSettings(),
        repo=repo,
        broker=broker,  # type: ignore[arg-type]
        metrics=ServiceMetrics(registry, "reconciler"),
        clock=Later(),
        providers={p.name: p for p in providers},
    )
    return deps, broker, registry


def cost(choice: ModelChoice) -> float:
    spec = find_model(choice.provider, choice.model or "")
    assert spec is not None
    return price(JobRequest(prompt="x", duration_s=5), spec)


def job_in(state: JobState, choice: ModelChoice, *attempts: Attempt, **extra: Any) -> Job:
    fields: dict[str, Any] = {
        "deadline_at": now() + timedelta(days=1),
        "active_provider": choice.provider,
        **extra,
    }
    return Job(
        job_id=f"job_{state.value}_{choice.provider}",
        tenant_id="t",
        request=JobRequest(prompt="a kite", duration_s=5),
        state=state,
        route=(choice,),
        attempts={a.attempt_id: a for a in attempts},
        **fields,
    )


def unanswered(choice: ModelChoice, attempt_id: str = "c0-0", candidate: int = 0) -> Attempt:
    return Attempt(
        attempt_id=attempt_id,
        candidate=candidate,
        provider=choice.provider,
        model=choice.model or "",
    )


def in_flight(choice: ModelChoice, attempt_id: str = "c0-0") -> Attempt:
    return Attempt(
        attempt_id=attempt_id,
        provider=choice.provider,
        model=choice.model or "",
        state=AttemptState.RUNNING,
        task=TaskRef(provider=choice.provider, model=choice.model or "", task_id="task-9"),
        cost_usd=cost(choice),
    )


async def stored(repo: FakeJobRepository, job_id: str) -> Job:
    job = await repo.get(job_id)
    assert job is not None
    return job


async def test_a_dispatcher_crash_after_the_create_is_requeued_and_the_task_found() -> None:
    repo = FakeJobRepository()
    job = job_in(JobState.QUEUED, KLING, queued_at=now() - timedelta(seconds=1))
    await repo.create(job)
    kling = FakeVideoProvider(crash_after_create=1)
    dispatcher = DispatcherDeps(
        settings=DispatcherSettings(),
        repo=repo,
        broker=None,  # type: ignore[arg-type]
        metrics=ServiceMetrics(CollectorRegistry(), "dispatcher"),
        providers={"kling": kling},
        limits={"kling": 5},
    )
    with pytest.raises(CrashAfterCreate):
        await admit(dispatcher)
    deps, _, _ = make_deps(repo, kling)

    assert await sweep(deps) == {"requeue": 1}
    await admit(dispatcher)

    after = await stored(repo, job.job_id)
    assert [task for task, _ in kling.created] == ["task-1"]
    assert after.attempts["c0-0"].task is not None
    assert after.attempts["c0-0"].task.task_id == "task-1"
    assert after.spent_usd == pytest.approx(cost(KLING))


async def test_at_the_deadline_an_unanswered_create_is_found_and_recorded_before_failing() -> None:
    repo = FakeJobRepository()
    job = job_in(JobState.SUBMITTING, KLING, unanswered(KLING), deadline_at=now())
    await repo.create(job)
    kling = FakeVideoProvider()
    kling.created.append(("task-7", f"{job.job_id}.c0-0"))  # the create landed, answer lost
    deps, _, _ = make_deps(repo, kling)

    assert await sweep(deps) == {"fail_deadline": 1}

    after = await stored(repo, job.job_id)
    assert after.state is JobState.FAILED
    attempt = after.attempts["c0-0"]
    assert attempt.task is not None and attempt.task.task_id == "task-7"
    assert after.spent_usd == pytest.approx(cost(KLING))
    # Its poller learns of the task (and cancels it where the provider can).
    submitted = repo.announced(provider_topic("kling"))
    assert [e.task.task_id for e in submitted if isinstance(e, TaskSubmitted)] == ["task-7"]
    assert [type(e) for e in repo.announced(Topic.JOBS_FINISHED)] == [JobFailed]
    assert await repo.find_by_task("kling", "task-7") is not None


async def test_at_the_deadline_an_unanswered_create_without_a_handle_is_charged() -> None:
    repo = FakeJobRepository()
    job = job_in(JobState.SUBMITTING, RUNWAY, unanswered(RUNWAY), deadline_at=now())
    await repo.create(job)
    runway = FakeVideoProvider("runway", findable=False)
    deps, _, registry = make_deps(repo, runway)

    await sweep(deps)

    after = await stored(repo, job.job_id)
    assert after.state is JobState.FAILED
    assert after.attempts["c0-0"].state is AttemptState.UNKNOWN
    assert after.spent_usd == pytest.approx(cost(RUNWAY))
    assert runway.lookups == 0  # nothing to look it up by
    assert registry.get_sample_value(
        "reelforge_unknown_creates_total", {"provider": "runway"}
    ) == pytest.approx(1.0)


async def test_a_stranded_create_the_provider_never_saw_is_closed_without_charge() -> None:
    repo = FakeJobRepository()
    job = job_in(JobState.RUNNING, KLING, in_flight(KLING), unanswered(KLING, "c1-0", candidate=1))
    job = job.model_copy(update={"spent_usd": cost(KLING)})
    await repo.create(job)
    kling = FakeVideoProvider()
    deps, _, _ = make_deps(repo, kling)

    assert await sweep(deps) == {"resolve": 1}

    after = await stored(repo, job.job_id)
    assert kling.lookups == 1
    assert after.attempts["c1-0"].state is AttemptState.FAILED
    assert after.attempts["c1-0"].failure is not None
    assert "never landed" in after.attempts["c1-0"].failure.message
    assert after.spent_usd == pytest.approx(cost(KLING))  # only the running task


async def test_a_job_stuck_accepted_is_announced_again() -> None:
    repo = FakeJobRepository()
    job = job_in(JobState.ACCEPTED, KLING)
    await repo.create(job)
    deps, broker, _ = make_deps(repo)

    assert await sweep(deps) == {"announce": 1}

    assert [topic for topic, _ in broker.sent] == [str(Topic.JOBS_ACCEPTED)]
    assert broker.sent[0][1]["subject"] == job.job_id


async def test_a_quiet_task_in_flight_is_handed_to_its_poller_again() -> None:
    repo = FakeJobRepository()
    job = job_in(JobState.RUNNING, KLING, in_flight(KLING))
    await repo.create(job)
    deps, broker, _ = make_deps(repo)

    assert await sweep(deps) == {"retrack": 1}

    assert [topic for topic, _ in broker.sent] == [provider_topic("kling")]
    assert broker.sent[0][1]["task"]["task_id"] == "task-9"
