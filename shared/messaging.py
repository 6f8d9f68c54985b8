"""Ack, retry and dead-letter decisions for every Kafka subscriber, in one place.

Delivery is at-least-once. `consume()` registers a subscriber with an explicit group id and
ack policy, and wraps the handler so that:

* a message that cannot be decoded, or whose handler raises `PermanentError`, goes to the
  topic's DLQ (`<topic>-dlq`) with the reason, the error type and the original bytes, and is
  then acked: one bad message never blocks a partition, and is never dropped silently;
* a transient failure (`TransientError`, or any other exception) is retried in place with
  capped exponential backoff; when the retries run out the exception propagates, the
  message is NACKed (seek back) and is redelivered, so lag grows visibly instead of data
  being lost;
* an outage of a server we depend on (`TransientError`, or what `shared.outages.is_outage`
  recognises: connection, timeout and server-selection errors of the job store, the broker
  and the object store) is never dead-lettered: the message is redelivered for as long as
  the outage lasts, each redelivery waiting longer (capped at the policy's `max_delay_s`),
  so the partition waits, its consumer lag grows and `/health/ready` names the dependency;
* an unexpected exception (a bug, not an infrastructure error) that survives
  `max_redeliveries` redeliveries of the same offset is dead-lettered with its traceback
  summary, like arroyo's InvalidMessage, so a poison message cannot stall a partition forever.

Offsets are committed only after the handler returned, i.e. after its state change and its
next event are durable (publishing awaits the broker's acknowledgement).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.events import Envelope
from shared.jobs import now
from shared.logs import log_context, trace_id_of
from shared.outages import is_outage
from shared.outbox import OutboxEvent
from shared.topics import TOPICS, Topic

log = logging.getLogger(__name__)
M = TypeVar("M")


class PermanentError(Exception):
    """The message can never be processed as it is: dead-letter it with this reason."""


class TransientError(Exception):
    """A dependency failed for now: retry, and block the partition if it keeps failing."""


@dataclass
class RetryPolicy:
    """Bounded in-place retries with capped exponential backoff and jitter."""

    attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def delay(self, attempt: int) -> float:
        raw: float = min(self.max_delay_s, self.base_delay_s * (2.0**attempt))
        return raw * (0.5 + random.random() / 2)


@dataclass
class DlqRecord:
    topic: str
    partition: int
    offset: int
    key: str | None
    reason: str
    error_type: str
    payload: str
    failed_at: str = field(default_factory=lambda: now().isoformat())
    payload_truncated: bool = False


# A DLQ record must itself fit a Kafka message: a message near the size limit, copied whole
# into the record, would be refused by the broker and redelivered forever. JSON escaping can
# grow a character to 6 bytes (\u0000), so 128 Ki characters stay below 1 MB.
DLQ_PAYLOAD_MAX_CHARS = 131_072


async def publish(broker: KafkaBroker, topic: Topic | str, event: Envelope) -> None:
    """Publish one event keyed by its job id and wait for the broker's acknowledgement (the
    same wire form as the outbox relay's: `OutboxEvent`)."""
    wire = OutboxEvent.of(str(topic), event)
    await broker.publish(wire.payload, wire.topic, key=wire.key.encode(), headers=wire.headers)


async def dead_letter(
    broker: KafkaBroker, msg: KafkaMessage, dlq: str | None, reason: str, error: str
) -> None:
    raw = msg.raw_message
    assert not isinstance(raw, tuple)
    text = msg.body.decode(errors="replace")
    record = DlqRecord(
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        key=raw.key[:1024].decode(errors="replace") if isinstance(raw.key, bytes) else None,
        reason=reason,
        error_type=error,
        payload=text[:DLQ_PAYLOAD_MAX_CHARS],
        payload_truncated=len(text) > DLQ_PAYLOAD_MAX_CHARS,
    )
    if dlq is None:
        log.error("dropping undecodable message from %s (no DLQ by design): %s", raw.topic, reason)
        return
    body = TypeAdapter(DlqRecord).dump_json(record)
    await broker.publish(body, dlq, key=raw.key, headers={"reason": reason[:200]})
    log.warning("dead-lettered %s[%s]@%s: %s", raw.topic, raw.partition, raw.offset, reason)


