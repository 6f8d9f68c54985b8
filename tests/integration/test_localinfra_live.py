"""The launcher against the real servers: `run` starts what is missing, `status` sees it running,
and afterwards only what `run` started is stopped again. Needs the servers installed (or the
network to install them: a cold install takes minutes, hence the long timeout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.localinfra import postgres
from deploy.localinfra.config import REPO_ROOT, Layout, is_root
from deploy.localinfra.health import tcp_open

pytestmark = pytest.mark.integration

LAUNCHER = [sys.executable, "-m", "deploy.localinfra"]


def _states(output: str) -> dict[str, str]:
    rows = [line.split() for line in output.splitlines()[1:] if line.strip()]
    return {row[0]: row[1] for row in rows}


def _status() -> dict[str, str]:
    result = subprocess.run(
        [*LAUNCHER, "status"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    return _states(result.stdout)


@pytest.mark.timeout(1200)
def test_status_inside_run_reports_every_server_running_and_run_restores_states() -> None:
    before = _status()
    inside = subprocess.run(
        [*LAUNCHER, "run", "--", *LAUNCHER, "status"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1100,
        check=False,
        env=dict(os.environ),
    )
    assert inside.returncode == 0, inside.stderr
    states = _states(inside.stdout)
    assert set(states) == {"kafka", "postgres", "mongodb", "minio", "prometheus"}
    for name, state in states.items():
        assert state in {"running", "external"}, f"{name} is {state}"
    after = _status()
    for name, state in before.items():
        assert after[name] == state, f"{name} was {state} before run, {after[name]} after"


@pytest.mark.timeout(300)
def test_postgres_stops_fast_with_a_client_inside_a_transaction_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    """In a cache of its own: cold up (initdb + CREATE DATABASE), write, down while a client sits
    in an open transaction (fast shutdown: no waiting for it), warm up, read back."""
    layout = Layout.from_env({"REELFORGE_CACHE": str(tmp_path)})
    if not postgres.SPEC.installed(layout):
        pytest.skip("postgresql-15 not installed (bash deploy/system-deps.sh)")
    if tcp_open("127.0.0.1", postgres.SPEC.port):
        pytest.skip("127.0.0.1:15432 is already served (another cache's postgres?)")
    env = {**os.environ, "REELFORGE_CACHE": str(tmp_path)}
    env.pop("JOB_STORE_URI", None)
    psql = [str(postgres.BIN_DIR / "psql"), "-h", "127.0.0.1", "-p", "15432", "-U", "postgres"]

    def launcher(*args: str) -> str:
        result = subprocess.run(
            [*LAUNCHER, *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def sql(query: str) -> str:
        result = subprocess.run(
            [*psql, "-d", "reelforge", "-tAc", query],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    try:
        assert "started pid" in launcher("up", "postgres")
        sql("CREATE TABLE probe (x int); INSERT INTO probe VALUES (42)")
        client = subprocess.Popen(
            [*psql, "-d", "reelforge", "-c", "BEGIN", "-c", "SELECT pg_sleep(120)"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
        began = time.monotonic()
        assert "stopped pid" in launcher("down", "postgres")
        assert time.monotonic() - began < 10  # "smart" shutdown would wait for the client
        assert client.wait(timeout=10) != 0
        assert "started pid" in launcher("up", "postgres")
        assert sql("SELECT x FROM probe") == "42"
        previous = (tmp_path / "run" / "postgres.log.1").read_text()
        assert "received fast shutdown request" in previous
        assert "database system is shut down" in previous
    finally:
        launcher("down", "postgres")
        if is_root():  # the cluster lives outside tmp_path; do not wait for the orphan sweep
            shutil.rmtree(postgres.cluster(layout).home, ignore_errors=True)
