"""Bad configuration ends a service with one clear line naming the setting: no traceback,
no hang."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from shared.mongo_repository import ferretdb_version

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def run_service(module: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "CONNECT_TIMEOUT_S": "3", **env}
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line_naming(result: subprocess.CompletedProcess[str], setting: str) -> None:
    lines = [
        line for line in result.stderr.splitlines() if line.strip() and not line.startswith("{")
    ]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    assert setting in lines[0] and "Traceback" not in result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_broker_is_named() -> None:
    result = run_service(
        "services.dispatcher",
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        DISPATCHER_METRICS_PORT=str(free_port()),
    )
    assert_one_line_naming(result, "KAFKA_BOOTSTRAP_SERVERS")


@pytest.mark.parametrize(
    "uri",
    ["postgresql://postgres@127.0.0.1:1/reelforge", "mongodb://127.0.0.1:1/"],
    ids=["postgresql", "mongodb"],
)
def test_an_unreachable_job_store_is_named(uri: str) -> None:
    result = run_service(
        "services.reconciler", JOB_STORE_URI=uri, RECONCILER_METRICS_PORT=str(free_port())
    )
    assert_one_line_naming(result, "JOB_STORE_URI")


def test_a_job_store_uri_of_no_known_kind_is_named() -> None:
    result = run_service(
        "services.reconciler",
        JOB_STORE_URI="mysql://127.0.0.1/reelforge",
        RECONCILER_METRICS_PORT=str(free_port()),
    )
    assert_one_line_naming(result, "JOB_STORE_URI")


def test_a_store_that_is_not_atomic_is_refused_unless_allowed_for_local_tests() -> None:
    """FerretDB (the local MongoDB-compatible server) double-wins conditional updates: a
    service refuses it, with one line saying why, unless ALLOW_NON_ATOMIC_STORE is set."""
    ferretdb = os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27117/")
    if asyncio.run(_ferretdb_version(ferretdb)) is None:
        pytest.skip(f"{ferretdb} is a real MongoDB (atomic): nothing to refuse")
    result = run_service(
        "services.reconciler", JOB_STORE_URI=ferretdb, RECONCILER_METRICS_PORT=str(free_port())
    )
    assert_one_line_naming(result, "JOB_STORE_URI")
    assert "not atomic" in result.stderr


async def _ferretdb_version(uri: str) -> str | None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        uri, serverSelectionTimeoutMS=5000
    )
    try:
        return ferretdb_version(await client.admin.command("buildInfo"))
    finally:
        await client.close()


def test_wrong_object_store_credentials_are_named() -> None:
    result = run_service(
        "services.intake", S3_SECRET_KEY="not-the-secret", INTAKE_METRICS_PORT=str(free_port())
    )
    assert_one_line_naming(result, "S3_SECRET_KEY")


def test_a_port_in_use_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_service("services.reconciler", RECONCILER_METRICS_PORT=str(port))
    assert_one_line_naming(result, "RECONCILER_METRICS_PORT")


@pytest.mark.parametrize("module", ["services.intake", "services.qc", "services.notifier"])
def test_production_mode_refuses_the_builtin_secrets_naming_each(module: str) -> None:
    result = run_service(module, REELFORGE_ENV="production")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    problems = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]
    assert "WEBHOOK_MASTER_SECRET still has its built-in default" in problems
    assert "API_KEYS still has its built-in default" in problems
    assert "S3_SECRET_KEY still has its built-in default" in problems
    assert all(p.split(" ", 1)[0].isupper() for p in problems)  # each names its setting
