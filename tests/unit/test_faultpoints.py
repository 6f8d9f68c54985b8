"""Fault points fire once, in the process that reaches them first, and only when armed; the
fault matrix's counting on crafted job views."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.fault_matrix import ROWS, count

ROOT = Path(__file__).resolve().parents[2]
REACH = "from shared.faultpoints import reach; reach('storage.mid_upload'); print('survived')"


def run_reaching(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", REACH],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_armed_point_kills_the_first_process_that_reaches_it_and_only_once(
    tmp_path: Path,
) -> None:
    (tmp_path / "storage.mid_upload").write_text("armed")
    first = run_reaching({"REELFORGE_FAULT_DIR": str(tmp_path)})
    second = run_reaching({"REELFORGE_FAULT_DIR": str(tmp_path)})
    assert first.returncode == -signal.SIGKILL and first.stdout == ""
    assert (tmp_path / "storage.mid_upload.fired").exists()
    assert second.returncode == 0 and second.stdout.strip() == "survived"


def test_points_are_inert_unless_armed(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.pop("REELFORGE_FAULT_DIR", None)
    unset = subprocess.run(
        [sys.executable, "-c", REACH],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    not_armed = run_reaching({"REELFORGE_FAULT_DIR": str(tmp_path)})
    assert unset.stdout.strip() == not_armed.stdout.strip() == "survived"


def job(state: str, spent: float = 0.2, tasks: tuple[str, ...] = ("t1",)) -> dict[str, object]:
    return {
        "state": state,
        "spent_usd": spent,
        "request": {"budget_usd": 1.0},
        "attempts": [{"task": {"task_id": t}} for t in tasks],
    }


def test_the_matrix_counts_what_a_row_lost() -> None:
    jobs = {
        "job_ok": job("completed"),
        "job_stuck": job("running", tasks=("t2",)),
        "job_twice": job("completed", tasks=("t3",)),
        "job_over": job("failed", spent=1.5, tasks=()),
    }
    outcomes = {
        "job_ok": [{"id": "e1"}, {"id": "e1"}],  # repeated with the same id: fine
        "job_stuck": [],
        "job_twice": [{"id": "e3"}, {"id": "e4"}],
        "job_over": [{"id": "e5"}],
    }
    tasks = [
        {"id": "t1", "external_id": "job_ok.c0-0"},
        {"id": "t9", "external_id": "job_over.c0-0"},  # created, never recorded
        {"id": "t7", "external_id": "job_of_another_row.c0-0"},
    ]
    counts = count(jobs, outcomes, tasks, dead_letters=0)
    assert counts.problems() == {
        "jobs_lost": 1,
        "conflicting_outcomes": 1,
        "unrecorded_paid_tasks": 1,
        "budget_overruns": 1,
    }
    assert counts.repeated_outcome_events == 1 and counts.completed == 2


def test_every_fault_point_has_a_row_and_every_row_a_distinct_id() -> None:
    from shared.faultpoints import POINTS

    assert {row.point for row in ROWS if row.point} == set(POINTS)
    assert len({row.id for row in ROWS}) == len(ROWS)
