"""docker-compose.yml is valid, current, and has an entry for every service the code has."""

from __future__ import annotations

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


def test_docker_compose_config_accepts_the_file() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (deploy/system-deps.sh installs Debian's)")
    result = subprocess.run(
        [binary, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
