"""Processes we start: pid records, the ownership check, port conflicts, start and stop.

A pid file records the exact argv we launched; a pid counts as ours only while
``/proc/<pid>/cmdline`` still equals it, so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deploy.localinfra.errors import InfraError
from deploy.localinfra.health import tcp_open

# Popen objects of servers started by this process: kept so they are reaped through Popen (no
# "subprocess still running" ResourceWarning) when `run` stops them; the servers outlive us anyway.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class PidRecord:
    """What we launched: enough to recognise the process later."""

    pid: int
    argv: list[str]
    version: str
    address: str
    started_at: float


def write_record(path: Path, record: PidRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record)), encoding="utf-8")
    tmp.replace(path)


def read_record(path: Path) -> PidRecord | None:
    """The record in ``path``, or None when it is missing or unreadable."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return PidRecord(
            pid=int(raw["pid"]),
            argv=[str(a) for a in raw["argv"]],
            version=str(raw["version"]),
            address=str(raw["address"]),
            started_at=float(raw["started_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cmdline_of(pid: int) -> list[str] | None:
    """The argv of a live process, or None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None  # zombies and kernel threads have an empty cmdline
    return raw.rstrip(b"\x00").decode("utf-8", errors="replace").split("\x00")


def is_ours(record: PidRecord) -> bool:
    """True while the recorded pid is alive and still runs exactly what we launched."""
    return cmdline_of(record.pid) == record.argv


def listener_pid(port: int) -> int | None:
    """Best effort: the pid listening on TCP ``port`` (needs permission to read its fds)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{inode}]")
    return inodes


def port_conflict(server: str, host: str, port: int, role: str, setting: str) -> str | None:
    """A one-line message if something already listens on host:port, else None."""
    if not tcp_open(host, port, timeout=0.5):
        return None
    pid = listener_pid(port)
    who = f"pid {pid}" if pid is not None else "pid unknown"
    what = f"{host}:{port}" + (f" ({role})" if role else "")
    return (
        f"{server}: {what} is in use by another process ({who}); stop it or set {setting} to use it"
    )


def credentials(user: str) -> dict[str, Any]:
    """Popen keyword arguments that run the child as system ``user`` (its uid, gid and groups).

    Applied between fork and exec, so the child's pid and cmdline are the command's own: unlike
    ``runuser``, which stays in between as parent and SIGKILLs its child 2 s after a SIGTERM.
    """
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise InfraError(f"no system user '{user}' to run as") from None
    return {
        "user": entry.pw_uid,
        "group": entry.pw_gid,
        "extra_groups": os.getgrouplist(user, entry.pw_gid),
    }


def start(
    argv: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path, user: str | None = None
) -> subprocess.Popen[bytes]:
    """Launch ``argv`` in its own session (it outlives this shell), output appended to ``log``.

    With ``user`` the process runs as that system user (the log is opened by us, so it may live
    where that user cannot write).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    as_user = credentials(user) if user is not None else {}
    with log.open("ab") as out:
        try:
            process = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **env},
                cwd=cwd,
                start_new_session=True,
                **as_user,
            )
        except OSError as exc:
            raise InfraError(f"cannot start {argv[0]}: {exc}") from exc
    _CHILDREN[process.pid] = process
    _await_exec(process, list(argv))
    return process


def _await_exec(process: subprocess.Popen[bytes], argv: list[str], timeout: float = 5.0) -> None:
    """Wait until /proc shows the new argv: Popen returns a moment before the kernel sets it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if cmdline_of(process.pid) == argv:
            return
        time.sleep(0.005)


def stop(record: PidRecord, timeout: float, sig: signal.Signals = signal.SIGTERM) -> bool:
    """Send ``sig`` (SIGTERM by default) to the process group we started, SIGKILL after
    ``timeout``. False if it was not ours."""
    if not is_ours(record):
        return False
    _signal(record.pid, sig)
    if not wait_gone(record, timeout):
        _signal(record.pid, signal.SIGKILL)
        wait_gone(record, 5.0)
    return True


def wait_gone(record: PidRecord, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not is_ours(record):
            return True
        time.sleep(0.1)
    return not is_ours(record)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        if os.getpgid(pid) == pid:  # started with start_new_session: signal its whole group
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child (same `run` invocation)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
