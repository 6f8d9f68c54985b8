"""PostgreSQL 15 from Debian's package (postgresql-15): the job store (`postgres`), 127.0.0.1:15432.

PostgreSQL refuses to run as root, so as root we run initdb and the server as the `postgres` system
user the package creates; the launcher switches user between fork and exec (``run_as``), so the
recorded pid is the postmaster itself. (``runuser -u postgres --`` stays in between as parent and,
on SIGTERM, SIGKILLs its child two seconds later: a shutdown checkpoint could be cut short.)

Where the cluster lives, as root: that user cannot reach the cache (``~/.cache/reelforge`` is under
``/root``, mode 700; a ``mktemp -d`` cache is 700 as well), and opening a traverse bit on someone's
home directory is not ours to do. So the cluster lives in a postgres-owned directory keyed by the
cache path, ``/var/lib/reelforge/postgres-<sha256(cache path)[:12]>/`` (``data/`` = PGDATA, mode
700; ``socket/``; ``cache-root`` naming its cache), and the cache's ``data/postgres`` is a symlink
to it. That link is what ties a cluster to its cache: deleting ``data/postgres`` (or the whole
cache) resets the server, because a cluster no cache links to any more is an orphan, removed by the
next ``prepare`` (unless a postmaster still runs on it). Not as root, the server runs as ourselves
and the cluster lives in ``data/postgres`` itself.

Stop is PostgreSQL's "fast" shutdown (SIGINT: roll back open transactions, checkpoint, exit); the
default SIGTERM would be "smart" shutdown, which waits for every client to disconnect. The launcher
signals the whole process group; for the postmaster's children SIGINT only cancels a query or asks
for a checkpoint, and the postmaster then shuts them down in order.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.localinfra import procs
from deploy.localinfra import versions as v
from deploy.localinfra.config import (
    HOST,
    POSTGRES_DATABASE,
    POSTGRES_PORT,
    POSTGRES_USER,
    Layout,
    is_root,
)
from deploy.localinfra.errors import InfraError
from deploy.localinfra.health import postgres_ready
from deploy.localinfra.shell import tail
from deploy.localinfra.spec import ServerSpec

NAME = "postgres"
BIN_DIR = Path(v.POSTGRES_BIN_DIR)
POSTGRES = BIN_DIR / "postgres"
INITDB = BIN_DIR / "initdb"
SYSTEM_USER = "postgres"  # created by Debian's postgresql-common
CLUSTERS = Path("/var/lib/reelforge")  # clusters run as SYSTEM_USER (as root only)
STAMP = ".reelforge-initialized"  # written once initdb and CREATE DATABASE both succeeded
OWNER_FILE = "cache-root"

# Sized for tests and benchmarks on a 2-core box; durability stays on (fsync, synchronous commit).
SETTINGS = {
    "listen_addresses": HOST,
    "max_connections": "200",
    "shared_buffers": "256MB",
    "fsync": "on",
    "synchronous_commit": "on",
    "logging_collector": "off",  # log to stderr: the launcher's run/postgres.log
    "cluster_name": "reelforge",  # process titles read "postgres: reelforge: ..."
}


@dataclass(frozen=True)
class Cluster:
    """Where one cache's cluster lives and which system user runs it (None: ourselves)."""

    home: Path
    user: str | None

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "socket"


def cluster(layout: Layout, as_root: bool | None = None) -> Cluster:
    """The cluster of ``layout``'s cache (see the module docstring). No side effects."""
    if not (is_root() if as_root is None else as_root):
        return Cluster(layout.data(NAME), None)
    key = hashlib.sha256(str(layout.root).encode()).hexdigest()[:12]
    return Cluster(CLUSTERS / f"{NAME}-{key}", SYSTEM_USER)


def is_orphan(home: Path) -> bool:
    """True when the cache named in ``home``/cache-root no longer links its data/postgres here.

    A cluster without that file is never judged an orphan (not ours, or still being claimed).
    """
    try:
        root = Path((home / OWNER_FILE).read_text(encoding="utf-8").strip())
    except OSError:
        return False
    link = root / "data" / NAME
    try:
        return Path(os.readlink(link)) != home
    except OSError:  # gone, or not a symlink
        return True


