"""The fault matrix: rows of faults, a run of N jobs per row, and what each row must not lose.

A row injects one fault into a run of N jobs on the whole pipeline (every service a real
process) running on PRIVATE Kafka, PostgreSQL and MinIO instances (`deploy.localinfra.private`),
so a row can stop a server without disturbing anyone else, and the DLQs and the outcome topic
hold only this run's records. Faults:

* `kill`: a named fault point (`shared.faultpoints`) is armed; the first process to reach it
  SIGKILLs itself there; the supervisor restarts whatever died;
* `outage`: once a job is rendering, a server is stopped, held down until a service's
  `/health/ready` reports it failing and for `outage_s` more, then started again;
* `provider`: the emulator's fault rates (429 with Retry-After, 5xx, an answer lost after the
  create was accepted, malformed status bodies, truncated downloads, expired result URLs).

Per row it counts (`Counts`), and every count but the informational ones must be 0.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.jobs import TERMINAL_STATES


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # kill | outage | provider | none
    point: str | None = None  # kill: the fault point armed
    server: str | None = None  # outage: postgres | kafka | minio
    emulator: dict[str, Any] = field(default_factory=dict)  # provider: emulator config
    outage_s: float = 4.0

    @property
    def id(self) -> str:
        return self.point or self.server or "-".join(sorted(self.emulator)) or self.kind


ROWS: tuple[Row, ...] = (
    Row("no fault (baseline)", "none"),
    Row("SIGKILL intake after the job is stored, before the answer", "kill", "intake.after_create"),
    Row(
        "SIGKILL dispatcher after the provider accepted the create",
        "kill",
        "dispatcher.after_create_accepted",
    ),
    Row("SIGKILL poller after the success is stored", "kill", "poller.after_success"),
    Row(
        "SIGKILL the outbox relay after the publish, before the delete",
        "kill",
        "outbox.after_publish",
    ),
    Row("SIGKILL storage mid-upload", "kill", "storage.mid_upload"),
    Row(
        "SIGKILL notifier after the delivery, before it is marked",
        "kill",
        "notifier.after_delivery",
    ),
    Row("job store (PostgreSQL) stopped mid-run", "outage", server="postgres"),
    Row("broker (Kafka) stopped mid-run", "outage", server="kafka"),
    Row("object store (MinIO) stopped mid-run", "outage", server="minio"),
    Row("provider 429 with Retry-After (30% of calls)", "provider", emulator={"rate_429": 0.3}),
    Row("provider 5xx (30% of calls)", "provider", emulator={"rate_5xx": 0.3}),
    Row(
        "create accepted, answer lost (timeout; 50% of creates)",
        "provider",
        emulator={"rate_answer_lost": 0.5, "answer_lost_seconds": 0.5},
    ),
    Row("malformed status bodies (30%)", "provider", emulator={"rate_malformed": 0.3}),
    Row("truncated downloads (50%)", "provider", emulator={"rate_truncated_download": 0.5}),
    Row("expired result URLs (50%)", "provider", emulator={"rate_expired": 0.5}),
)


@dataclass
class Counts:
    """What one row lost. The first six must be 0; the rest describe the run."""

    jobs_lost: int = 0  # no terminal state, or no outcome event on jobs-finished
    conflicting_outcomes: int = 0  # jobs whose outcome events carry more than one id
    unrecorded_paid_tasks: int = 0  # provider tasks of these jobs no attempt records
    budget_overruns: int = 0  # jobs whose spend exceeds their budget
    dead_letters: int = 0  # DLQ records written during the row (none is poison here)
    webhooks_missing: int = 0  # jobs whose signed webhook never reached the receiver
    jobs: int = 0
    completed: int = 0
    repeated_outcome_events: int = 0  # same id again (at-least-once; consumers de-duplicate)
    restarts: int = 0
    fired: bool = True  # kill rows: the fault point was reached
    health_reported: bool = True  # outage rows: a service's /health/ready said so
    provider_calls: str = (
        ""  # Kling creates/status/downloads seen by the emulator: the faults' trace
    )
    failed_attempts: int = 0  # attempts that did not succeed (retried or fell back)

    MUST_BE_ZERO = (
        "jobs_lost",
        "conflicting_outcomes",
        "unrecorded_paid_tasks",
        "budget_overruns",
        "dead_letters",
        "webhooks_missing",
    )

    def problems(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.MUST_BE_ZERO if getattr(self, name)}


def count(
    jobs: dict[str, dict[str, Any]],
    outcomes: dict[str, list[dict[str, Any]]],
    tasks: list[dict[str, Any]],
    dead_letters: int,
) -> Counts:
    """`jobs`: the API's view of each job at the end; `outcomes`: jobs-finished events by job;
    `tasks`: the emulator's created tasks (its admin view); `dead_letters`: DLQ records."""
    counts = Counts(jobs=len(jobs), dead_letters=dead_letters)
    recorded: dict[str, set[str]] = defaultdict(set)
    for job_id, job in jobs.items():
        events = outcomes.get(job_id, [])
        ids = {e["id"] for e in events}
        if job.get("state") not in {s.value for s in TERMINAL_STATES} or not events:
            counts.jobs_lost += 1
        counts.conflicting_outcomes += len(ids) > 1
        counts.repeated_outcome_events += len(events) - len(ids)
        counts.completed += job.get("state") == "completed"
        budget = job.get("request", {}).get("budget_usd")
        if budget is not None and float(job.get("spent_usd") or 0.0) > budget + 1e-9:
            counts.budget_overruns += 1
        for attempt in job.get("attempts", []):
            counts.failed_attempts += attempt.get("state") in ("failed", "unknown")
            if attempt.get("task"):
                recorded[job_id].add(attempt["task"]["task_id"])
    for task in tasks:
        job_id = (task.get("external_id") or "").split(".")[0]
        if job_id in jobs and task["id"] not in recorded[job_id]:
            counts.unrecorded_paid_tasks += 1
    return counts


def write_results(path: Path, n: int, results: dict[str, Counts]) -> None:
    """The run's table as JSON (`python -m deploy.docs` renders it into the README)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {"row": row.name, "kind": row.kind, **asdict(results[row.name])}
        for row in ROWS
        if row.name in results
    ]
    path.write_text(json.dumps({"jobs_per_row": n, "rows": rows}, indent=1) + "\n")
