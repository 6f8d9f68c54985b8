"""Prometheus from Debian's package, run as our own process on 127.0.0.1:19090.

If the package also started a system service on :9090 we leave it alone.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
from pathlib import Path

from deploy.localinfra import procs
from deploy.localinfra import versions as v
from deploy.localinfra.config import HOST, PROMETHEUS_PORT, REPO_ROOT, Layout, is_root
from deploy.localinfra.errors import InfraError
from deploy.localinfra.health import http_ok
from deploy.localinfra.shell import run_logged
from deploy.localinfra.spec import ServerSpec

NAME = "prometheus"
CONFIG = REPO_ROOT / "deploy" / "prometheus" / "prometheus.local.yml"


@functools.cache
def installed_version() -> str:
    """The version reported by the installed binary, or "missing"."""
    try:
        out = subprocess.run(
            [v.PROMETHEUS_BINARY, "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    words = (out.stdout or out.stderr).split()
    return words[2] if len(words) > 2 else "unknown"


def _installed(layout: Layout) -> bool:
    return Path(v.PROMETHEUS_BINARY).is_file()


def _install(layout: Layout, log: Path) -> None:
    if not is_root():
        raise InfraError(
            f"prometheus: {v.PROMETHEUS_BINARY} is missing; run `sudo apt-get install -y "
            f"{v.PROMETHEUS_DEBIAN_PACKAGE}` (or run install as root)"
        )
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run_logged(NAME, ["apt-get", "update"], log, env=env, what="apt-get update")
    run_logged(
        NAME,
        ["apt-get", "install", "-y", "--no-install-recommends", v.PROMETHEUS_DEBIAN_PACKAGE],
        log,
        env=env,
        what="apt-get install",
    )
    installed_version.cache_clear()


def _prepare(layout: Layout) -> None:
    layout.data(NAME).mkdir(parents=True, exist_ok=True)


def _command(layout: Layout) -> list[str]:
    return [
        v.PROMETHEUS_BINARY,
        f"--config.file={CONFIG}",
        f"--storage.tsdb.path={layout.data(NAME)}",
        f"--web.listen-address={HOST}:{PROMETHEUS_PORT}",
        # No --web.enable-lifecycle: a webhook or any local HTTP client must not be able to
        # stop or reload monitoring. Config edits apply on SIGHUP (`reload_config`).
    ]


def reload_config(layout: Layout) -> bool:
    """Make the Prometheus we started re-read its config (SIGHUP: the HTTP lifecycle API is
    off). False if none of ours runs."""
    record = procs.read_record(layout.pid_file(NAME))
    if record is None or not procs.is_ours(record):
        return False
    os.kill(record.pid, signal.SIGHUP)
    return True


def _healthy(layout: Layout) -> bool:
    return http_ok(f"http://{HOST}:{PROMETHEUS_PORT}/-/ready")


SPEC = ServerSpec(
    name=NAME,
    version=f"debian-{v.PROMETHEUS_DEBIAN_PACKAGE}",
    port=PROMETHEUS_PORT,
    address=f"http://{HOST}:{PROMETHEUS_PORT}",
    startup_timeout=30.0,
    installed=_installed,
    install=_install,
    prepare=_prepare,
    command=_command,
    healthy=_healthy,
    live_version=installed_version,
)