def decoder_for(model: type[BaseModel] | TypeAdapter[Any]) -> Callable[[bytes], Any]:
    adapter = model if isinstance(model, TypeAdapter) else TypeAdapter(model)
    return adapter.validate_json


OnDeadLetter = Callable[[str, str], None]


def consume(
    broker: KafkaBroker,
    topic: Topic,
    *,
    group_id: str | None,
    ack_policy: AckPolicy,
    decode: Callable[[bytes], M],
    handle: Callable[[M], Awaitable[None]],
    retry: RetryPolicy | None = None,
    max_redeliveries: int = 3,
    on_dead_letter: OnDeadLetter | None = None,
    auto_offset_reset: Literal["earliest", "latest"] = "earliest",
    name: str | None = None,
    **subscriber_options: Any,
) -> None:
    """Register `handle` on `topic` for consumer group `group_id` with the policy above.

    `group_id=None` is for broadcast consumers (every replica sees every message, nothing is
    committed); callers must say why that is right where they use it."""
    policy = retry or RetryPolicy()
    failures: dict[tuple[int, int], int] = {}  # poison candidates: redeliveries so far
    outages: dict[tuple[int, int], int] = {}  # redeliveries because a dependency was down
    topic_name = name or topic.value  # `name` only for tests on throwaway topics
    dlq = f"{topic_name}-dlq" if TOPICS[topic].dlq else None

    async def on_message(msg: KafkaMessage) -> None:
        async def reject(reason: str, error: str) -> None:
            await dead_letter(broker, msg, dlq, reason, error)
            if on_dead_letter:
                on_dead_letter(topic.value, error)

        try:
            event = decode(msg.body)
        except (ValidationError, ValueError) as exc:
            await reject(f"invalid message: {_short(exc)}", type(exc).__name__)
            return
        raw = msg.raw_message
        assert not isinstance(raw, tuple)
        where = (raw.partition, raw.offset)
        if where in outages:  # back off across redeliveries too, not only within one
            await policy.sleep(policy.delay(policy.attempts + outages[where]))
        try:
            with _context_of(event):
                await _with_retries(policy, handle, event)
        except PermanentError as exc:
            await reject(str(exc), "PermanentError")
        except Exception as exc:
            if isinstance(exc, TransientError) or is_outage(exc):
                outages[where] = outages.get(where, 0) + 1
                log.warning(
                    "%s[%s]@%s waits for a dependency (%s, redelivery %d)",
                    topic_name,
                    *where,
                    _short(exc),
                    outages[where],
                )
                raise
            failures[where] = failures.get(where, 0) + 1
            if failures[where] > max_redeliveries:
                failures.pop(where, None)
                outages.pop(where, None)
                await reject(f"handler kept failing: {_short(exc)}", type(exc).__name__)
                return
            raise
        else:
            failures.pop(where, None)
            outages.pop(where, None)

    # The group and the ack policy stay on the subscriber's own line, where reviewers look.
    options = {"auto_offset_reset": auto_offset_reset, **subscriber_options}
    subscribe = broker.subscriber(topic_name, group_id=group_id, ack_policy=ack_policy, **options)
    subscribe(on_message)


async def _with_retries(
    policy: RetryPolicy, handle: Callable[[M], Awaitable[None]], event: M
) -> None:
    for attempt in range(policy.attempts):
        try:
            await handle(event)
            return
        except PermanentError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if attempt == policy.attempts - 1:
                raise
            delay = policy.delay(attempt)
            log.info("transient failure (%s), retry %d in %.2fs", _short(exc), attempt + 1, delay)
            await policy.sleep(delay)


def _context_of(event: Any) -> Any:
    """Every log line written while handling an event names its job, tenant and trace."""
    if isinstance(event, Envelope):
        return log_context(
            job_id=event.subject, tenant_id=event.tenant_id, trace_id=trace_id_of(event.traceparent)
        )
    return contextlib.nullcontext()


def _short(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        text = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
        )
    else:
        text = str(exc).replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."
