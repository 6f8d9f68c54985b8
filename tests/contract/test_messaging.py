"""One behaviour suite for `shared.messaging` (consume/publish/DLQ), run on faststream's
in-memory broker and on the real Kafka broker with a real consumer group."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, TestKafkaBroker

from shared.events import JobAccepted
from shared.messaging import PermanentError, RetryPolicy, consume, publish
from shared.settings import InfraSettings
from shared.topics import Topic


async def no_sleep(_: float) -> None:
    return None


class Recorder:
    def __init__(self, fail_first: int = 0, permanent: set[str] | None = None) -> None:
        self.seen: list[str] = []
        self.fail_first = fail_first
        self.permanent = permanent or set()

    async def handle(self, event: JobAccepted) -> None:
        if event.subject in self.permanent:
            raise PermanentError(f"cannot process {event.subject}")
        if self.fail_first > 0:
            self.fail_first -= 1
            raise ConnectionError("store down")
        self.seen.append(event.subject)


class Failing:
    """Fails every call for the event ids in `failures` (with that error) `times` times, then
    handles them; counts every call per event id and keeps the order of the handled ones."""

    def __init__(self, failures: dict[str, BaseException], times: int = 10**6) -> None:
        self.failures = failures
        self.times = times
        self.calls: dict[str, int] = {}
        self.seen: list[str] = []

    async def handle(self, event: JobAccepted) -> None:
        self.calls[event.id] = self.calls.get(event.id, 0) + 1
        error = self.failures.get(event.id)
        if error is not None and self.calls[event.id] <= self.times:
            raise error
        self.seen.append(event.id)


ATTEMPTS = 3  # in-place tries per delivery (`wire`)
MAX_REDELIVERIES = 3  # consume()'s default


def wire(
    broker: KafkaBroker, recorder: Recorder | Failing, group: str, name: str | None = None
) -> None:
    consume(
        broker,
        Topic.JOBS_ACCEPTED,
        group_id=group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decode=JobAccepted.model_validate_json,
        handle=recorder.handle,
        retry=RetryPolicy(attempts=ATTEMPTS, sleep=no_sleep),
        name=name,
    )


async def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


class MessagingContract:
    @pytest.fixture
    def run(self) -> Any:
        raise NotImplementedError

    async def test_delivers_each_published_event_to_the_group(self, run: Any) -> None:
        recorder = Recorder()
        async with run(recorder) as send:
            ids = [f"job_{secrets.token_hex(4)}" for _ in range(3)]
            for job_id in ids:
                await send(JobAccepted(subject=job_id, tenant_id="t"))
            await wait_for(lambda: set(ids) <= set(recorder.seen))

    async def test_a_transient_failure_is_retried_until_it_succeeds(self, run: Any) -> None:
        recorder = Recorder(fail_first=2)
        async with run(recorder) as send:
            await send(JobAccepted(subject="job_retry", tenant_id="t"))
            await wait_for(lambda: "job_retry" in recorder.seen)

    async def test_permanent_and_undecodable_messages_go_to_the_dlq_with_a_reason(
        self, run: Any
    ) -> None:
        recorder = Recorder(permanent={"job_bad"})
        async with run(recorder) as send:
            await send(JobAccepted(subject="job_bad", tenant_id="t"))
            await send(b"{not json")
            await send(JobAccepted(subject="job_good", tenant_id="t"))
            await wait_for(lambda: "job_good" in recorder.seen and len(run.dlq) >= 2)
        reasons = sorted(entry["reason"] for entry in run.dlq)
        assert reasons[0] == "cannot process job_bad"
        assert reasons[1].startswith("invalid message")


class TestInMemoryMessaging(MessagingContract):
    @pytest.fixture
    def run(self) -> Any:
        dlq: list[dict[str, Any]] = []

        class Run:
            def __init__(self, recorder: Recorder) -> None:
                self.broker = KafkaBroker("127.0.0.1:1")
                wire(self.broker, recorder, "contract")

                @self.broker.subscriber(
                    "jobs-accepted-dlq", group_id="dlq", ack_policy=AckPolicy.ACK
                )
                async def on_dlq(body: dict[str, Any]) -> None:
                    dlq.append(body)

            async def __aenter__(self) -> Any:
                self.client = TestKafkaBroker(self.broker)
                await self.client.__aenter__()

                async def send(event: JobAccepted | bytes) -> None:
                    if isinstance(event, bytes):
                        await self.broker.publish(event, Topic.JOBS_ACCEPTED.value, key=b"raw")
                    else:
                        await publish(self.broker, Topic.JOBS_ACCEPTED, event)

                return send

            async def __aexit__(self, *exc: object) -> None:
                await self.client.__aexit__(*exc)

        Run.dlq = dlq  # type: ignore[attr-defined]
        return Run


@pytest.mark.integration
class TestKafkaMessaging(MessagingContract):
    """On the real broker, with a fresh topic pair per test so nothing else interferes."""

    @pytest.fixture
    async def run(self) -> AsyncIterator[Any]:
        bootstrap = InfraSettings().kafka_bootstrap_servers
        topic = f"contract-{secrets.token_hex(4)}"
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(topic, 3, 1), NewTopic(f"{topic}-dlq", 1, 1)])
        dlq: list[dict[str, Any]] = []
        group = f"contract-{secrets.token_hex(4)}"

        class Run:
            def __init__(self, recorder: Recorder) -> None:
                self.broker = KafkaBroker(bootstrap)
                wire(self.broker, recorder, group, name=topic)
                self.dlq_reader = AIOKafkaConsumer(
                    f"{topic}-dlq",
                    bootstrap_servers=bootstrap,
                    auto_offset_reset="earliest",
                    group_id=None,
                )

            async def __aenter__(self) -> Any:
                await self.broker.start()
                await self.dlq_reader.start()
                self.reader = asyncio.create_task(self._read_dlq())

                async def send(event: JobAccepted | bytes) -> None:
                    if isinstance(event, bytes):
                        await self.broker.publish(event, topic, key=b"raw")
                    else:
                        await publish(self.broker, topic, event)

                return send

            async def _read_dlq(self) -> None:
                async for record in self.dlq_reader:
                    dlq.append(json.loads(record.value))

            async def __aexit__(self, *exc: object) -> None:
                self.reader.cancel()
                await asyncio.gather(self.reader, return_exceptions=True)
                await self.dlq_reader.stop()
                await self.broker.stop()

        async def dlq_size() -> int:
            """Records in the DLQ partition, read from the broker (not from our reader)."""
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
            await consumer.start()
            try:
                part = TopicPartition(f"{topic}-dlq", 0)
                return int((await consumer.end_offsets([part]))[part])
            finally:
                await consumer.stop()

        Run.dlq = dlq  # type: ignore[attr-defined]
        Run.dlq_size = staticmethod(dlq_size)  # type: ignore[attr-defined]
        Run.group = group  # type: ignore[attr-defined]
        Run.topic = topic  # type: ignore[attr-defined]
        yield Run
        await admin.delete_topics([topic, f"{topic}-dlq"])
        await admin.close()

    async def test_offsets_are_committed_after_handling_so_a_restart_does_not_redeliver(
        self, run: Any
    ) -> None:
        first = Recorder()
        async with run(first) as send:
            await send(JobAccepted(subject="job_once", tenant_id="t"))
            await wait_for(lambda: first.seen == ["job_once"])
            await asyncio.sleep(0.5)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=InfraSettings().kafka_bootstrap_servers,
            group_id=run.group,
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            parts = [TopicPartition(run.topic, p) for p in range(3)]
            committed = {tp.partition: await consumer.committed(tp) for tp in parts}
            ends = await consumer.end_offsets(parts)
        finally:
            await consumer.stop()
        assert sum(o or 0 for o in committed.values()) == sum(ends.values()) == 1
        second = Recorder()
        async with run(second) as send:
            await send(JobAccepted(subject="job_next", tenant_id="t"))
            await wait_for(lambda: "job_next" in second.seen)
        assert second.seen == ["job_next"]

    async def test_a_message_whose_retries_run_out_is_nacked_and_redelivered_then_handled(
        self, run: Any
    ) -> None:
        """Two whole deliveries fail (NACK: the consumer seeks back); the third handles it, and
        the next event of the same job waits behind it (same key: same partition, same order)."""
        failing = Failing({"nacked": RuntimeError("not yet")}, times=2 * ATTEMPTS)
        async with run(failing) as send:
            await send(JobAccepted(id="nacked", subject="job_nacked", tenant_id="t"))
            await send(JobAccepted(id="behind", subject="job_nacked", tenant_id="t"))
            await wait_for(lambda: failing.seen == ["nacked", "behind"])
        assert failing.calls == {"nacked": 2 * ATTEMPTS + 1, "behind": 1}
        assert await run.dlq_size() == 0

    async def test_a_poison_message_is_dead_lettered_after_max_redeliveries_then_the_next_runs(
        self, run: Any
    ) -> None:
        failing = Failing({"poison": KeyError("attempts")})
        async with run(failing) as send:
            await send(JobAccepted(id="poison", subject="job_poison", tenant_id="t"))
            await send(JobAccepted(id="behind", subject="job_poison", tenant_id="t"))
            await wait_for(lambda: len(run.dlq) >= 1 and failing.seen == ["behind"])
        # the first delivery and `max_redeliveries` redeliveries, each tried ATTEMPTS times
        assert failing.calls == {"poison": (MAX_REDELIVERIES + 1) * ATTEMPTS, "behind": 1}
        [record] = run.dlq
        assert record["error_type"] == "KeyError"
        assert record["reason"].startswith("handler kept failing")
        assert record["topic"] == run.topic
        assert json.loads(record["payload"])["id"] == "poison"

    async def test_an_outage_is_redelivered_past_max_redeliveries_and_never_dead_lettered(
        self, run: Any
    ) -> None:
        rounds = MAX_REDELIVERIES + 3
        outage = ConnectionRefusedError(111, "Connect call failed")
        failing = Failing({"outage": outage}, times=rounds * ATTEMPTS)
        async with run(failing) as send:
            await send(JobAccepted(id="outage", subject="job_outage", tenant_id="t"))
            await wait_for(lambda: failing.seen == ["outage"])
        assert failing.calls == {"outage": rounds * ATTEMPTS + 1}
        assert await run.dlq_size() == 0
