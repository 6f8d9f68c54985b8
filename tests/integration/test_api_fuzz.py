"""Schemathesis against the OpenAPI documents of intake, the notifier's admin API and the QC
review API, served by uvicorn on 127.0.0.1 with the real PostgreSQL store (fakes would not show
what the database refuses): no 5xx, and every 4xx says why (a non-empty `detail`).

Bounded: `FUZZ_EXAMPLES` examples per operation, derandomized (the same cases on every run).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from services.intake.adapters import PgWebhookIds
from services.intake.api import mount
from services.intake.handlers import IntakeDeps
from services.intake.live import LiveUpdates
from services.intake.settings import IntakeSettings
from services.notifier.api import delivery_routes
from services.notifier.pg_store import PgDeliveryStore
from services.notifier.settings import NotifierSettings
from services.qc.app import wire
from services.qc.pg_reviews import PgReviewStore
from services.qc.settings import QcSettings
from shared.metrics import ServiceMetrics
from shared.pg import connect_pool
from shared.pg_repository import PgJobRepository
from shared.providers.registry import build_provider
from shared.providers.settings import ProviderSettings
from shared.runtime import ServiceProcess
from shared.settings import InfraSettings
from shared.tenants import TenantDirectory
from tests.fakes import FakeBlobStore
from tests.pg_fixtures import migrated_database
from tests.qc_fakes import RecordingPublisher

pytestmark = pytest.mark.integration
FUZZ_EXAMPLES = 30
KEY = "fuzz-key"
ADMIN = "fuzz-admin-token"
Build = Callable[[FastAPI, "Stores"], None]
CASES: dict[str, int] = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Late:
    """Stands for a store whose pool is opened in the server's own event loop (routes and
    middleware must exist before the app starts; the pool must live where requests run)."""

    def __init__(self) -> None:
        self.target: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


class Stores:
    def __init__(self) -> None:
        self.jobs, self.webhook_ids, self.deliveries, self.reviews = Late(), Late(), Late(), Late()

    async def open(self, database: str) -> Callable[[], Awaitable[None]]:
        pool = await connect_pool(database, min_size=1, max_size=4)
        self.jobs.target = PgJobRepository(pool)
        self.webhook_ids.target = PgWebhookIds(pool)
        self.deliveries.target = PgDeliveryStore(pool)
        self.reviews.target = PgReviewStore(pool)
        return pool.close


class Served:
    """One app on a uvicorn thread with its own event loop, on the real PostgreSQL store."""

    def __init__(self, build: Build, database: str) -> None:
        stores = Stores()

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            close = await stores.open(database)
            yield
            await close()

        self.app = FastAPI(lifespan=lifespan)
        build(self.app, stores)
        self.port = free_port()
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                pytest.fail("the app under fuzzing did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def build_intake(app: FastAPI, stores: Stores) -> None:
    settings = IntakeSettings(api_keys=f"{KEY}:fuzz", metrics_port=0)
    process = ServiceProcess(settings, CollectorRegistry(), http=app)
    http = httpx.AsyncClient()  # provider adapters only parse webhooks here: no request is sent
    deps = IntakeDeps(
        settings=settings,
        repo=stores.jobs,  # type: ignore[arg-type]
        broker=KafkaBroker("127.0.0.1:1"),  # never started: nothing here publishes directly
        blobs=FakeBlobStore(),
        metrics=ServiceMetrics(process.registry, "intake"),
        tenants=TenantDirectory(settings.api_keys),
        providers={p: build_provider(p, ProviderSettings(), http) for p in ("openai", "kling")},
        openai_base_url="https://gateway.example/v1",
        webhook_ids=stores.webhook_ids,  # type: ignore[arg-type]
    )
    mount(app, deps, LiveUpdates())


def build_notifier(app: FastAPI, stores: Stores) -> None:
    ServiceProcess(NotifierSettings(metrics_port=0), CollectorRegistry(), http=app)
    app.include_router(delivery_routes(stores.deliveries, ADMIN))  # type: ignore[arg-type]


def build_qc(app: FastAPI, stores: Stores) -> None:
    settings = QcSettings(api_keys=f"{KEY}:fuzz", metrics_port=0)
    process = ServiceProcess(settings, CollectorRegistry(), http=app)
    reviews = stores.reviews
    wire(process, settings, stores.jobs, FakeBlobStore(), reviews, RecordingPublisher())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    uri, drop = asyncio.run(migrated_database(InfraSettings().job_store_uri))
    yield uri
    asyncio.run(drop())


def every_4xx_says_why(ctx: Any, response: Any, case: Any) -> bool | None:
    if 400 <= response.status_code < 500:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = None
        assert detail, f"{response.status_code} without a reason: {response.text[:200]!r}"
    return None


def both_modes(operation: Any) -> Any:
    """Valid inputs (deep paths) and invalid ones (the refusals), where the schema allows."""
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    # An operation with nothing to get wrong has no negative strategy.
    with contextlib.suppress(Exception):
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    return st.one_of(strategies)


def fuzz(served: Served, name: str, headers: dict[str, str]) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    schema.config.update(base_url=served.url)
    failures: list[str] = []
    seen: set[str] = set()
    count = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        where = f"{operation.method.upper()} {operation.path}"

        @settings(
            max_examples=FUZZ_EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(both_modes(operation))
        def run(case: Any) -> None:
            nonlocal count
            count += 1
            # Mostly authenticated (the interesting paths); the schema's own header values
            # (random Authorization) are still sent for a third of the cases.
            wanted = dict(headers) if count % 3 else {}
            response = case.call(headers=wanted, timeout=30)
            try:
                case.validate_response(
                    response, checks=[not_a_server_error, every_4xx_says_why], excluded_checks=[]
                )
            except (Exception, BaseExceptionGroup) as exc:  # collect all, then fail once
                failures.append(f"{case.method} {case.formatted_path}: {str(exc)[:600]}")

        run()
        seen.add(where)
    CASES[name] = count
    print(f"\n[fuzz] {name}: {count} cases on {len(seen)} operations, {len(failures)} failures")
    return failures


@pytest.mark.timeout(240)
def test_intake_api_has_no_5xx_and_every_4xx_says_why(database: str) -> None:
    with Served(build_intake, database) as served:
        failures = fuzz(served, "intake", {"Authorization": f"Bearer {KEY}"})
    assert not failures, "\n".join(failures[:20])


@pytest.mark.timeout(240)
def test_notifier_admin_api_has_no_5xx_and_every_4xx_says_why(database: str) -> None:
    with Served(build_notifier, database) as served:
        failures = fuzz(served, "notifier", {"Authorization": f"Bearer {ADMIN}"})
    assert not failures, "\n".join(failures[:20])


@pytest.mark.timeout(240)
def test_qc_review_api_has_no_5xx_and_every_4xx_says_why(database: str) -> None:
    with Served(build_qc, database) as served:
        failures = fuzz(served, "qc", {"Authorization": f"Bearer {KEY}"})
    assert not failures, "\n".join(failures[:20])


def build_broken(app: FastAPI, stores: Stores) -> None:
    """An app with the two faults the checks exist for, to show they are caught."""

    @app.get("/v1/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        if not item_id.isascii():
            raise RuntimeError("a 500")
        return {"id": item_id}

    @app.get("/v1/nothing")
    async def nothing(q: int) -> JSONResponse:
        return JSONResponse({}, status_code=400 if q < 0 else 200)


def test_the_fuzzer_reports_a_5xx_and_a_4xx_without_a_reason(database: str) -> None:
    with Served(build_broken, database) as served:
        failures = fuzz(served, "self-check", {})
    assert any("/v1/items/" in f and "500" in f for f in failures), failures
    assert any("/v1/nothing" in f and "without a reason" in f for f in failures), failures


@pytest.mark.parametrize(
    ("build", "auth", "paths"),
    [
        (build_notifier, ADMIN, ["/v1/deliveries?job_id=a%00b", "/v1/deliveries/a%00b/replay"]),
        (build_intake, KEY, ["/v1/jobs/job_%00", "/v1/jobs?cursor=%00", "/v1/jobs/x%00/cancel"]),
        (build_qc, KEY, ["/v1/reviews/r%00"]),
    ],
    ids=["notifier", "intake", "qc"],
)
def test_ids_with_a_nul_are_refused_with_422_before_the_store_sees_them(
    database: str, build: Build, auth: str, paths: list[str]
) -> None:
    # Found by the fuzzer: GET /v1/deliveries?job_id=<NUL> was a 500 (PostgreSQL refuses NUL).
    with Served(build, database) as served, httpx.Client(base_url=served.url) as client:
        for path in paths:
            method = "POST" if path.endswith(("/replay", "/cancel")) else "GET"
            response = client.request(method, path, headers={"Authorization": f"Bearer {auth}"})
            assert response.status_code == 422, (path, response.text)
            assert "NUL" in response.text
