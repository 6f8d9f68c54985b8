"""Composition root of a poller process (one per provider, same code)."""

from __future__ import annotations

import asyncio
import logging

import httpx
from aiokafka import ConsumerRebalanceListener, TopicPartition
from faststream import AckPolicy
from prometheus_client import CollectorRegistry

from services.poller import handlers
from services.poller.handlers import PollerDeps
from services.poller.logic import ScheduleConfig
from services.poller.settings import PollerSettings
from services.poller.tracker import Tracker
from shared.events import PROVIDER_TASK_EVENT, TaskHinted, TaskSubmitted
from shared.messaging import consume
from shared.metrics import ServiceMetrics
from shared.providers.registry import build_provider
from shared.providers.settings import ProviderSettings
from shared.runtime import ServiceProcess, build_broker, kafka_check
from shared.stores import attach, open_job_store
from shared.topics import provider_topic

log = logging.getLogger(__name__)


class OwnTasksOnRebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partition ownership is task ownership: resume on assignment, hand over on revocation."""

    def __init__(self, deps: PollerDeps) -> None:
        self.deps = deps
        self.owned: set[int] = set()
        self._resuming: set[asyncio.Task[int]] = set()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        partitions = {tp.partition for tp in revoked}
        self.owned -= partitions
        self.deps.metrics.owned_partitions.labels(self.deps.name).set(len(self.owned))
        handlers.on_revoked(self.deps, partitions)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        partitions = {tp.partition for tp in assigned}
        self.owned |= partitions
        self.deps.metrics.owned_partitions.labels(self.deps.name).set(len(self.owned))
        # Return at once so the group's rebalance completes; resume the tasks in the background.
        task = asyncio.create_task(self._resume(partitions))
        self._resuming.add(task)
        task.add_done_callback(self._resuming.discard)

    async def _resume(self, partitions: set[int]) -> int:
        for attempt in range(5):
            try:
                return await handlers.on_assigned(self.deps, partitions, self.owned)
            except Exception:  # the store may be restarting; the tasks must come back
                log.exception(
                    "resuming tasks of partitions %s failed (try %d)",
                    sorted(partitions),
                    attempt + 1,
                )
                await asyncio.sleep(2.0 * (attempt + 1))
        return 0


async def create_app(settings: PollerSettings) -> ServiceProcess:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, f"poller-{settings.provider}")
    broker = build_broker(settings, registry)
    store = await open_job_store(settings)
    repo = store.repo
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=5.0),
        limits=httpx.Limits(max_connections=settings.max_concurrent_polls),
    )
    cfg = ScheduleConfig(
        min_interval_s=settings.min_interval_s, max_interval_s=settings.max_interval_s
    )
    deps = PollerDeps(
        settings=settings,
        repo=repo,
        broker=broker,
        metrics=metrics,
        cfg=cfg,
        provider=build_provider(settings.provider, ProviderSettings(), http),
    )

    async def poll(task):  # type: ignore[no-untyped-def]
        return await handlers.poll(deps, task)

    deps.tracker = Tracker(cfg, settings.max_concurrent_polls, poll)

    async def on_event(event: TaskSubmitted | TaskHinted) -> None:
        await handlers.on_task_event(deps, event)

    # Tracking a task is the handler's whole effect: the task's truth is already in the job
    # record, so committing right after is safe; a lost replica's tasks come back from the
    # records on the next assignment (OwnTasksOnRebalance).
    consume(
        broker,
        provider_topic(settings.provider),
        group_id=f"poller-{settings.provider}",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decode=PROVIDER_TASK_EVENT.validate_json,
        handle=on_event,
        on_dead_letter=metrics.dead_letter,
        listener=OwnTasksOnRebalance(deps),
    )
    process = ServiceProcess(
        settings,
        registry,
        broker=broker,
        checks={"kafka": kafka_check(broker)},
    )
    process.loops.append(deps.tracker.run)

    async def close() -> None:
        if deps.tracker is not None:
            await deps.tracker.stop()
        await http.aclose()

    process.on_stop.append(close)
    attach(store, process)  # after `close`: the tracker stops before the store closes
    return process
