"""Bad configuration ends a service with one clear line naming the setting: no traceback,
no hang."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_an_unreachable_database_is_named() -> None:
    result = run_service(
        "services.reconciler",
        MONGODB_URI="mongodb://127.0.0.1:1/",
        RECONCILER_METRICS_PORT=str(free_port()),
    )
    assert_one_line_naming(result, "MONGODB_URI")


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
