"""Outbound webhooks: a fire-and-forget sender with a bounded retry, and the lifecycle watcher.

Task state is derived from the clock, so nothing "happens" at a transition by itself: the
`LifecycleNotifier` ticks in the background, compares each watched task's phase with the last
one it announced, and calls the provider's hook (which builds and sends the payload). Sending
never blocks a request handler: each delivery is its own asyncio task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from services.emulator.tasks import TERMINAL, Clock, Phase, Task, TaskStore

log = logging.getLogger(__name__)

Hook = Callable[[Task, Phase], None]


@dataclass(frozen=True)
class Delivery:
    url: str
    body: bytes
    headers: dict[str, str]
    status: int | None  # last HTTP status, None when the connection failed
    attempts: int


class CallbackSender:
    """POSTs bodies to URLs, retrying non-2xx answers up to `max_attempts` with a fixed backoff."""

    def __init__(
        self,
        max_attempts: int,
        retry_seconds: float,
        timeout_seconds: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.retry_seconds = retry_seconds
        self._timeout = timeout_seconds
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._pending: set[asyncio.Task[Delivery]] = set()
        self.deliveries: list[Delivery] = []  # finished deliveries, newest last (bounded)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, transport=self._transport)
        return self._client

    def send(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(url, body, headers))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _deliver(self, url: str, body: bytes, headers: dict[str, str]) -> Delivery:
        status: int | None = None
        attempt = 0
        for attempt in range(1, self.max_attempts + 1):
            try:
                resp = await self._http().post(url, content=body, headers=headers)
                status = resp.status_code
                if 200 <= status < 300:
                    break
            except httpx.HTTPError as exc:
                log.info("callback to %s failed: %s", url, exc)
                status = None
            if attempt < self.max_attempts:
                await asyncio.sleep(self.retry_seconds * attempt)
        delivery = Delivery(url, body, headers, status, attempt)
        self.deliveries = [*self.deliveries[-999:], delivery]
        return delivery

    async def drain(self) -> None:
        """Wait for deliveries in flight (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*list(self._pending), return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()


class LifecycleNotifier:
    """Calls a provider's hook once per observed phase change of each of its tasks."""

    def __init__(self, store: TaskStore, clock: Clock, tick_seconds: float) -> None:
        self.store = store
        self.clock = clock
        self.tick_seconds = tick_seconds
        self._hooks: dict[str, Hook] = {}
        self._loop_task: asyncio.Task[None] | None = None

    def register(self, provider: str, hook: Hook) -> None:
        self._hooks[provider] = hook

    def tick(self) -> None:
        now = self.clock.now()
        for task in self.store.all():
            hook = self._hooks.get(task.provider)
            if hook is None or task.notified in TERMINAL:
                continue
            phase = task.phase(now)
            if phase != task.notified:
                task.notified = phase
                try:
                    hook(task, phase)
                except Exception:  # a broken hook must not stop the watcher
                    log.exception("lifecycle hook failed for %s/%s", task.provider, task.id)

    async def run(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(self.tick_seconds)

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
