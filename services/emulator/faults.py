"""Fault injection: seeded random rates (global, changeable at run time) and prompt triggers.

Rates roll a `random.Random(seed)`, one draw per check, so the same seed and the same call
sequence give the same faults. Prompt triggers force an outcome for one task:

  [fail:moderation_input]   rejected at create
  [fail:moderation_output]  fails after rendering (provider's safety-failure shape)
  [fail:internal]           fails after rendering with an internal error
  [fail:429] / [fail:5xx]   the create call answers 429 / 5xx
  [fail:expired]            the finished result is already expired
  [fail:truncated]          downloads send fewer bytes than Content-Length, then close
  [fail:malformed]          status calls answer an invalid JSON body
  [fail:answer_lost]        the create completes (the task exists and renders) and its answer
                            is lost: after `answer_lost_seconds` the caller gets a cut-off
                            body (a client with a shorter read timeout times out first)
  [render:2.5] [queue:1]    this task's render / queue seconds
  [face] [noface]           force the composited face on or off
  [fullsize]                render at the requested size even when RENDER_SCALE < 1
  [fail:internal@runway]    any trigger scoped to one provider (`@name`): others ignore it
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from services.emulator.settings import Tunables
from services.emulator.tasks import Outcome

_TRIGGER = re.compile(
    r"\[(fail|render|queue|face|noface)(?::([a-z0-9_.]+))?(?:@([a-z]+))?\]", re.IGNORECASE
)
_PERSON = re.compile(
    r"\b(person|people|man|woman|men|women|face|portrait|girl|boy|astronaut|human)\b", re.I
)


class Fault(StrEnum):
    RATE_LIMITED = "429"
    SERVER_ERROR = "5xx"
    MALFORMED = "malformed"


class CallKind(StrEnum):
    CREATE = "create"
    STATUS = "status"
    DOWNLOAD = "download"


@dataclass(frozen=True)
class Triggers:
    failures: frozenset[str] = frozenset()
    render_seconds: float | None = None
    queue_seconds: float | None = None
    face: bool | None = None

    @classmethod
    def parse(cls, prompt: str, provider: str | None = None) -> Triggers:
        failures: set[str] = set()
        values: dict[str, float] = {}
        face: bool | None = None
        for name, arg, scope in _TRIGGER.findall(prompt):
            if scope and provider is not None and scope.lower() != provider:
                continue
            name = name.lower()
            if name == "fail":
                failures.add(arg.lower())
            elif name in ("render", "queue") and arg:
                values[name] = float(arg)
            else:
                face = name == "face"
        return cls(frozenset(failures), values.get("render"), values.get("queue"), face)

    def wants_face(self, prompt: str) -> bool:
        return self.face if self.face is not None else bool(_PERSON.search(prompt))


@dataclass(frozen=True)
class CreationPlan:
    """What happens to a task, decided once at create."""

    reject_input: bool
    outcome: Outcome
    expired: bool
    truncated: bool
    malformed: bool


class FaultInjector:
    def __init__(self, tunables: Tunables, seed: int) -> None:
        self.tunables = tunables
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng = random.Random(seed)

    def roll(self, name: str) -> bool:
        rate = float(getattr(self.tunables, f"rate_{name}"))
        with self._lock:
            draw = self._rng.random()
        return draw < rate

    async def before_call(self, kind: CallKind) -> Fault | None:
        """Random slowness, 429, 5xx, malformed JSON (status calls only), in that order."""
        if self.roll("slow"):
            await asyncio.sleep(self.tunables.slow_seconds)
        if self.roll("429"):
            return Fault.RATE_LIMITED
        if self.roll("5xx"):
            return Fault.SERVER_ERROR
        if kind is CallKind.STATUS and self.roll("malformed"):
            return Fault.MALFORMED
        return None

    def forced_create_fault(self, triggers: Triggers) -> Fault | None:
        if "429" in triggers.failures:
            return Fault.RATE_LIMITED
        if "5xx" in triggers.failures:
            return Fault.SERVER_ERROR
        return None

    def plan(self, triggers: Triggers) -> CreationPlan:
        forced = triggers.failures
        outcome = Outcome.SUCCESS
        if "internal" in forced:
            outcome = Outcome.INTERNAL
        elif "moderation_output" in forced or self.roll("moderation_output"):
            outcome = Outcome.MODERATION_OUTPUT
        return CreationPlan(
            reject_input="moderation_input" in forced or self.roll("moderation_input"),
            outcome=outcome,
            expired="expired" in forced or self.roll("expired"),
            truncated="truncated" in forced,
            malformed="malformed" in forced,
        )

    def lose_answer(self, triggers: Triggers) -> bool:
        """Lose this create's answer? Draws only when the rate is armed, so arming nothing
        leaves every seeded sequence of the other faults unchanged."""
        if "answer_lost" in triggers.failures:
            return True
        return self.tunables.rate_answer_lost > 0 and self.roll("answer_lost")

    def truncate_download(self, forced: bool) -> bool:
        return forced or self.roll("truncated_download")


class RateLimiter:
    """Sliding one-minute window of creates per (provider, key); limit 0 means unlimited."""

    def __init__(self, tunables: Tunables) -> None:
        self.tunables = tunables
        self._seen: dict[tuple[str, str], deque[float]] = {}

    def allow(self, provider: str, key: str, now: float) -> bool:
        limit = self.tunables.create_rpm
        if limit <= 0:
            return True
        window = self._seen.setdefault((provider, key), deque())
        while window and window[0] <= now - 60.0:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(now)
        return True
