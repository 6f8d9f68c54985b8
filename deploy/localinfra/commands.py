"""The commands behind ``python -m deploy.localinfra``; each returns a process exit code."""

from __future__ import annotations

import contextlib
import fcntl
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import TextIO

from deploy.localinfra import lifecycle
from deploy.localinfra.config import (
    ENDPOINTS,
    Layout,
    bad_endpoint,
    endpoint_env,
    external_value,
    redacted,
)
from deploy.localinfra.errors import InfraError
from deploy.localinfra.registry import resolve
from deploy.localinfra.spec import ServerSpec

_print_lock = threading.Lock()


def say(out: TextIO, line: str) -> None:
    with _print_lock:
        print(line, file=out, flush=True)


def install(names: Sequence[str], layout: Layout, environ: Mapping[str, str], out: TextIO) -> int:
    """Install the pinned versions of ``names`` (default: all) into the cache, concurrently.

    Idempotent: a server whose stamp matches its version is skipped instantly. External servers
    are skipped. One line per server with its duration; install output goes to
    ``$REELFORGE_CACHE/logs/install-<name>.log``. Exit 1 if any install failed.
    """
    with _locked(layout):
        specs = _managed(resolve(names), environ, out)
        return _parallel(specs, lambda spec: _install_line(spec, layout, out), out)


def up(names: Sequence[str], layout: Layout, environ: Mapping[str, str], out: TextIO) -> int:
    """Install if needed and start ``names`` (default: all), reusing healthy ones we started.

    Each server runs in its own session on 127.0.0.1, pid and log under
    ``$REELFORGE_CACHE/run/``. Returns once all are healthy (exit 0) or one failed (exit 1;
    servers that did come up are left running).
    """
    started: list[str] = []
    return _up(names, layout, environ, out, started)


def down(names: Sequence[str], layout: Layout, environ: Mapping[str, str], out: TextIO) -> int:
    """Stop ``names`` (default: all) that we started, by recorded pid: SIGTERM, then SIGKILL.

    A pid whose command line is no longer what we launched is never signalled. External servers
    are never touched.
    """
    with _locked(layout):
        specs = _managed(resolve(names), environ, out)
        return _parallel(specs, lambda spec: lifecycle.stop(spec, layout), out)


def status(layout: Layout, environ: Mapping[str, str], out: TextIO) -> int:
    """Print a table: name, state (running/unhealthy/stopped/external), pid, address, version."""
    rows = [lifecycle.inspect(spec, layout, environ) for spec in resolve([])]
    width = max([32, *(len(row.address) for row in rows)])
    say(out, f"{'NAME':<11} {'STATE':<10} {'PID':>7}  {'ADDRESS':<{width}} VERSION")
    for row in rows:
        pid = str(row.pid) if row.pid is not None else "-"
        say(out, f"{row.name:<11} {row.state:<10} {pid:>7}  {row.address:<{width}} {row.version}")
    return 0


def env(environ: Mapping[str, str], out: TextIO) -> int:
    """Print ``export KEY=VALUE`` lines for the effective endpoints (external values win)."""
    for key, value in endpoint_env(environ).items():
        say(out, f"export {key}={shlex.quote(value)}")
    return 0


def run(command: Sequence[str], layout: Layout, environ: Mapping[str, str], out: TextIO) -> int:
    """Start what is not running, run ``command`` with the endpoint variables exported, then stop
    only the servers this invocation started. Exit with the command's exit code (1 if the
    servers could not be started, 127 if the command does not exist)."""
    if not command:
        raise InfraError("run: no command given; usage: run -- CMD ARGS...")
    if shutil.which(command[0]) is None:  # fail before starting anything
        raise InfraError(f"run: command not found: {command[0]}", exit_code=127)
    started: list[str] = []
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if _up([], layout, environ, out, started) != 0:
            return 1
        return _run_command(command, {**environ, **endpoint_env(environ)})
    finally:
        signal.signal(signal.SIGTERM, previous)
        if started:
            down(started, layout, environ, out)


def _up(
    names: Sequence[str],
    layout: Layout,
    environ: Mapping[str, str],
    out: TextIO,
    started: list[str],
) -> int:
    for spec in resolve(names):  # a malformed external endpoint fails before anything starts
        value = external_value(spec.name, environ)
        problem = bad_endpoint(spec.name, value) if value is not None else None
        if problem is not None:
            raise InfraError(problem)
    with _locked(layout):
        specs = _managed(resolve(names), environ, out)
        if _parallel(specs, lambda spec: _install_line(spec, layout, out, quiet=True), out):
            return 1

        def start(spec: ServerSpec) -> str:
            now, line = lifecycle.ensure_running(spec, layout)
            if now:
                started.append(spec.name)
            return line

        return _parallel(specs, start, out)


def _install_line(spec: ServerSpec, layout: Layout, out: TextIO, quiet: bool = False) -> str:
    if quiet and spec.installed(layout):
        return ""
    if not spec.installed(layout):
        say(
            out,
            f"{spec.name:<11} installing {spec.shown_version()} "
            f"(log {layout.install_log(spec.name)}) ...",
        )
    return lifecycle.install(spec, layout)


def _managed(specs: list[ServerSpec], environ: Mapping[str, str], out: TextIO) -> list[ServerSpec]:
    """Drop (and announce) the servers the environment points elsewhere."""
    kept = []
    for spec in specs:
        value = external_value(spec.name, environ)
        if value is None:
            kept.append(spec)
        else:
            var = ENDPOINTS[spec.name][0]
            say(out, f"{spec.name:<11} external ({var}={redacted(value)}): left alone")
    return kept


def _parallel(specs: list[ServerSpec], work: Callable[[ServerSpec], str], out: TextIO) -> int:
    """Run ``work`` for each spec in its own thread, printing each line (or error) as it lands.

    Returns the exit code: 1 if any raised InfraError.
    """

    def guarded(spec: ServerSpec) -> bool:
        try:
            line = work(spec)
        except InfraError as exc:
            say(sys.stderr, f"error: {exc}")
            return False
        if line:
            say(out, line)
        return True

    if not specs:
        return 0
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        return 0 if all(list(pool.map(guarded, specs))) else 1


def _run_command(command: Sequence[str], environ: Mapping[str, str]) -> int:
    try:
        process = subprocess.Popen(list(command), env=dict(environ))
    except FileNotFoundError:
        raise InfraError(f"run: command not found: {command[0]}", exit_code=127) from None
    try:
        code = process.wait()
    except KeyboardInterrupt:
        process.terminate()
        code = process.wait()
    return code if code >= 0 else 128 - code


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # lets `run` stop what it started when CI kills it with SIGTERM


@contextlib.contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    """Serialise install/up/down between concurrent invocations on the same cache."""
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    with open(layout.run_dir / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def reload_prometheus(layout: Layout, out: TextIO) -> int:
    """SIGHUP to the Prometheus we started (it runs without the HTTP lifecycle API)."""
    from deploy.localinfra import prometheus

    if not prometheus.reload_config(layout):
        print("prometheus: none of ours is running (deploy.localinfra up prometheus)", file=out)
        return 1
    print("prometheus: asked to reload its config", file=out)
    return 0
