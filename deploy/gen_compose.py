"""Generate docker-compose.yml from the same service list as the local stack runner, so the
two never drift (a test checks the committed file is current: `python -m deploy.gen_compose`)."""

from __future__ import annotations

import sys
from typing import Any

import yaml

from deploy.stack import ROOT, default_specs


def required(name: str) -> str:
    """A secret compose must be given: `docker compose` stops with this message when unset."""
    return f"${{{name}:?set {name} (see README, Security); compose has no default secrets}}"


# Secrets come from the environment or an `.env` file beside docker-compose.yml; nothing runs
# with the demo values the local defaults use.
SECRETS_ENV = {
    "API_KEYS": required("API_KEYS"),
    "WEBHOOK_MASTER_SECRET": required("WEBHOOK_MASTER_SECRET"),
    "CALLBACK_TOKEN": required("CALLBACK_TOKEN"),
    "NOTIFIER_ADMIN_TOKEN": required("NOTIFIER_ADMIN_TOKEN"),
}
INFRA_ENV = {
    "REELFORGE_ENV": "${REELFORGE_ENV:-development}",
    "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
    # Production keeps MongoDB (the official image): the scheme picks the MongoDB adapter.
    "JOB_STORE_URI": "mongodb://mongo:27017/",
    "S3_ENDPOINT": "http://minio:9000",
    "S3_ACCESS_KEY": required("S3_ACCESS_KEY"),
    "S3_SECRET_KEY": required("S3_SECRET_KEY"),
}
EMULATOR = "http://emulator:8090"
PROVIDERS_ENV = {
    "OPENAI_BASE_URL": f"{EMULATOR}/openai/v1",
    "GEMINI_BASE_URL": f"{EMULATOR}/gemini",
    "VERTEX_BASE_URL": f"{EMULATOR}/vertex",
    "VERTEX_GCS_BASE_URL": f"{EMULATOR}/vertex/gcs",
    "RUNWAY_BASE_URL": f"{EMULATOR}/runway",
    "KLING_BASE_URL": f"{EMULATOR}/kling",
    "FAL_QUEUE_BASE_URL": f"{EMULATOR}/fal/queue",
    "REPLICATE_BASE_URL": f"{EMULATOR}/replicate",
    "CALLBACK_BASE_URL": "http://intake:8080",
}
# The compose demo's emulator and receivers live on docker's private network, not on loopback.
# For the demo only: production mode refuses any EGRESS_ALLOW, so set it empty there
# (`EGRESS_ALLOW=` in .env; README, "Egress policy").
COMPOSE_EGRESS_ALLOW = "${EGRESS_ALLOW-10.0.0.0/8,172.16.0.0/12,192.168.0.0/16}"


def _health(port: int, path: str = "/health") -> dict[str, Any]:
    probe = f"import urllib.request as u; u.urlopen('http://127.0.0.1:{port}{path}', timeout=3)"
    return {
        "test": ["CMD", "python", "-c", probe],
        "interval": "10s",
        "timeout": "5s",
        "retries": 5,
    }


