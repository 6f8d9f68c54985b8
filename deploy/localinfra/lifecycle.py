"""One server at a time: inspect, install, start (and wait for health), stop."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy.localinfra import procs
from deploy.localinfra.config import ENDPOINTS, HOST, Layout, external_value, redacted
from deploy.localinfra.errors import InfraError
from deploy.localinfra.shell import tail
from deploy.localinfra.spec import ServerSpec


@dataclass(frozen=True)
class ServerState:
    """What ``status`` shows for one server."""

    name: str
    state: str  # running | unhealthy | stopped | external
    pid: int | None
    address: str
    version: str


def inspect(spec: ServerSpec, layout: Layout, environ: Mapping[str, str]) -> ServerState:
    """The current state; a stale pid file (process gone or not ours) is removed."""
    external = external_value(spec.name, environ)
    if external is not None:
        return ServerState(spec.name, "external", None, redacted(external), "-")
    record = _live_record(spec, layout)
    if record is None:
        return ServerState(spec.name, "stopped", None, spec.address, spec.shown_version())
    state = "running" if spec.healthy(layout) else "unhealthy"
    return ServerState(spec.name, state, record.pid, record.address, record.version)


def _live_record(spec: ServerSpec, layout: Layout) -> procs.PidRecord | None:
    path = layout.pid_file(spec.name)
    record = procs.read_record(path)
    if record is not None and procs.is_ours(record):
        return record
    path.unlink(missing_ok=True)
    return None


def install(spec: ServerSpec, layout: Layout) -> str:
    """Install ``spec`` unless its stamp says it is there; return the result line."""
    if spec.installed(layout):
        return f"{spec.name:<11} installed {spec.shown_version()} (cached)"
    log = layout.install_log(spec.name)
    began = time.monotonic()
    spec.install(layout, log)
    return f"{spec.name:<11} installed {spec.shown_version()} in {_secs(began)} (log {log})"


def ensure_running(spec: ServerSpec, layout: Layout) -> tuple[bool, str]:
    """Reuse a healthy server we started, else start one. Returns (started_now, status line)."""
    record = _live_record(spec, layout)
    if record is not None:
        _wait_healthy(spec, layout, None, time.monotonic())  # it may still be starting
        return False, f"{spec.name:<11} running (reused) pid {record.pid} at {record.address}"
    _check_ports(spec)
    log = layout.log_file(spec.name)
    _rotate(log)
    spec.prepare(layout)
    argv = spec.command(layout)
    began = time.monotonic()
    process = procs.start(
        argv, spec.environment(layout), log, cwd=spec.workdir(layout), user=spec.run_as()
    )
    record = procs.PidRecord(process.pid, argv, spec.shown_version(), spec.address, time.time())
    procs.write_record(layout.pid_file(spec.name), record)
    try:
        _wait_healthy(spec, layout, process, began)
    except InfraError:
        procs.stop(record, timeout=5.0, sig=spec.stop_signal)
        layout.pid_file(spec.name).unlink(missing_ok=True)
        raise
    return True, (
        f"{spec.name:<11} started pid {process.pid} at {spec.address}, healthy in {_secs(began)}"
    )


def stop(spec: ServerSpec, layout: Layout) -> str:
    """Stop the process recorded in the pid file if it is still ours; remove the pid file."""
    path = layout.pid_file(spec.name)
    record = procs.read_record(path)
    if record is None:
        path.unlink(missing_ok=True)
        return f"{spec.name:<11} not running"
    began = time.monotonic()
    stopped = procs.stop(record, spec.stop_timeout, spec.stop_signal)
    path.unlink(missing_ok=True)
    if not stopped:
        return f"{spec.name:<11} not running (stale pid file for pid {record.pid} removed)"
    return f"{spec.name:<11} stopped pid {record.pid} in {_secs(began)}"


def _check_ports(spec: ServerSpec) -> None:
    setting = ENDPOINTS[spec.name][0]
    for port, role in ((spec.port, ""), *spec.extra_ports):
        message = procs.port_conflict(spec.name, HOST, port, role, setting)
        if message is not None:
            raise InfraError(message)


def _wait_healthy(
    spec: ServerSpec, layout: Layout, process: subprocess.Popen[bytes] | None, began: float
) -> None:
    log = layout.log_file(spec.name)
    while time.monotonic() - began < spec.startup_timeout:
        if spec.healthy(layout):
            return
        if process is not None and process.poll() is not None:
            raise InfraError(
                f"{spec.name}: exited with code {process.returncode} while starting; "
                f"last lines of {log}:\n{tail(log)}"
            )
        time.sleep(0.25)
    raise InfraError(
        f"{spec.name}: not healthy within {spec.startup_timeout:.0f}s; "
        f"last lines of {log}:\n{tail(log)}"
    )


def _rotate(log: Path) -> None:
    """Keep the previous run's log as <name>.log.1 so the health check sees only this run."""
    if log.exists():
        log.replace(log.with_name(log.name + ".1"))


def _secs(began: float) -> str:
    return f"{time.monotonic() - began:.1f}s"
