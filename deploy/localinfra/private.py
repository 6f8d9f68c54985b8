"""Private server instances for tests that stop and restart a server mid-run.

The shared servers (127.0.0.1:19092, 15432, 19000) serve every test and every helper on the
machine; a test that needs an outage must never stop them. ``private(name, root)`` starts
another instance of the same installed server on free ports with its data under ``root``
(a temporary directory), using the launcher's own code: the same binaries, settings,
PostgreSQL cluster handling (as the ``postgres`` user when root) and health probes. It can
be stopped and started again on the same ports and data as often as the test likes.

    with private("postgres", tmp_path) as pg:
        ...  # pg.address is a postgresql:// URI
        pg.stop(); pg.start()
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from deploy.localinfra import kafka, minio, postgres, procs
from deploy.localinfra.config import (
    HOST,
    POSTGRES_DATABASE,
    POSTGRES_USER,
    Layout,
)
from deploy.localinfra.errors import InfraError
from deploy.localinfra.health import http_ok, postgres_ready, tcp_open
from deploy.localinfra.shell import log_contains, tail

NAMES = ("postgres", "kafka", "minio")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PrivateServer:
    """One private instance: start, stop (the same way the launcher does), start again."""

    name: str
    address: str
    argv: list[str]
    log: Path
    cwd: Path
    healthy: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    startup_timeout: float = 60.0
    cleanup: Callable[[], None] = lambda: None
    _record: procs.PidRecord | None = None

    def start(self) -> None:
        if self._record is not None:
            return
        if self.log.exists():  # health probes that read the log must see this start only
            self.log.replace(self.log.with_name(self.log.name + ".1"))
        process = procs.start(self.argv, self.env, self.log, cwd=self.cwd, user=self.user)
        self._record = procs.PidRecord(process.pid, self.argv, "private", self.address, time.time())
        deadline = time.monotonic() + self.startup_timeout
        while not self.healthy():
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise InfraError(f"private {self.name} did not start:\n{tail(self.log)}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self._record is None:
            return
        procs.stop(self._record, timeout=30.0, sig=self.stop_signal)
        self._record = None

    @property
    def running(self) -> bool:
        return self._record is not None


@contextlib.contextmanager
def private(name: str, root: Path, main: Layout | None = None) -> Iterator[PrivateServer]:
    """A started private `name` (postgres, kafka, minio) with its data under `root`; stopped
    and its data removed at exit. `main` is the cache the server is installed in."""
    main = main or Layout.from_env({})
    root.mkdir(parents=True, exist_ok=True)
    build = {"postgres": _postgres, "kafka": _kafka, "minio": _minio}[name]
    server = build(Layout(root.resolve()), main)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.cleanup()


def _postgres(layout: Layout, main: Layout) -> PrivateServer:
    if not postgres.SPEC.installed(main):
        raise InfraError("postgres is not installed (bash deploy/system-deps.sh)")
    postgres.prepare(layout)  # initdb + CREATE DATABASE in this cache's own cluster
    port = free_port()
    target = postgres.cluster(layout)
    return PrivateServer(
        name="postgres",
        address=f"postgresql://{POSTGRES_USER}@{HOST}:{port}/{POSTGRES_DATABASE}",
        argv=postgres.command(layout, port=port),
        log=layout.log_file("postgres"),
        cwd=target.home,
        env={"HOME": str(target.home)},
        user=postgres.SPEC.run_as(),
        stop_signal=postgres.SPEC.stop_signal,
        healthy=lambda: postgres_ready(HOST, port, POSTGRES_USER, POSTGRES_DATABASE),
        cleanup=lambda: shutil.rmtree(target.home, ignore_errors=True),
    )


def _kafka(layout: Layout, main: Layout) -> PrivateServer:
    if not kafka.SPEC.installed(main):
        raise InfraError("kafka is not installed (python -m deploy.localinfra install kafka)")
    port, controller = free_port(), free_port()
    data = layout.data("kafka")
    data.mkdir(parents=True, exist_ok=True)
    props = layout.run_dir / "kafka" / "server.properties"
    props.parent.mkdir(parents=True, exist_ok=True)
    props.write_text(kafka.render_properties(data, port, controller), encoding="utf-8")
    java = ["java", *kafka.JVM_OPTS, f"-Dlog4j.configuration=file:{kafka.LOG4J}"]
    java += ["-cp", kafka.classpath(main)]
    log = layout.log_file("kafka")
    fmt = [*java, "kafka.tools.StorageTool", "format", "-t", kafka.new_cluster_id()]
    procs.start([*fmt, "-c", str(props), "--ignore-formatted"], {}, log, cwd=layout.root).wait(120)
    return PrivateServer(
        name="kafka",
        address=f"{HOST}:{port}",
        argv=[*java, "kafka.Kafka", str(props)],
        log=log,
        cwd=layout.root,
        healthy=lambda: tcp_open(HOST, port) and log_contains(log, kafka.STARTED_LINE),
    )


def _minio(layout: Layout, main: Layout) -> PrivateServer:
    if not minio.SPEC.installed(main):
        raise InfraError("minio is not installed (python -m deploy.localinfra install minio)")
    port, console = free_port(), free_port()
    data = layout.data("minio")
    data.mkdir(parents=True, exist_ok=True)
    address = f"{HOST}:{port}"
    argv = [str(minio.binary(main)), "server", str(data), "--address", address]
    return PrivateServer(
        name="minio",
        address=f"http://{address}",
        argv=[*argv, "--console-address", f"{HOST}:{console}"],
        log=layout.log_file("minio"),
        cwd=layout.root,
        env=minio.environment(layout),
        healthy=lambda: http_ok(f"http://{address}/minio/health/ready"),
        startup_timeout=30.0,
    )
