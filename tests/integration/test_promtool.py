"""Debian's `promtool` accepts our Prometheus configs and rules, and every alert's unit test
(deploy/prometheus/tests) passes: firing when it must, silent when it must not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
CONFIGS = ("prometheus.local.yml", "prometheus.compose.yml")
DEBIAN_PROMTOOL = Path("/usr/bin/promtool")
PROMTOOL = shutil.which("promtool") or (str(DEBIAN_PROMTOOL) if DEBIAN_PROMTOOL.is_file() else None)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if PROMTOOL is None:
        pytest.skip(
            "promtool is not installed (Debian package `prometheus`: "
            "`python -m deploy.localinfra install prometheus`)"
        )
    return subprocess.run(
        [PROMTOOL, *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def yml_files(folder: str) -> list[str]:
    return sorted(f"{folder}/{p.name}" for p in (PROMETHEUS_DIR / folder).glob("*.yml"))


def rule_files() -> list[str]:
    return yml_files("rules")


def test_there_are_rule_files_and_rule_tests() -> None:
    assert rule_files(), "no rule files under deploy/prometheus/rules"
    assert yml_files("tests"), "no promtool tests"


@pytest.mark.parametrize("config", CONFIGS)
def test_promtool_accepts_the_config(config: str) -> None:
    result = promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rule_files())} rule files found" in result.stdout + result.stderr


def test_promtool_accepts_every_rule_file() -> None:
    result = promtool("check", "rules", *rule_files())
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_rule_unit_test_passes() -> None:
    result = promtool("test", "rules", *yml_files("tests"))
    assert result.returncode == 0, result.stdout + result.stderr
