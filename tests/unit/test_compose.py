"""docker-compose.yml is valid, current, and has an entry for every service the code has."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.gen_compose import render
from shared.topics import PROVIDERS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def services_in_code() -> set[str]:
    names = {p.parent.name for p in (ROOT / "services").glob("*/__main__.py")}
    names -= {"poller", "cli"}
    return names | {f"poller-{p}" for p in PROVIDERS}


def test_compose_file_is_generated_from_the_stack_and_current() -> None:
    assert COMPOSE.read_text() == render(), (
        "run `python -m deploy.gen_compose` and commit the result"
    )


def test_every_service_in_the_code_has_a_compose_entry_running_the_project_image() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in services_in_code():
        assert name in services, f"{name} has no compose entry"
        assert services[name]["image"] == "reelforge:latest"
        assert services[name]["healthcheck"]["test"]


def test_infrastructure_uses_official_images_and_topics_are_created_first() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["mongo"]["image"].startswith("mongo:")
    assert services["minio"]["image"].startswith("minio/minio")
    assert services["topics"]["command"] == ["python", "-m", "deploy.create_topics"]
    assert services["intake"]["depends_on"]["topics"] == {
        "condition": "service_completed_successfully"
    }


SECRETS = ("API_KEYS", "WEBHOOK_MASTER_SECRET", "CALLBACK_TOKEN", "NOTIFIER_ADMIN_TOKEN")
SECRETS += ("S3_ACCESS_KEY", "S3_SECRET_KEY")


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (deploy/system-deps.sh installs Debian's)")
    return subprocess.run(
        [binary, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ["PATH"], **env},
        cwd="/",  # no .env file of the checkout is read
    )


def test_docker_compose_config_accepts_the_file_once_the_secrets_are_set() -> None:
    result = compose_config({name: f"test-{name.lower()}" for name in SECRETS})
    assert result.returncode == 0, result.stderr


def test_docker_compose_refuses_to_run_without_the_secrets() -> None:
    result = compose_config({})
    assert result.returncode != 0
    assert "compose has no default secrets" in result.stderr


def test_no_secret_in_compose_has_a_value_of_its_own() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if key in SECRETS or key.startswith("MINIO_ROOT"):
                assert str(value).startswith("${") and ":?" in str(value), (name, key)


def test_prometheus_runs_without_the_lifecycle_api() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert not any("lifecycle" in arg for arg in services["prometheus"]["command"])
