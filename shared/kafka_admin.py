"""Create every topic of the registry (idempotent) and check that the broker answers."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from shared.errors import ConfigurationError
from shared.topics import TOPICS


async def ensure_topics(
    bootstrap: str, timeout_s: float = 15.0, dlq_partitions: int = 1
) -> list[str]:
    """Create missing topics and DLQs; return the names that were created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
    except (KafkaConnectionError, TimeoutError, OSError) as exc:
        raise ConfigurationError(
            "KAFKA_BOOTSTRAP_SERVERS",
            f"no Kafka broker answers at {bootstrap} ({type(exc).__name__})",
        ) from exc
    try:
        existing = set(await admin.list_topics())
        wanted: list[NewTopic] = []
        for spec in TOPICS.values():
            if spec.topic.value not in existing:
                wanted.append(NewTopic(spec.topic.value, spec.partitions, 1))
            if spec.dlq and spec.dlq not in existing:
                wanted.append(NewTopic(spec.dlq, dlq_partitions, 1))
        created: list[str] = []
        for topic in wanted:  # one by one: a concurrent creator makes only that one "exist"
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                if "TopicAlreadyExists" not in repr(exc):
                    raise
        return created
    finally:
        await admin.close()
