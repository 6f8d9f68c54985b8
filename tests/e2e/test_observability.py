"""Issue 6's proof: a real Prometheus (Debian's, started by deploy.localinfra with
deploy/prometheus/prometheus.local.yml) scrapes the real services during a run of jobs; then
EVERY PromQL expression of every dashboard panel and every rule is evaluated through its HTTP
API. Any invalid expression fails the test, and so does an empty result, except for the
expressions in ALLOWED_EMPTY below (each with the reason a short, healthy run has no data).

The run: a completed OpenAI job with a caller webhook (provider webhook hints, re-host,
notifier delivery), a completed Kling job (poll path), a Runway job failed by the emulator's
`[fail:moderation_output]` trigger, an Idempotency-Key conflict (a rejection), and, when the QC
service is part of the stack, a two-candidate job (QC verdicts).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deploy.grafana import build_dashboards
from deploy.localinfra.config import Layout
from deploy.localinfra.prometheus import reload_config
from deploy.stack import Stack
from tests.e2e.conftest import A, Receiver, wait_job

pytestmark = pytest.mark.e2e

PROMETHEUS = os.environ.get("PROMETHEUS_URL", "http://127.0.0.1:19090").rstrip("/")
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"
SCRAPE_INTERVAL_S = 5.0
QC_ONLY = "needs QC verdicts: only when the qc service runs a multi-candidate job"

# Expressions that may legitimately return no series after a short, healthy run. Alert
# conditions are all allowed to be empty (a healthy run fires none; they are checked for
# validity here and for firing/not firing by promtool's unit tests).
ALLOWED_EMPTY: dict[str, str] = {
    'sum by (alertname, severity) (ALERTS{alertstate="firing"})': (
        "no alert needs to fire in a healthy run"
    ),
    "sum by (app_name, handler, exception_type) "
    "(rate(faststream_received_processed_messages_exceptions_total[5m]))": (
        "no handler raised: the series only exists after an exception"
    ),
    "sum by (topic, error_type) (increase(reelforge_dead_letters_total[1h]))": (
        "nothing was dead-lettered"
    ),
    "sum by (topic, error_type) (reelforge_dead_letters_total)": "nothing was dead-lettered",
    "sum by (provider) (increase(reelforge_url_expiry_misses_total[1h]))": (
        "every result was re-hosted before its URL expired"
    ),
    'sum(increase(reelforge_webhook_deliveries_total{outcome="dead"}[1h]))': (
        "no delivery exhausted its retries"
    ),
    "sum by (tenant, limit) (increase(reelforge_tenant_limited_total[1h]))": (
        "no tenant reached a per-tenant limit"
    ),
}
# The QC job only has to be judged: at the emulator's reduced test resolution QC may reject
# every candidate, which is a verdict too.
WANT = {
    "openai": {"completed"},
    "kling": {"completed"},
    "failed": {"failed"},
    "qc": {"completed", "failed"},
}
QC_EXPRS = {
    '(sum(rate(reelforge_candidates_scored_total{verdict="qualified"}[1h])) or vector(0)) '
    "/ sum(rate(reelforge_candidates_scored_total[1h]))",
}


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, expr) for every target of every dashboard."""
    found = []
    for build in build_dashboards.DASHBOARDS:
        board = build().to_json()
        for panel in board["panels"]:
            for target in panel["targets"]:
                where = f"{board['uid']} / {panel['title']} / {target['refId']}"
                found.append((where, target["expr"]))
    return found


def rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in sorted(RULES.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


async def query(client: httpx.AsyncClient, expr: str) -> dict[str, Any]:
    response = await client.get(f"{PROMETHEUS}/api/v1/query", params={"query": expr})
    body: dict[str, Any] = response.json()
    return body


async def value(client: httpx.AsyncClient, expr: str) -> float:
    result = (await query(client, expr)).get("data", {}).get("result", [])
    return float(result[0]["value"][1]) if result else 0.0


async def load_local_config(client: httpx.AsyncClient, stack: Stack) -> None:
    """Make Prometheus (re)read prometheus.local.yml, then wait until it scrapes the stack.
    It runs without the HTTP lifecycle API, so the reload is a SIGHUP to the one we started."""
    if not reload_config(Layout.from_env(os.environ)):
        pytest.fail("no Prometheus of ours runs (python -m deploy.localinfra up prometheus)")
    jobs = {name for name in stack.specs if name != "emulator"}
    deadline = time.monotonic() + 30
    up: set[str] = set()
    while time.monotonic() < deadline:
        targets = (await client.get(f"{PROMETHEUS}/api/v1/targets")).json()["data"]["activeTargets"]
        up = {t["labels"]["job"] for t in targets if t["health"] == "up"}
        if jobs <= up:
            return
        await asyncio.sleep(1)
    pytest.fail(f"Prometheus does not scrape {sorted(jobs - up)}")


async def run_jobs(api: httpx.AsyncClient, receiver: Receiver, with_qc: bool) -> dict[str, str]:
    def body(prompt: str, provider: str, **extra: object) -> dict[str, object]:
        return {
            "prompt": prompt,
            "duration_s": 4,
            "policy": "explicit",
            "provider": provider,
            **extra,
        }

    requests = {
        "openai": body("a paper boat on a pond", "openai", callback_url=receiver.url),
        "kling": body("a lantern in the fog", "kling"),
        "failed": body("a storm [fail:moderation_output]", "runway", allow_fallback=False),
    }
    if with_qc:
        requests["qc"] = body("a kite over dunes", "kling", candidates=2)
    ids = {}
    for name, request in requests.items():
        created = await api.post("/v1/jobs", json=request, headers=A)
        assert created.status_code == 202, created.text
        ids[name] = created.json()["job_id"]
    key = {"Idempotency-Key": f"obs-{secrets.token_hex(4)}", **A}
    assert (await api.post("/v1/jobs", json=body("one", "kling"), headers=key)).status_code == 202
    assert (await api.post("/v1/jobs", json=body("two", "kling"), headers=key)).status_code == 409
    return ids


async def wait_until_scraped(client: httpx.AsyncClient, completed: int, failed: int) -> None:
    """Until Prometheus holds the run's outcomes, then two more scrapes and rule evaluations,
    so every rate() has two samples after the last change."""
    checks = {
        'sum(reelforge_job_transitions_total{state="completed"})': completed,
        'sum(reelforge_job_transitions_total{state="failed"})': failed,
        'sum(reelforge_webhook_deliveries_total{outcome="delivered"})': 1,
        "count(reelforge_consumer_lag_messages)": 1,
    }
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        if all([await value(client, expr) >= want for expr, want in checks.items()]):
            await asyncio.sleep(2 * SCRAPE_INTERVAL_S + 2)
            return
        await asyncio.sleep(1)
    missing = [e for e, want in checks.items() if await value(client, e) < want]
    pytest.fail(f"Prometheus never saw the run's outcomes: {missing}")


@pytest.mark.timeout(240)
async def test_every_dashboard_and_rule_expression_is_valid_and_has_data_after_a_run(
    stack: Stack,
    api: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    with_qc = "qc" in stack.specs
    async with httpx.AsyncClient(timeout=10) as prom:
        await load_local_config(prom, stack)
        ids = await run_jobs(api, receiver, with_qc)
        ended = {}
        for name, job_id in ids.items():
            job = await wait_job(api, job_id, {"completed", "failed", "cancelled"}, timeout=120)
            ended[name] = job["state"]
            assert job["state"] in WANT[name], f"{name}: {job['state']} {job.get('failure')}"
        await wait_until_scraped(
            prom,
            completed=list(ended.values()).count("completed"),
            failed=list(ended.values()).count("failed"),
        )

        allowed = dict(ALLOWED_EMPTY) | ({} if with_qc else dict.fromkeys(QC_EXPRS, QC_ONLY))
        expressions = dashboard_exprs()
        for rule in rules():
            if "record" in rule:
                expressions += [
                    (f"record {rule['record']}", rule["expr"]),
                    (f"recorded series {rule['record']}", rule["record"]),
                ]
            else:
                expressions.append((f"alert {rule['alert']}", rule["expr"]))
                allowed[rule["expr"]] = "an alert condition: empty while the system is healthy"

        invalid, empty = [], []
        for where, expr in expressions:
            answer = await query(prom, expr)
            if answer.get("status") != "success":
                invalid.append(f"{where}: {answer.get('errorType')}: {answer.get('error')}")
            elif not answer["data"]["result"] and expr not in allowed:
                empty.append(f"{where}: {expr}")
    assert not invalid, "invalid PromQL:\n" + "\n".join(invalid)
    assert not empty, "no series although the run must have produced data:\n" + "\n".join(empty)
    stale = set(ALLOWED_EMPTY) - {e for _, e in expressions}
    assert not stale, f"ALLOWED_EMPTY names expressions no dashboard or rule has: {stale}"
