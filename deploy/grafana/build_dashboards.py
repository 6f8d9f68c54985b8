"""Writes the Grafana dashboards in deploy/grafana/dashboards/ (run after editing this file):

    python -m deploy.grafana.build_dashboards

The JSON files are committed (Grafana's provisioning reads them) and a unit test checks they
match this source. Every panel queries the provisioned Prometheus datasource by uid; the e2e
test evaluates every expression against a real Prometheus scraping a real run. No template
variables: the expressions stay plain PromQL that the test can send as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "reelforge-prometheus"}
OUT = Path(__file__).resolve().parent / "dashboards"
NON_TERMINAL = "accepted|queued|submitting|running|storing|scoring"


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[tuple[str, str], ...]  # (expr, legend)
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""
    width: int = 12


def quantiles(
    metric: str, by: str, window: str = "5m", qs: tuple[float, ...] = (0.5, 0.95), legend: str = ""
) -> tuple[tuple[str, str], ...]:
    """One target per quantile of a classic histogram, aggregated over replicas."""
    return tuple(
        (
            f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket[{window}])))",
            f"p{round(q * 100)} {legend}".strip(),
        )
        for q in qs
    )


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["reelforge"],
            "timezone": "browser",
            "editable": True,
            "schemaVersion": 39,
            "version": 1,
            "refresh": "30s",
            "graphTooltip": 1,
            "time": {"from": "now-1h", "to": "now"},
            "templating": {"list": []},
            "annotations": {"list": []},
            "links": [],
            "panels": [self._panel(i, p) for i, p in enumerate(self.panels)],
        }

    def _panel(self, index: int, p: Panel) -> dict[str, Any]:
        x = sum(q.width for q in self.panels[:index]) % 24
        y = sum(q.width for q in self.panels[:index]) // 24 * 8
        panel: dict[str, Any] = {
            "id": index + 1,
            "type": p.kind,
            "title": p.title,
            "description": p.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": 8, "w": p.width, "x": x, "y": y},
            "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
            "targets": [
                {
                    "refId": chr(ord("A") + i),
                    "datasource": DATASOURCE,
                    "expr": expr,
                    "legendFormat": legend,
                    "range": True,
                }
                for i, (expr, legend) in enumerate(p.targets)
            ],
        }
        if p.kind == "timeseries":
            panel["options"] = {
                "legend": {"displayMode": "list", "placement": "bottom"},
                "tooltip": {"mode": "multi"},
            }
        return panel


def rate(metric: str, by: str, window: str = "5m") -> str:
    return f"sum by ({by}) (rate({metric}[{window}]))"


def T(expr: str, legend: str) -> tuple[str, str]:  # reads like a table row
    return (expr, legend)


FINISHED = 'state=~"completed|failed|cancelled"'
LAG = "group_topic:reelforge_consumer_lag_messages:max"
DELIVERIES = "outcome:reelforge_webhook_deliveries:rate5m"
TRANSITIONS = "state:reelforge_job_transitions:rate5m"
TENANT_LIMITED = "sum by (tenant, limit) (increase(reelforge_tenant_limited_total[1h]))"


def overview() -> Dashboard:
    scored = "reelforge_candidates_scored_total"
    return Dashboard(
        "reelforge-overview",
        "Reelforge / Pipeline overview",
        "Jobs in, jobs out, where they are and how long they take.",
        [
            Panel(
                "Jobs created",
                (T(rate("reelforge_jobs_created_total", "source"), "{{source}}"),),
                "reqps",
                description="Accepted jobs per second, by how they arrived.",
            ),
            Panel(
                "Jobs finished",
                (T(f"{TRANSITIONS}{{{FINISHED}}}", "{{state}}"),),
                "reqps",
                description="Jobs reaching a terminal state.",
            ),
            Panel(
                "Jobs rejected at intake",
                (T(rate("reelforge_jobs_rejected_total", "reason"), "{{reason}}"),),
                "reqps",
            ),
            Panel(
                "Tenant limits",
                (
                    T(TENANT_LIMITED, "429 {{tenant}} {{limit}}"),
                    T("max by (tenant) (reelforge_tenant_active_jobs)", "active {{tenant}}"),
                ),
                description="Requests refused by a per-tenant limit (last hour), and active jobs "
                "per tenant as intake last counted them.",
            ),
            Panel(
                "Jobs by state",
                (T(f'state:reelforge_jobs_in_state:max{{state=~"{NON_TERMINAL}"}}', "{{state}}"),),
                description="Sampled by the reconciler from the job store.",
            ),
            Panel(
                "End-to-end job duration",
                quantiles(
                    "reelforge_job_duration_seconds",
                    "outcome",
                    qs=(0.5, 0.95, 0.99),
                    legend="{{outcome}}",
                ),
                "s",
            ),
            Panel(
                "Pipeline overhead",
                quantiles("reelforge_pipeline_overhead_seconds", "job"),
                "s",
                description="Job time not spent at the provider: queueing, routing, re-hosting.",
            ),
            Panel(
                "Job failure ratio",
                (
                    T(
                        f'(sum({TRANSITIONS}{{state="failed"}}) or vector(0)) '
                        f'/ sum({TRANSITIONS}{{state=~"completed|failed"}})',
                        "failed",
                    ),
                ),
                "percentunit",
            ),
            Panel(
                "QC candidate acceptance",
                (
                    T(
                        f'(sum(rate({scored}{{verdict="qualified"}}[1h])) or vector(0)) '
                        f"/ sum(rate({scored}[1h]))",
                        "qualified",
                    ),
                ),
                "percentunit",
                description="Share of scored candidates that pass QC.",
            ),
            Panel(
                "Services up",
                (T('up{job!="prometheus"}', "{{job}} {{instance}}"),),
                kind="stat",
                description="1 = scraped; see the ServiceDown alert.",
            ),
            Panel(
                "Firing alerts",
                (
                    T(
                        'sum by (alertname, severity) (ALERTS{alertstate="firing"})',
                        "{{alertname}} ({{severity}})",
                    ),
                ),
                kind="stat",
            ),
        ],
    )


def providers() -> Dashboard:
    pm = "{{provider}}/{{model}}"
    return Dashboard(
        "reelforge-providers",
        "Reelforge / Providers: health and cost",
        "Per-provider calls, failures, timings and spend.",
        [
            Panel(
                "Provider API calls",
                (
                    T(
                        rate("reelforge_provider_requests_total", "provider, operation, outcome"),
                        "{{provider}} {{operation}} {{outcome}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Provider API latency",
                quantiles(
                    "reelforge_provider_request_seconds",
                    "provider, operation",
                    qs=(0.95,),
                    legend="{{provider}} {{operation}}",
                ),
                "s",
            ),
            Panel(
                "Task failure ratio",
                (T("provider:reelforge_provider_failure_ratio:rate5m", "{{provider}}"),),
                "percentunit",
                description="Failed / ended provider tasks (alert above 20%).",
            ),
            Panel(
                "Failures by class",
                (
                    T(
                        "provider_failure_class:reelforge_provider_failures:rate5m",
                        "{{provider}} {{failure_class}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Queue vs render time (p95)",
                (
                    T("provider_model:reelforge_provider_queue_seconds:p95_5m", f"queue {pm}"),
                    T("provider_model:reelforge_provider_render_seconds:p95_5m", f"render {pm}"),
                ),
                "s",
                description="Queue: submit to RUNNING seen; render: submit to result.",
            ),
            Panel(
                "Poll calls",
                (
                    T(
                        rate("reelforge_poll_calls_total", "provider, outcome"),
                        "{{provider}} {{outcome}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Provider webhook hints",
                (
                    T(
                        rate("reelforge_webhook_hints_total", "provider, outcome"),
                        "{{provider}} {{outcome}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Completion detection delay (p95)",
                quantiles(
                    "reelforge_completion_detection_seconds",
                    "provider, via",
                    qs=(0.95,),
                    legend="{{provider}} via {{via}}",
                ),
                "s",
            ),
            Panel(
                "Spend per hour",
                (
                    T(
                        rate("reelforge_cost_usd_total", "provider, model, outcome", "1h")
                        + " * 3600",
                        f"{pm} {{{{outcome}}}}",
                    ),
                ),
                "currencyUSD",
            ),
            Panel(
                "Cost per job",
                quantiles("reelforge_job_cost_usd", "outcome", window="1h", legend="{{outcome}}"),
                "currencyUSD",
            ),
            Panel(
                "Cost per accepted second of video",
                (T("provider_model:reelforge_cost_per_accepted_second_usd:ratio_1h", pm),),
                "currencyUSD",
                description="All spend (kept, discarded, failed) / seconds delivered.",
            ),
            Panel(
                "In-flight tasks",
                (T("sum by (provider) (reelforge_inflight_tasks)", "{{provider}}"),),
            ),
            Panel(
                "Jobs waiting for a provider slot",
                (T("max by (provider) (reelforge_admission_waiting_jobs)", "{{provider}}"),),
            ),
            Panel(
                "Partitions owned by pollers",
                (T("sum by (provider) (reelforge_poller_owned_partitions)", "{{provider}}"),),
                description="Summed over replicas: the provider topic's partition count.",
            ),
        ],
    )


def kafka() -> Dashboard:
    handler = "{{app_name}} {{handler}}"
    return Dashboard(
        "reelforge-kafka",
        "Reelforge / Kafka consumer lag",
        "Lag per consumer group (measured by the reconciler) and faststream's message metrics.",
        [
            Panel("Consumer lag by group and topic", (T(LAG, "{{group}} / {{topic}}"),), width=24),
            Panel(
                "Max lag per group",
                (T("max by (group) (reelforge_consumer_lag_messages)", "{{group}}"),),
            ),
            Panel(
                "Messages processed",
                (
                    T(
                        rate(
                            "faststream_received_processed_messages_total",
                            "app_name, handler, status",
                        ),
                        f"{handler} {{{{status}}}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Processing time (p95)",
                quantiles(
                    "faststream_received_processed_messages_duration_seconds",
                    "app_name, handler",
                    qs=(0.95,),
                    legend=handler,
                ),
                "s",
            ),
            Panel(
                "Handler exceptions",
                (
                    T(
                        rate(
                            "faststream_received_processed_messages_exceptions_total",
                            "app_name, handler, exception_type",
                        ),
                        "{{app_name}} {{exception_type}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Messages published",
                (
                    T(
                        rate(
                            "faststream_published_messages_total", "app_name, destination, status"
                        ),
                        "{{app_name}} -> {{destination}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Messages in process",
                (
                    T(
                        "sum by (app_name, handler) (faststream_received_messages_in_process)",
                        handler,
                    ),
                ),
            ),
            Panel(
                "Dead letters (last hour)",
                (
                    T(
                        "sum by (topic, error_type) (increase(reelforge_dead_letters_total[1h]))",
                        "{{topic}} {{error_type}}",
                    ),
                ),
                width=24,
            ),
        ],
    )


def storage() -> Dashboard:
    margin = "reelforge_url_expiry_margin_seconds_bucket"
    return Dashboard(
        "reelforge-storage",
        "Reelforge / Storage",
        "Re-hosting provider results before their URLs expire.",
        [
            Panel(
                "Re-host throughput",
                (T(rate("reelforge_rehost_bytes_total", "provider"), "{{provider}}"),),
                "Bps",
            ),
            Panel(
                "Re-host duration",
                quantiles("reelforge_rehost_seconds", "provider", legend="{{provider}}"),
                "s",
            ),
            Panel(
                "URL expiry margin (p5, lowest)",
                (
                    T(
                        f"histogram_quantile(0.05, sum by (provider, le) (rate({margin}[1h])))",
                        "{{provider}}",
                    ),
                ),
                "s",
                description="Time left on the provider URL when the copy finished.",
            ),
            Panel(
                "Re-hosts with < 5 min to spare (last hour)",
                (
                    T(
                        f'sum by (provider) (increase({margin}{{le=~"300(\\\\.0)?"}}[1h]))',
                        "{{provider}}",
                    ),
                ),
            ),
            Panel(
                "URL expiry misses (last hour)",
                (
                    T(
                        "sum by (provider) (increase(reelforge_url_expiry_misses_total[1h]))",
                        "{{provider}}",
                    ),
                ),
            ),
            Panel(
                "Stored video size",
                quantiles(
                    "reelforge_video_size_bytes", "provider", window="1h", legend="{{provider}}"
                ),
                "bytes",
            ),
            Panel("Storage consumer lag", (T(f'{LAG}{{group="storage"}}', "{{topic}}"),), width=24),
        ],
    )


def notifications() -> Dashboard:
    return Dashboard(
        "reelforge-notifications",
        "Reelforge / Notifications",
        "Signed completion webhooks to callers, and dead-lettered messages.",
        [
            Panel("Delivery attempts", (T(DELIVERIES, "{{outcome}}"),), "reqps"),
            Panel(
                "Delivery failure ratio",
                (
                    T(
                        f'(sum({DELIVERIES}{{outcome=~"retry|dead"}}) or vector(0))'
                        f" / sum({DELIVERIES})",
                        "failing",
                    ),
                ),
                "percentunit",
            ),
            Panel(
                "Delivery lag (outcome to delivered)",
                quantiles("reelforge_webhook_delivery_lag_seconds", "job"),
                "s",
            ),
            Panel(
                "Deliveries waiting for a retry", (T(":reelforge_webhook_pending:max", "pending"),)
            ),
            Panel(
                "Deliveries given up (last hour)",
                (
                    T(
                        'sum(increase(reelforge_webhook_deliveries_total{outcome="dead"}[1h]))',
                        "dead",
                    ),
                ),
            ),
            Panel("Notifier consumer lag", (T(f'{LAG}{{group="notifier"}}', "{{topic}}"),)),
            Panel(
                "Dead-lettered messages (DLQ), total",
                (
                    T(
                        "sum by (topic, error_type) (reelforge_dead_letters_total)",
                        "{{topic}} {{error_type}}",
                    ),
                ),
                width=24,
            ),
        ],
    )


DASHBOARDS = (overview, providers, kafka, storage, notifications)


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    boards = [build() for build in DASHBOARDS]
    return {f"{d.uid}.json": json.dumps(d.to_json(), indent=2) + "\n" for d in boards}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