def _infra() -> dict[str, Any]:
    return {
        "kafka": {
            "image": "apache/kafka:3.9.1",
            "environment": {
                "KAFKA_NODE_ID": "1",
                "KAFKA_PROCESS_ROLES": "broker,controller",
                "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
                "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://kafka:9092",
                "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka:9093",
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
                "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
                "KAFKA_NUM_PARTITIONS": "6",
            },
            "healthcheck": {
                "test": [
                    "CMD-SHELL",
                    "/opt/kafka/bin/kafka-broker-api-versions.sh "
                    "--bootstrap-server localhost:9092 >/dev/null",
                ],
                "interval": "10s",
                "timeout": "10s",
                "retries": 10,
            },
        },
        "mongo": {
            "image": "mongo:8.0",
            "volumes": ["mongo-data:/data/db"],
            "healthcheck": {
                "test": ["CMD", "mongosh", "--quiet", "--eval", "db.adminCommand('ping')"],
                "interval": "10s",
                "timeout": "5s",
                "retries": 10,
            },
        },
        "minio": {
            "image": "minio/minio:latest",
            "command": ["server", "/data", "--console-address", ":9001"],
            "environment": {
                "MINIO_ROOT_USER": required("S3_ACCESS_KEY"),
                "MINIO_ROOT_PASSWORD": required("S3_SECRET_KEY"),
            },
            "volumes": ["minio-data:/data"],
            "ports": ["9000:9000", "9001:9001"],
            "healthcheck": {
                "test": ["CMD", "mc", "ready", "local"],
                "interval": "10s",
                "timeout": "5s",
                "retries": 10,
            },
        },
        "prometheus": {
            "image": "prom/prometheus:v2.53.0",
            # No --web.enable-lifecycle: nothing on the network may stop or reload Prometheus
            # (restart the container to apply a changed config).
            "command": ["--config.file=/etc/prometheus/prometheus.yml"],
            "volumes": [
                "./deploy/prometheus/prometheus.compose.yml:/etc/prometheus/prometheus.yml:ro",
                "./deploy/prometheus/rules:/etc/prometheus/rules:ro",
            ],
            "ports": ["9090:9090"],
        },
        "grafana": {
            "image": "grafana/grafana:11.2.0",
            "environment": {
                "GF_AUTH_ANONYMOUS_ENABLED": "true",
                "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer",
            },
            "volumes": [
                "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro",
                "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro",
            ],
            "ports": ["3000:3000"],
            "depends_on": ["prometheus"],
        },
    }


def compose() -> dict[str, Any]:
    infra_ready = {name: {"condition": "service_healthy"} for name in ("kafka", "mongo", "minio")}
    services: dict[str, Any] = _infra()
    services["topics"] = {
        "image": "reelforge:latest",
        "build": {"context": ".", "dockerfile": "deploy/Dockerfile"},
        "command": ["python", "-m", "deploy.create_topics"],
        "environment": INFRA_ENV,
        "depends_on": {"kafka": {"condition": "service_healthy"}},
        "restart": "on-failure",
    }
    for spec in default_specs(render_seconds=20.0):
        env = {k: v for k, v in spec.env.items() if not k.endswith("_METRICS_PORT")}
        if "EGRESS_ALLOW" in env:
            env["EGRESS_ALLOW"] = COMPOSE_EGRESS_ALLOW
        health = "/_emulator/health" if spec.name == "emulator" else "/health"
        entry: dict[str, Any] = {
            "image": "reelforge:latest",
            "command": ["python", "-m", spec.module],
            "environment": {
                **INFRA_ENV,
                **SECRETS_ENV,
                **PROVIDERS_ENV,
                **env,
                f"{spec.module.split('.')[-1].upper()}_METRICS_PORT": str(spec.port),
            },
            "healthcheck": _health(spec.port, health),
            "restart": "unless-stopped",
        }
        if spec.name == "emulator":
            entry["environment"] = {
                **env,
                "EMULATOR_HOST": "0.0.0.0",
                "EMULATOR_OPENAI_WEBHOOK_URL": "http://intake:8080/hooks/openai",
                "EMULATOR_GEMINI_WEBHOOK_URL": "http://intake:8080/hooks/gemini",
            }
        else:
            entry["depends_on"] = {
                **infra_ready,
                "topics": {"condition": "service_completed_successfully"},
            }
        if spec.name in ("intake", "emulator", "qc"):
            entry["ports"] = [f"{spec.port}:{spec.port}"]
        services[spec.name] = entry
    return {"services": services, "volumes": {"mongo-data": {}, "minio-data": {}}}


def render() -> str:
    header = (
        "# Generated by `python -m deploy.gen_compose` from deploy/stack.py; do not edit by hand.\n"
        "# Production-like run with the official images: `docker compose up --build`.\n"
    )
    return header + str(yaml.safe_dump(compose(), sort_keys=False, width=120))


def main() -> int:
    (ROOT / "docker-compose.yml").write_text(render())
    print("wrote docker-compose.yml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
