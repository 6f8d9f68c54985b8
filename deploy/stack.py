"""Run the whole application stack (emulator + every service) as local processes.

Used by `make demo`, `reelforge up/down` and the e2e tests (which also SIGKILL and restart
single services). The servers themselves (Kafka, MongoDB-compatible, MinIO, Prometheus) come
from `deploy.localinfra`; this module only runs our own Python processes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from shared.topics import PROVIDERS

ROOT = Path(__file__).resolve().parents[1]
POLLER_PORTS = {p: 8101 + i for i, p in enumerate(PROVIDERS)}
LOCAL_EGRESS_ALLOW = "127.0.0.1/32,::1/128"


@dataclass
class ServiceSpec:
    name: str
    module: str
    port: int
    env: dict[str, str] = field(default_factory=dict)


def default_specs(render_seconds: float = 3.0, with_qc: bool = True) -> list[ServiceSpec]:
    """The emulator and one process per service (one poller per provider)."""
    fast = {
        "DISPATCHER_EXPECTED_RENDER_S": str(render_seconds),
        "POLLER_EXPECTED_RENDER_S": str(render_seconds),
    }
    # Local development only: the emulator's result URLs and the demo's webhook receiver are on
    # loopback, which the egress guard refuses unless listed (production mode refuses this).
    local_egress = {"EGRESS_ALLOW": LOCAL_EGRESS_ALLOW}
    specs = [
        ServiceSpec(
            "emulator",
            "services.emulator",
            8090,
            {
                "EMULATOR_PORT": "8090",
                "EMULATOR_RENDER_SECONDS": str(render_seconds),
                "EMULATOR_OPENAI_WEBHOOK_URL": "http://127.0.0.1:8080/hooks/openai",
                "EMULATOR_GEMINI_WEBHOOK_URL": "http://127.0.0.1:8080/hooks/gemini",
            },
        ),
        ServiceSpec(
            "intake", "services.intake", 8080, {"INTAKE_METRICS_PORT": "8080", **local_egress}
        ),
        ServiceSpec(
            "dispatcher", "services.dispatcher", 8081, {"DISPATCHER_METRICS_PORT": "8081", **fast}
        ),
        *(
            ServiceSpec(
                f"poller-{p}",
                "services.poller",
                port,
                {"POLLER_PROVIDER": p, "POLLER_METRICS_PORT": str(port), **fast},
            )
            for p, port in POLLER_PORTS.items()
        ),
        ServiceSpec(
            "storage", "services.storage", 8084, {"STORAGE_METRICS_PORT": "8084", **local_egress}
        ),
        ServiceSpec(
            "notifier",
            "services.notifier",
            8085,
            {"NOTIFIER_METRICS_PORT": "8085", **local_egress},
        ),
        ServiceSpec("reconciler", "services.reconciler", 8086, {"RECONCILER_METRICS_PORT": "8086"}),
    ]
    if with_qc and (ROOT / "services" / "qc" / "__main__.py").exists():
        specs.append(ServiceSpec("qc", "services.qc", 8087, {"QC_METRICS_PORT": "8087"}))
    return specs


class Stack:
    def __init__(
        self, specs: list[ServiceSpec], run_dir: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        self.specs = {s.name: s for s in specs}
        self.run_dir = run_dir
        self.extra_env = extra_env or {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        run_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str) -> None:
        spec = self.specs[name]
        env = {**os.environ, **self.extra_env, **spec.env, "PYTHONUNBUFFERED": "1"}
        with open(self.run_dir / f"{name}.log", "ab") as log:  # the child keeps its own copy
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", spec.module],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (self.run_dir / f"{name}.pid").write_text(str(self.procs[name].pid))

    def start_all(self, timeout_s: float = 60.0) -> None:
        busy = [
            f"{s.name} (127.0.0.1:{s.port})" for s in self.specs.values() if port_in_use(s.port)
        ]
        if busy:  # never talk to another stack's processes by mistake
            raise RuntimeError("ports already in use, is another stack running? " + ", ".join(busy))
        for name in self.specs:
            self.start(name)
        self.wait_healthy(list(self.specs), timeout_s)

    def wait_healthy(self, names: list[str], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        pending = set(names)
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                proc = self.procs.get(name)
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode}; see {self.log_path(name)}:\n"
                        + self.tail(name)
                    )
                if healthy(self.specs[name]):
                    pending.discard(name)
            time.sleep(0.2)
        if pending:
            raise RuntimeError(
                f"not healthy after {timeout_s:.0f}s: {sorted(pending)}\n"
                + "\n".join(self.tail(n) for n in sorted(pending))
            )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self, name: str, timeout_s: float = 60.0) -> None:
        self.kill(name, signal.SIGKILL)
        self.start(name)
        self.wait_healthy([name], timeout_s)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)

    def log_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def tail(self, name: str, lines: int = 15) -> str:
        path = self.log_path(name)
        text = path.read_text(errors="replace").splitlines() if path.exists() else []
        return f"--- {name} ---\n" + "\n".join(text[-lines:])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def healthy(spec: ServiceSpec) -> bool:
    path = "/_emulator/health" if spec.name == "emulator" else "/health"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{spec.port}{path}", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def stop_from_pid_files(run_dir: Path) -> list[str]:
    """Stop the processes a previous `up` recorded (used by `reelforge down`)."""
    stopped = []
    for pid_file in sorted(run_dir.glob("*.pid")):
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            stopped.append(pid_file.stem)
        except (ProcessLookupError, ValueError, PermissionError):
            pass
        pid_file.unlink(missing_ok=True)
    return stopped


def describe(specs: list[ServiceSpec]) -> str:
    return json.dumps({s.name: f"http://127.0.0.1:{s.port}" for s in specs}, indent=2)
