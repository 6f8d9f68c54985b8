"""Every Prometheus metric of the project, defined once, each with its help text.

`ServiceMetrics(registry)` builds them on an explicit `CollectorRegistry` (no global
registry, so tests build a fresh one and assert with `registry.get_sample_value`). Names
follow Prometheus conventions: `reelforge_` prefix, `_total` counters, base units (seconds,
bytes, USD). Label values are bounded sets (provider, model, state, failure class...),
never job or tenant ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
RENDER_BUCKETS = (1, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600, 1200)
SIZE_BUCKETS = (1e5, 1e6, 1e7, 5e7, 1e8, 5e8, 1e9, 5e9)
COST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20)


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.registry = registry
        self.service = service

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=registry)

        def histogram(
            name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
        ) -> Histogram:
            return Histogram(name, doc, labels, registry=registry, buckets=buckets)

        self.up = gauge("reelforge_service_up", "1 while the service runs.", ("service",))
        self.up.labels(service).set(1)
        self.jobs_created = counter(
            "reelforge_jobs_created_total",
            "Jobs accepted (not replays of an idempotency key).",
            ("source",),
        )
        self.jobs_rejected = counter(
            "reelforge_jobs_rejected_total",
            "Job requests refused at intake, by reason.",
            ("reason",),
        )
        self.job_transitions = counter(
            "reelforge_job_transitions_total",
            "Job state changes, by new state and provider.",
            ("state", "provider"),
        )
        self.jobs_in_state = gauge(
            "reelforge_jobs_in_state",
            "Jobs currently in each state (sampled by the reconciler).",
            ("state",),
        )
        self.job_duration = histogram(
            "reelforge_job_duration_seconds",
            "Time from acceptance to outcome.",
            ("outcome",),
            RENDER_BUCKETS,
        )
        self.provider_requests = counter(
            "reelforge_provider_requests_total",
            "Calls to provider APIs, by operation and outcome.",
            ("provider", "operation", "outcome"),
        )
        self.provider_request_seconds = histogram(
            "reelforge_provider_request_seconds",
            "Latency of provider API calls.",
            ("provider", "operation"),
            LATENCY_BUCKETS,
        )
        self.provider_failures = counter(
            "reelforge_provider_failures_total",
            "Failed provider tasks and calls, by failure class.",
            ("provider", "model", "failure_class"),
        )
        self.provider_queue_seconds = histogram(
            "reelforge_provider_queue_seconds",
            "Time a task waited at the provider before running.",
            ("provider", "model"),
            RENDER_BUCKETS,
        )
        self.provider_render_seconds = histogram(
            "reelforge_provider_render_seconds",
            "Time from submission to the provider's result.",
            ("provider", "model"),
            RENDER_BUCKETS,
        )
        self.poll_calls = counter(
            "reelforge_poll_calls_total", "Status calls made by pollers.", ("provider", "outcome")
        )
        self.webhook_hints = counter(
            "reelforge_webhook_hints_total",
            "Provider webhooks received, by outcome.",
            ("provider", "outcome"),
        )
        self.inflight_tasks = gauge(
            "reelforge_inflight_tasks",
            "Provider tasks tracked by this poller replica.",
            ("provider",),
        )
        self.owned_partitions = gauge(
            "reelforge_poller_owned_partitions",
            "Partitions of its provider topic this poller replica owns (and tracks the tasks of).",
            ("provider",),
        )
        self.detection_delay = histogram(
            "reelforge_completion_detection_seconds",
            "Delay between a provider finishing a task and the poller noticing, by how it noticed.",
            ("provider", "via"),
            LATENCY_BUCKETS,
        )
        self.admission_waiting = gauge(
            "reelforge_admission_waiting_jobs",
            "Jobs waiting for a provider concurrency slot.",
            ("provider",),
        )
        self.url_expiry_misses = counter(
            "reelforge_url_expiry_misses_total",
            "Results lost because the provider URL expired.",
            ("provider",),
        )
        self.url_expiry_margin = histogram(
            "reelforge_url_expiry_margin_seconds",
            "Time left before the provider URL expired when the re-host finished.",
            ("provider",),
            (60, 300, 900, 3600, 7200, 21600, 86400, 172800),
        )
        self.rehost_bytes = counter(
            "reelforge_rehost_bytes_total",
            "Bytes copied from providers into the object store.",
            ("provider",),
        )
        self.rehost_seconds = histogram(
            "reelforge_rehost_seconds",
            "Duration of one re-host (download, upload, probe).",
            ("provider",),
            LATENCY_BUCKETS,
        )
        self.video_size = histogram(
            "reelforge_video_size_bytes", "Size of stored videos.", ("provider",), SIZE_BUCKETS
        )
        self.webhook_deliveries = counter(
            "reelforge_webhook_deliveries_total",
            "Outgoing webhook delivery attempts, by outcome.",
            ("outcome",),
        )
        self.webhook_delivery_lag = histogram(
            "reelforge_webhook_delivery_lag_seconds",
            "Time from the job outcome to a successful webhook delivery.",
            (),
            RENDER_BUCKETS,
        )
        self.webhook_pending = gauge(
            "reelforge_webhook_pending", "Webhook deliveries waiting for a retry.", ()
        )
        self.cost_usd = counter(
            "reelforge_cost_usd_total",
            "Provider spend in USD, by whether the result was kept.",
            ("provider", "model", "outcome"),
        )
        self.accepted_video_seconds = counter(
            "reelforge_accepted_video_seconds_total",
            "Seconds of video delivered to callers.",
            ("provider", "model"),
        )
        self.job_cost = histogram(
            "reelforge_job_cost_usd",
            "Total provider spend per finished job.",
            ("outcome",),
            COST_BUCKETS,
        )
        self.unknown_creates = counter(
            "reelforge_unknown_creates_total",
            "Creates whose answer was lost on a provider that cannot find the task by our id: "
            "possibly billed, charged to the job, never sent again.",
            ("provider",),
        )
        self.dead_letters = counter(
            "reelforge_dead_letters_total",
            "Messages sent to a DLQ, by source topic and error.",
            ("topic", "error_type"),
        )
        self.consumer_lag = gauge(
            "reelforge_consumer_lag_messages",
            "Messages behind the log end, per group and topic.",
            ("group", "topic"),
        )
        self.candidates_scored = counter(
            "reelforge_candidates_scored_total", "QC verdicts on candidates.", ("verdict",)
        )
        self.pipeline_overhead = histogram(
            "reelforge_pipeline_overhead_seconds",
            "Job time not spent at the provider (queueing, routing, re-hosting, notifying).",
            (),
            LATENCY_BUCKETS,
        )

    def dead_letter(self, topic: str, error_type: str) -> None:
        self.dead_letters.labels(topic, error_type).inc()
