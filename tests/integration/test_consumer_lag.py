"""Consumer lag on the real Kafka: a fresh topic with a known backlog, a fresh group that
commits part of it, and the reconciler's monitor must report exactly what is left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from prometheus_client import CollectorRegistry

from services.reconciler.lag import LagMonitor, consumer_groups, lag_loop
from shared.metrics import ServiceMetrics
from shared.settings import InfraSettings
from tests.conftest import random_id

pytestmark = pytest.mark.integration
MESSAGES = 7


@pytest.fixture
async def backlog(infra: InfraSettings) -> AsyncIterator[str]:
    """A fresh two-partition topic holding MESSAGES records; deleted afterwards."""
    topic = random_id("lag-test")
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for i in range(MESSAGES):
            await producer.send_and_wait(topic, f"m{i}".encode(), key=f"k{i}".encode())
    finally:
        await producer.stop()
    yield topic
    await admin.delete_topics([topic])
    await admin.close()


async def commit_some(infra: InfraSettings, topic: str, group: str) -> int:
    """Commit offset 2 on partition 0 for `group`; returns how many messages that consumed."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka_bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        start = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        assert end - start >= 2, "the keys should spread the records over both partitions"
        await consumer.commit({tp: OffsetAndMetadata(start + 2, "")})
    finally:
        await consumer.stop()
    return 2


def test_groups_come_from_the_topic_registry_without_external_or_broadcast_readers() -> None:
    groups = consumer_groups()
    assert groups["dispatcher"] == ("jobs-accepted", "tasks-failed")
    assert groups["intake"] == ("job-requests",)
    assert {"poller-openai", "poller-kling", "storage", "notifier", "qc"} <= set(groups)
    assert "external" not in groups


async def test_reports_the_whole_backlog_then_what_is_left_after_a_commit(
    infra: InfraSettings, backlog: str
) -> None:
    group = random_id("lag-group")
    registry = CollectorRegistry()
    monitor = LagMonitor(
        infra.kafka_bootstrap_servers,
        ServiceMetrics(registry, "reconciler"),
        groups={group: (backlog, "no-such-topic-" + group)},
    )
    await monitor.start()
    try:
        assert await monitor.measure() == {(group, backlog): MESSAGES}
        consumed = await commit_some(infra, backlog, group)
        assert await monitor.measure() == {(group, backlog): MESSAGES - consumed}
    finally:
        await monitor.close()
    value = registry.get_sample_value(
        "reelforge_consumer_lag_messages", {"group": group, "topic": backlog}
    )
    assert value == MESSAGES - consumed


async def test_loop_measures_until_told_to_stop(infra: InfraSettings, backlog: str) -> None:
    group = random_id("lag-group")
    registry = CollectorRegistry()
    monitor = LagMonitor(
        infra.kafka_bootstrap_servers,
        ServiceMetrics(registry, "reconciler"),
        groups={group: (backlog,)},
    )
    rounds = iter(range(2))
    await asyncio.wait_for(
        lag_loop(monitor, 0.1, keep_going=lambda: next(rounds, None) is not None), timeout=30
    )
    assert (
        registry.get_sample_value(
            "reelforge_consumer_lag_messages", {"group": group, "topic": backlog}
        )
        == MESSAGES
    )
