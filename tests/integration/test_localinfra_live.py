"""The launcher against the real servers: `run` starts what is missing, `status` sees it running,
and afterwards only what `run` started is stopped again. Needs the servers installed (or the
network to install them: a cold install takes minutes, hence the long timeout)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from deploy.localinfra.config import REPO_ROOT

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
    assert set(states) == {"kafka", "mongodb", "minio", "prometheus"}
    for name, state in states.items():
        assert state in {"running", "external"}, f"{name} is {state}"
    after = _status()
    for name, state in before.items():
        assert after[name] == state, f"{name} was {state} before run, {after[name]} after"
