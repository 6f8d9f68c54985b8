"""What every service process shares: connecting to the servers with clear errors, the
/metrics and /health endpoints, background loops and graceful shutdown.

Each service's `app.py` builds its dependencies through these helpers inside
`create_app(settings)` (the composition root) and returns a `ServiceProcess`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from aiokafka.errors import KafkaConnectionError, KafkaError
from fastapi import FastAPI, Response
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic_settings import BaseSettings
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure, PyMongoError

from shared import body_limit, production
from shared.blobstore import MinioBlobStore
from shared.errors import ConfigurationError, DependencyUnavailable, ReelforgeError
from shared.logs import configure_logging
from shared.pg import redacted
from shared.providers.catalog import install, load_catalog
from shared.providers.settings import ProviderSettings
from shared.settings import InfraSettings, ServiceSettings

log = logging.getLogger(__name__)
HealthCheck = Callable[[], Awaitable[None]]
BackgroundLoop = Callable[[], Awaitable[None]]


def build_broker(settings: ServiceSettings, registry: CollectorRegistry) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=f"reelforge-{settings.service_name}",
        acks="all",
        request_timeout_ms=int(settings.connect_timeout_s * 1000),
        middlewares=[KafkaPrometheusMiddleware(registry=registry, app_name=settings.service_name)],
        logger=logging.getLogger(f"faststream.{settings.service_name}"),
        graceful_timeout=15.0,
    )


async def start_broker(broker: KafkaBroker, settings: InfraSettings) -> None:
    try:
        await asyncio.wait_for(broker.start(), settings.connect_timeout_s + 5)
    except (KafkaConnectionError, KafkaError, TimeoutError, OSError) as exc:
        raise ConfigurationError(
            "KAFKA_BOOTSTRAP_SERVERS",
            f"no Kafka broker answers at {settings.kafka_bootstrap_servers} ({type(exc).__name__})",
        ) from exc


async def connect_mongo(
    settings: InfraSettings, uri: str | None = None, *, setting: str = "MONGODB_URI"
) -> AsyncMongoClient[dict[str, Any]]:
    uri = uri or settings.mongodb_uri
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        uri,
        tz_aware=True,
        serverSelectionTimeoutMS=int(settings.connect_timeout_s * 1000),
        appname="reelforge",
    )
    try:
        await client.admin.command("ping")
    except OperationFailure as exc:
        await client.close()
        raise ConfigurationError(setting, f"the server refused us: {exc.details or exc}") from exc
    except PyMongoError as exc:
        await client.close()
        raise ConfigurationError(
            setting, f"no MongoDB-compatible server answers at {redacted(uri)}"
        ) from exc
    return client


async def connect_blobstore(settings: InfraSettings) -> MinioBlobStore:
    store = MinioBlobStore.from_settings(settings)
    try:
        await asyncio.wait_for(store.ensure_bucket(), settings.connect_timeout_s + 5)
    except (DependencyUnavailable, TimeoutError) as exc:
        raise ConfigurationError(
            "S3_ENDPOINT", f"no S3 server answers at {settings.s3_endpoint}"
        ) from exc
    return store


def mongo_check(client: AsyncMongoClient[dict[str, Any]]) -> HealthCheck:
    async def check() -> None:
        await client.admin.command("ping")

    return check


def blob_check(store: MinioBlobStore) -> HealthCheck:
    async def check() -> None:
        await store.ensure_bucket()

    return check


def kafka_check(broker: KafkaBroker) -> HealthCheck:
    async def check() -> None:
        if not await broker.ping(timeout=3.0):
            raise DependencyUnavailable("kafka", "ping failed")

    return check


@dataclass
class ServiceProcess:
    """One running service: a broker (optional), an HTTP app, background loops."""

    settings: ServiceSettings
    registry: CollectorRegistry
    http: FastAPI = field(default_factory=FastAPI)
    broker: KafkaBroker | None = None
    checks: dict[str, HealthCheck] = field(default_factory=dict)
    loops: list[BackgroundLoop] = field(default_factory=list)
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._add_standard_routes()
        body_limit.install(self.http, self.settings.max_body_bytes)

    def _add_standard_routes(self) -> None:
        registry, checks = self.registry, self.checks

        @self.http.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

        @self.http.get("/health/live", include_in_schema=False)
        async def live() -> dict[str, str]:
            return {"status": "ok"}

        @self.http.get("/health", include_in_schema=False)
        @self.http.get("/health/ready", include_in_schema=False)
        async def ready(response: Response) -> dict[str, Any]:
            results: dict[str, str] = {}
            for name, check in checks.items():
                try:
                    await asyncio.wait_for(check(), 5.0)
                    results[name] = "ok"
                except Exception as exc:  # a health probe reports, it never raises
                    results[name] = f"failing: {type(exc).__name__}: {exc}"[:200]
            healthy = all(v == "ok" for v in results.values())
            response.status_code = 200 if healthy else 503
            return {"status": "ok" if healthy else "failing", "checks": results}

    async def run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        _check_port_free(self.settings)
        for hook in self.on_start:
            await hook()
        if self.broker is not None:
            await start_broker(self.broker, self.settings)
            # A broker outage stalls every subscriber: readiness names it (see shared.messaging).
            self.checks.setdefault("kafka", kafka_check(self.broker))
        server = self._http_server()
        tasks = [asyncio.create_task(_guard(fn), name=fn.__name__) for fn in self.loops]
        if server is not None:
            tasks.append(asyncio.create_task(server.serve(), name="http"))
        log.info("%s started", self.settings.service_name)
        watchers = [asyncio.create_task(stop.wait()), *tasks]
        done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
        await self._shutdown(server, tasks)
        for task in done:
            if task in tasks and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def _http_server(self) -> uvicorn.Server | None:
        if not self.settings.metrics_port:
            return None
        config = uvicorn.Config(
            self.http,
            host=self.settings.metrics_host,
            port=self.settings.metrics_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        return _ServiceHttpServer(config)

    async def _shutdown(
        self, server: uvicorn.Server | None, tasks: list[asyncio.Task[Any]]
    ) -> None:
        log.info("%s stopping", self.settings.service_name)
        if server is not None:
            server.should_exit = True
        if self.broker is not None:
            await self.broker.stop()
        for task in tasks:
            if task.get_name() != "http":
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for hook in self.on_stop:
            with contextlib.suppress(Exception):
                await hook()


def _check_port_free(settings: ServiceSettings) -> None:
    if not settings.metrics_port:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As uvicorn binds: connections of a stopped process in TIME_WAIT must not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((settings.metrics_host, settings.metrics_port))
        except OSError as exc:
            prefix = str(settings.model_config.get("env_prefix", ""))
            raise ConfigurationError(
                f"{prefix}METRICS_PORT",
                f"{settings.metrics_host}:{settings.metrics_port} is in use ({exc.strerror})",
            ) from exc


class _ServiceHttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns SIGTERM/SIGINT and stops the
    broker, the loops and this server in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _guard(fn: BackgroundLoop) -> None:
    """Background loops must not die silently: log, then end the process (a supervisor or the
    orchestrator restarts it) rather than keep running half-broken."""
    try:
        await fn()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background loop %s crashed", fn.__name__)
        raise


def production_settings(settings: ServiceSettings) -> list[BaseSettings]:
    """The other settings a service reads (provider credentials for those that call providers),
    so production mode checks them too."""
    uses_providers = callable(getattr(settings, "providers", None)) or isinstance(
        getattr(settings, "provider", None), str
    )
    return [ProviderSettings()] if uses_providers else []


def run_main(settings: ServiceSettings, create: Callable[[Any], Awaitable[ServiceProcess]]) -> int:
    """Entry point body of every `python -m services.<name>`: one-line errors, exit codes."""
    configure_logging(settings.service_name, settings.log_level)

    async def main() -> None:
        process = await create(settings)
        await process.run()

    try:
        install(load_catalog(settings.catalog_override_file))
        production.refuse_to_start_if_unsafe([settings, *production_settings(settings)])
        asyncio.run(main())
    except ReelforgeError as exc:
        print(f"{settings.service_name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