def postmaster_running(data: Path) -> bool:
    """True while the pid in ``data``/postmaster.pid is a live postgres serving ``data``."""
    try:
        pid = int((data / "postmaster.pid").read_text(encoding="utf-8").split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    argv = procs.cmdline_of(pid)
    return argv is not None and str(data) in argv


@functools.cache
def installed_version() -> str:
    """The version reported by the installed server binary (e.g. "15.18"), or "missing"."""
    try:
        out = subprocess.run(
            [str(POSTGRES), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    words = out.stdout.split()  # postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)
    return words[2] if len(words) > 2 else "unknown"


def _installed(layout: Layout) -> bool:
    return POSTGRES.is_file() and INITDB.is_file()


def _install(layout: Layout, log: Path) -> None:
    raise InfraError(
        f"postgres: {POSTGRES} is missing; run `bash deploy/system-deps.sh` as root "
        f"(or `apt-get install -y {v.POSTGRES_DEBIAN_PACKAGE}`)"
    )


def prepare(layout: Layout) -> None:
    """Claim the cluster directory and, once, initdb + CREATE DATABASE (fast when done)."""
    target = cluster(layout)
    owner = _owner(target.user)
    if target.user is not None:
        _remove_orphans()
        _link(layout, target)
    _make_dir(target.home, owner, 0o755)
    _make_dir(target.socket_dir, owner, 0o755)
    owner_file = target.home / OWNER_FILE
    if target.user is not None and not owner_file.is_file():
        # written after the link, so a concurrent prepare never takes this cluster for an orphan
        owner_file.write_text(f"{layout.root}\n", encoding="utf-8")
    if not (target.home / STAMP).is_file():
        _initialize(layout, target, owner)


def _owner(user: str | None) -> tuple[int, int] | None:
    if user is None:
        return None
    try:
        creds = procs.credentials(user)
    except InfraError:
        raise InfraError(
            f"postgres: no '{user}' system user to run PostgreSQL as (it refuses root); Debian's "
            f"{v.POSTGRES_DEBIAN_PACKAGE} creates it: run `bash deploy/system-deps.sh`"
        ) from None
    return int(creds["user"]), int(creds["group"])


def _remove_orphans() -> None:
    if not CLUSTERS.is_dir():
        return
    for home in CLUSTERS.glob(f"{NAME}-*"):
        mine = home.is_dir() and not home.is_symlink()
        if mine and is_orphan(home) and not postmaster_running(home / "data"):
            shutil.rmtree(home, ignore_errors=True)


def _link(layout: Layout, target: Cluster) -> None:
    """Make the cache's data/postgres a symlink to ``target.home``."""
    link = layout.data(NAME)
    if link.is_symlink():
        if Path(os.readlink(link)) == target.home:
            return
        link.unlink()  # the cache moved: its path, hence its cluster, changed
    elif link.exists():
        raise InfraError(
            f"postgres: {link} is a directory, not the link to the cluster (made when not root?); "
            "delete it to reset postgres"
        )
    CLUSTERS.mkdir(mode=0o755, parents=True, exist_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target.home)


def _make_dir(path: Path, owner: tuple[int, int] | None, mode: int) -> None:
    if path.is_dir():
        return
    path.mkdir(parents=True)
    if owner is not None:
        os.chown(path, *owner)
    path.chmod(mode)


def _initialize(layout: Layout, target: Cluster, owner: tuple[int, int] | None) -> None:
    """initdb and CREATE DATABASE reelforge (single-user mode, before the first start)."""
    log = layout.install_log(NAME)
    if target.data.exists():
        shutil.rmtree(target.data)  # what an interrupted earlier attempt left
    _make_dir(target.data, owner, 0o700)
    _run(
        target,
        [
            str(INITDB),
            f"--pgdata={target.data}",
            f"--username={POSTGRES_USER}",
            "--auth=trust",  # listens on 127.0.0.1 and a private socket only
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ],
        log,
        "initdb",
    )
    output = _run(
        target,
        [str(POSTGRES), "--single", "-D", str(target.data), "postgres"],
        log,
        "CREATE DATABASE",
        stdin=f"CREATE DATABASE {POSTGRES_DATABASE};\n",
    )
    if "ERROR:" in output:  # single-user mode exits 0 even when a statement fails
        raise InfraError(f"postgres: CREATE DATABASE failed; see {log}\n{tail(log)}")
    (target.home / STAMP).write_text(f"{installed_version()}\n", encoding="utf-8")


def _run(target: Cluster, argv: list[str], log: Path, what: str, stdin: str = "") -> str:
    """Run a one-off command as the cluster's user, output appended to ``log`` and returned."""
    log.parent.mkdir(parents=True, exist_ok=True)
    as_user = procs.credentials(target.user) if target.user is not None else {}
    try:
        result = subprocess.run(
            argv,
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=target.home,  # one the user can enter
            timeout=300,
            check=False,
            **as_user,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"postgres: {what} failed: {exc}") from exc
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n### {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(argv)}\n")
        out.write(result.stdout)
    if result.returncode != 0:
        raise InfraError(
            f"postgres: {what} failed (exit {result.returncode}); see {log}\n{tail(log)}"
        )
    return str(result.stdout)


def command(layout: Layout, as_root: bool | None = None, port: int = POSTGRES_PORT) -> list[str]:
    """The postmaster in the foreground, settings on the command line (postgresql.conf as initdb
    wrote it). Another ``port`` serves a private instance (`deploy.localinfra.private`)."""
    target = cluster(layout, as_root)
    settings = {**SETTINGS, "unix_socket_directories": str(target.socket_dir)}
    argv = [str(POSTGRES), "-D", str(target.data), "-p", str(port)]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    return argv


def _healthy(layout: Layout) -> bool:
    return postgres_ready(HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_DATABASE)


def _run_as() -> str | None:
    return SYSTEM_USER if is_root() else None


SPEC = ServerSpec(
    name=NAME,
    version=f"debian-{v.POSTGRES_DEBIAN_PACKAGE}",
    port=POSTGRES_PORT,
    address=f"postgresql://{POSTGRES_USER}@{HOST}:{POSTGRES_PORT}/{POSTGRES_DATABASE}",
    startup_timeout=60.0,
    installed=_installed,
    install=_install,
    prepare=prepare,
    command=command,
    healthy=_healthy,
    environment=lambda layout: {"HOME": str(cluster(layout).home)},
    stop_timeout=30.0,
    stop_signal=signal.SIGINT,
    run_as=_run_as,
    workdir=lambda layout: cluster(layout).home,
    live_version=installed_version,
)
