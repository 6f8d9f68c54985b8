"""Consumer lag per (group, topic) for the project's consumer groups, as a Prometheus gauge.

Lag is what a group still has to read: for each partition, the log end offset minus the
group's committed offset. A partition the group never committed counts from the log start
(every subscriber uses `auto_offset_reset="earliest"`), so a group that never started shows
its whole backlog instead of nothing. The sum over partitions is exported as
`reelforge_consumer_lag_messages{group,topic}`.

The groups come from the topic registry (`shared.topics.TOPICS` consumers), minus the
`external` readers (not ours) and the broadcast subscriptions that commit nothing
(intake reads `job-updates` with `group_id=None`, so every replica sees every update).

Several reconciler replicas all export the same values; dashboards and rules take `max`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from shared.metrics import ServiceMetrics
from shared.topics import TOPICS, Topic

log = logging.getLogger(__name__)

NOT_A_GROUP = frozenset({"external"})
# (topic, consumer) pairs read without a consumer group: nothing is committed, no lag exists.
BROADCAST = frozenset({(Topic.JOB_UPDATES, "intake")})


def consumer_groups() -> dict[str, tuple[str, ...]]:
    """Every consumer group of the project and the topics it reads, from the topic registry."""
    groups: dict[str, list[str]] = {}
    for spec in TOPICS.values():
        for consumer in spec.consumers:
            if consumer in NOT_A_GROUP or (spec.topic, consumer) in BROADCAST:
                continue
            groups.setdefault(consumer, []).append(spec.topic.value)
    return {group: tuple(topics) for group, topics in sorted(groups.items())}


def lag_of(
    end: dict[TopicPartition, int],
    start: dict[TopicPartition, int],
    committed: dict[TopicPartition, int],
) -> int:
    """Messages behind the log end over these partitions (never negative)."""
    total = 0
    for tp, end_offset in end.items():
        position = committed.get(tp, -1)
        if position < 0:
            position = start.get(tp, 0)
        total += max(0, end_offset - position)
    return total


@dataclass
class LagMonitor:
    """Measures lag with one admin client (partitions, committed offsets) and one group-less
    consumer (log start and end offsets). `start()` before use, `close()` after."""

    bootstrap_servers: str
    metrics: ServiceMetrics
    groups: dict[str, tuple[str, ...]] = field(default_factory=consumer_groups)
    request_timeout_s: float = 10.0
    _admin: AIOKafkaAdminClient | None = None
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        timeout_ms = int(self.request_timeout_s * 1000)
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers,
            client_id="reelforge-lag",
            request_timeout_ms=timeout_ms,
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            client_id="reelforge-lag",
            enable_auto_commit=False,
            request_timeout_ms=timeout_ms,
        )
        await self._admin.start()
        await self._consumer.start()

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    async def measure(self) -> dict[tuple[str, str], int]:
        """Lag of every (group, topic) whose topic exists; also sets the gauge."""
        assert self._admin is not None, "start() first"
        assert self._consumer is not None, "start() first"
        partitions = await self._partitions({t for ts in self.groups.values() for t in ts})
        lags: dict[tuple[str, str], int] = {}
        for group, topics in self.groups.items():
            committed = {
                tp: om.offset
                for tp, om in (await self._admin.list_consumer_group_offsets(group)).items()
            }
            for topic in topics:
                if not partitions.get(topic):
                    continue
                end = await self._consumer.end_offsets(partitions[topic])
                start = await self._consumer.beginning_offsets(partitions[topic])
                lags[(group, topic)] = lag_of(end, start, committed)
                self.metrics.consumer_lag.labels(group, topic).set(lags[(group, topic)])
        return lags

    async def _partitions(self, topics: set[str]) -> dict[str, list[TopicPartition]]:
        """The partitions of each existing topic (a missing topic is simply absent)."""
        assert self._admin is not None
        # Describe only topics that exist: describing a missing one auto-creates it on brokers
        # with auto.create.topics.enable, and a monitor must not create what it measures.
        existing = sorted(topics & set(await self._admin.list_topics()))
        found: dict[str, list[TopicPartition]] = {}
        for described in await self._admin.describe_topics(existing) if existing else []:
            if described["error_code"] == 0:
                ids = sorted(p["partition"] for p in described["partitions"])
                found[described["topic"]] = [TopicPartition(described["topic"], i) for i in ids]
        return found


async def lag_loop(
    monitor: LagMonitor, interval_s: float, keep_going: Callable[[], bool] = lambda: True
) -> None:
    """Measure every `interval_s` until cancelled (or `keep_going()` says stop). Each
    measurement is bounded by a timeout; a failed one is logged and the next one retries."""
    await monitor.start()
    try:
        while keep_going():
            try:
                await asyncio.wait_for(monitor.measure(), timeout=max(interval_s, 1.0) * 4)
            except Exception:  # a monitor must not die of one broker hiccup
                log.exception("consumer lag measurement failed")
            await asyncio.sleep(interval_s)
    finally:
        await monitor.close()
