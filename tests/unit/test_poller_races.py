"""A task is polled by one call at a time, and a late answer never moves an attempt backwards.

The race these pin down: a webhook hint asked for a poll while one was in flight, the two
calls answered "running" and "succeeded", and the older "running" answer was written last;
the stored attempt of a two-candidate job went back to running and QC waited for it forever.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from services.poller.handlers import PollerDeps, poll
from services.poller.logic import ScheduleConfig
from services.poller.settings import PollerSettings
from services.poller.tracker import Tracked, Tracker
from shared.jobs import Attempt, AttemptState, Job, JobRequest, JobState, new_job_id, now
from shared.metrics import ServiceMetrics
from shared.providers.base import ProviderCapabilities, TaskRef, TaskState, TaskStatus, VideoOutput
from tests.fakes import FakeJobRepository

CFG = ScheduleConfig(min_interval_s=0.01, max_interval_s=0.05)
REF = TaskRef(provider="kling", model="kling-v2-master", task_id="t-1")


def tracked(job_id: str, attempt_id: str = "c0-0") -> Tracked:
    return Tracked(
        job_id=job_id,
        tenant_id="demo",
        attempt_id=attempt_id,
        ref=REF,
        submitted_at=now() - timedelta(seconds=60),
        deadline_at=now() + timedelta(hours=1),
        expected_s=1.0,
        partition=0,
    )


async def test_a_hint_during_a_poll_waits_for_it_and_is_served_right_after() -> None:
    release = asyncio.Event()
    started = [asyncio.Event(), asyncio.Event()]
    in_flight = 0
    most = 0
    calls = 0

    async def slow_poll(task: Tracked) -> float | None:
        nonlocal in_flight, most, calls
        calls += 1
        started[min(calls, 2) - 1].set()
        in_flight += 1
        most = max(most, in_flight)
        if calls == 1:
            await release.wait()
        in_flight -= 1
        return None if calls >= 2 else 30.0  # the second call ends the task

    tracker = Tracker(CFG, max_concurrent=8, poll=slow_poll)
    loop = asyncio.create_task(tracker.run())
    try:
        task = tracked("job-1")
        tracker.track(task, due_in=0.0)
        await asyncio.wait_for(started[0].wait(), 5)
        for _ in range(3):  # hints while the first call is still waiting for its answer
            assert tracker.poll_now(task.key)
            await asyncio.sleep(0.05)
        assert calls == 1, "a second call started while the first was in flight"
        release.set()
        await asyncio.wait_for(started[1].wait(), 5)
        await asyncio.sleep(0.1)
        assert most == 1
        assert calls == 2, "the hint was served once, right after the first call (not in 30 s)"
    finally:
        loop.cancel()
        await tracker.stop()
        await asyncio.gather(loop, return_exceptions=True)


class ScriptedKling:
    """The provider edge: answers `status` from a script, one answer per call."""

    name = "kling"
    capabilities = ProviderCapabilities(
        cancel=False, delete=False, webhooks=True, per_request_callback=True
    )

    def __init__(self, *answers: TaskStatus) -> None:
        self.answers = list(answers)

    async def status(self, ref: TaskRef) -> TaskStatus:
        return self.answers.pop(0)


class RecordingBroker:
    """The Kafka edge: records what was published."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, body: bytes, topic: str, **_: Any) -> None:
        self.sent.append((topic, json.loads(body)))

    def topics(self) -> list[str]:
        return [topic for topic, _ in self.sent]


RUNNING = TaskStatus(state=TaskState.RUNNING, raw_status="processing", progress=0.5)
DONE = TaskStatus(
    state=TaskState.SUCCEEDED,
    raw_status="succeed",
    progress=1.0,
    outputs=(VideoOutput(url="http://127.0.0.1:8090/v.mp4"),),
)


async def two_candidate_job(repo: FakeJobRepository) -> Job:
    job = Job(
        job_id=new_job_id(),
        tenant_id="demo",
        request=JobRequest(prompt="a kite", candidates=2),
        state=JobState.STORING,
    )
    await repo.create(job)
    for n in (0, 1):
        attempt = Attempt(
            attempt_id=f"c{n}-0",
            candidate=n,
            provider="kling",
            model=REF.model,
            state=AttemptState.SUBMITTED,
            task=REF.model_copy(update={"task_id": f"t-{n}"}),
        )
        await repo.update(job.job_id, {f"attempts.c{n}-0": attempt})
    return job


def deps_with(repo: FakeJobRepository, provider: ScriptedKling) -> PollerDeps:
    broker = RecordingBroker()
    repo.relay_to(lambda topic, event: broker.sent.append((topic, event.model_dump(mode="json"))))
    deps = PollerDeps(
        settings=PollerSettings(provider="kling"),
        repo=repo,
        broker=broker,  # type: ignore[arg-type]
        metrics=ServiceMetrics(CollectorRegistry(), "poller"),
        provider=provider,  # type: ignore[arg-type]
        cfg=CFG,
    )
    deps.tracker = Tracker(CFG, max_concurrent=4, poll=lambda t: poll(deps, t))
    return deps


async def test_a_late_running_answer_does_not_move_a_stored_attempt_back() -> None:
    repo = FakeJobRepository()
    job = await two_candidate_job(repo)
    deps = deps_with(repo, ScriptedKling(DONE, RUNNING))
    task = tracked(job.job_id)
    deps.track().track(task)

    assert await poll(deps, task) is None  # succeeded: recorded and published
    await repo.update(job.job_id, {"attempts.c0-0.state": AttemptState.STORED})  # storage
    assert await poll(deps, task) is None  # the stale "running" answer stops tracking

    loaded = await repo.get(job.job_id)
    assert loaded is not None
    assert loaded.attempts["c0-0"].state is AttemptState.STORED
    assert loaded.attempts["c1-0"].state is AttemptState.SUBMITTED  # the other one untouched
    broker = deps.broker
    assert isinstance(broker, RecordingBroker)
    assert broker.topics() == ["tasks-succeeded"]  # no job update from the stale answer
    assert task.key not in deps.track().tasks


async def test_a_second_success_answer_is_not_published_twice() -> None:
    repo = FakeJobRepository()
    job = await two_candidate_job(repo)
    deps = deps_with(repo, ScriptedKling(DONE, DONE))
    first, again = tracked(job.job_id), tracked(job.job_id)  # e.g. a resume re-tracked it

    assert await poll(deps, first) is None
    assert await poll(deps, again) is None

    broker = deps.broker
    assert isinstance(broker, RecordingBroker)
    assert broker.topics() == ["tasks-succeeded"]
    loaded = await repo.get(job.job_id)
    assert loaded is not None and loaded.attempts["c0-0"].state is AttemptState.SUCCEEDED


async def test_the_learned_render_time_does_not_learn_the_pollers_own_lag() -> None:
    """A task found done by a poll says only that it finished between the previous poll (or
    its submission) and this one. Learning the upper bound fed the poller's own lag back into
    its schedule: under load a late first poll taught "renders take longer", which delayed the
    next first polls further (measured: detection p50 15-34 s on an instant provider)."""
    repo = FakeJobRepository()
    job = await two_candidate_job(repo)
    deps = deps_with(repo, ScriptedKling(DONE))
    task = tracked(job.job_id)  # submitted 60 s ago, never polled: finished within (0, 60] s
    deps.track().track(task)

    assert await poll(deps, task) is None
    learned = deps.render_times.expected(REF.model, prior=999.0)
    assert learned <= 30.5  # the middle of what the poll knows, not the 60 s upper bound
