"""What the launcher needs to know about one server; each server module builds one ServerSpec."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deploy.localinfra.config import Layout
from deploy.localinfra.versions import INSTALL_RECIPE


@dataclass(frozen=True)
class ServerSpec:
    """A locally run server.

    ``install`` must be idempotent and leave a stamp (``write_stamp``) only once complete;
    ``prepare`` runs before every start (render config, one-time storage format);
    ``healthy`` must answer within a couple of seconds.
    ``run_as`` names the system user the server process runs as (None: ourselves); it is applied
    by the launcher itself (setuid between fork and exec), so the recorded pid is the server and
    its ``/proc/<pid>/cmdline`` is exactly ``command``; ``workdir`` must then be a directory that
    user can enter.
    ``stop_signal`` is sent to the server's process group first; SIGKILL follows after
    ``stop_timeout``.
    """

    name: str
    version: str
    port: int
    address: str
    startup_timeout: float
    installed: Callable[[Layout], bool]
    install: Callable[[Layout, Path], None]
    prepare: Callable[[Layout], None]
    command: Callable[[Layout], list[str]]
    healthy: Callable[[Layout], bool]
    environment: Callable[[Layout], dict[str, str]] = field(default=lambda layout: {})
    extra_ports: tuple[tuple[int, str], ...] = ()
    stop_timeout: float = 20.0
    stop_signal: signal.Signals = signal.SIGTERM
    run_as: Callable[[], str | None] = field(default=lambda: None)
    workdir: Callable[[Layout], Path] = field(default=lambda layout: layout.run_dir)
    live_version: Callable[[], str] | None = None  # for servers we do not pin (Debian's package)

    def shown_version(self) -> str:
        return self.live_version() if self.live_version is not None else self.version


def stamp_text(name: str, version: str) -> str:
    return f"{name} {version} recipe={INSTALL_RECIPE}\n"


def write_stamp(directory: Path, name: str, version: str) -> None:
    """Mark ``directory`` as a complete install of ``name`` ``version`` (written last)."""
    (directory / ".reelforge-installed").write_text(stamp_text(name, version), encoding="utf-8")


def has_stamp(directory: Path, name: str, version: str) -> bool:
    try:
        text = (directory / ".reelforge-installed").read_text(encoding="utf-8")
    except OSError:
        return False
    return text == stamp_text(name, version)
