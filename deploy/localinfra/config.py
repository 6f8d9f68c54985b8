"""Where things live (cache layout), which addresses the servers use, and the endpoint variables.

A server is *external* when its endpoint variable is set to something other than our own address:
then the launcher neither installs, starts nor stops it. Setting it to our own address (as
``eval "$(python -m deploy.localinfra env)"`` does) keeps it managed, so ``down`` still works.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]

KAFKA_PORT = 19092
KAFKA_CONTROLLER_PORT = 19093
MONGODB_PORT = 27117
FERRETDB_DEBUG_PORT = 19088
MINIO_PORT = 19000
MINIO_CONSOLE_PORT = 19001
PROMETHEUS_PORT = 19090
POSTGRES_PORT = 15432
POSTGRES_DATABASE = "reelforge"
POSTGRES_USER = "postgres"

S3_ACCESS_KEY = "reelforge"
S3_SECRET_KEY = "reelforge-secret"

# server name -> (endpoint variable, our own value)
ENDPOINTS: dict[str, tuple[str, str]] = {
    "kafka": ("KAFKA_BOOTSTRAP_SERVERS", f"{HOST}:{KAFKA_PORT}"),
    "mongodb": ("MONGODB_URI", f"mongodb://{HOST}:{MONGODB_PORT}/"),
    "minio": ("S3_ENDPOINT", f"http://{HOST}:{MINIO_PORT}"),
    "prometheus": ("PROMETHEUS_URL", f"http://{HOST}:{PROMETHEUS_PORT}"),
    "postgres": (
        "JOB_STORE_URI",
        f"postgresql://{POSTGRES_USER}@{HOST}:{POSTGRES_PORT}/{POSTGRES_DATABASE}",
    ),
}

# server name -> the URL schemes its endpoint variable accepts (checked before `up` and `run`)
ENDPOINT_SCHEMES: dict[str, tuple[str, ...]] = {"postgres": ("postgresql", "postgres")}


@dataclass(frozen=True)
class Layout:
    """Paths inside the cache directory (never inside the clone)."""

    root: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Layout:
        raw = environ.get("REELFORGE_CACHE") or str(Path.home() / ".cache" / "reelforge")
        return cls(Path(raw).expanduser().resolve())

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def go_env(self) -> dict[str, str]:
        return {
            "GOMODCACHE": str(self.root / "go" / "mod"),
            "GOCACHE": str(self.root / "go" / "build"),
            "GOFLAGS": "-modcacherw",
        }

    def data(self, name: str) -> Path:
        return self.root / "data" / name

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def install_log(self, name: str) -> Path:
        return self.logs_dir / f"install-{name}.log"


def external_value(name: str, environ: Mapping[str, str]) -> str | None:
    """The external endpoint for ``name`` if the environment points elsewhere, else None."""
    var, ours = ENDPOINTS[name]
    value = environ.get(var, "").strip()
    if not value or value.rstrip("/") == ours.rstrip("/"):
        return None
    return value


def bad_endpoint(name: str, value: str) -> str | None:
    """A one-line message when an external ``value`` for ``name`` cannot be right, else None."""
    schemes = ENDPOINT_SCHEMES.get(name)
    if schemes is None:
        return None
    try:
        if urlsplit(value).scheme in schemes:
            return None
    except ValueError:  # e.g. an unclosed [ipv6
        pass
    var, ours = ENDPOINTS[name]
    return f"{name}: {var}={redacted(value)} is not a {schemes[0]}:// URL (unset it to use {ours})"


def redacted(value: str) -> str:
    """``value`` with the password of a URL's user info masked, for messages and ``status``."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return "(unparsable URL)"
    if parts.password is None:
        return value
    user_info, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user_info.partition(':')[0]}:***@{host}").geturl()


def endpoint_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The effective endpoint variables: the external value where set, else our own."""
    result: dict[str, str] = {}
    for name, (var, ours) in ENDPOINTS.items():
        result[var] = external_value(name, environ) or ours
    if external_value("minio", environ) is None:
        result["S3_ACCESS_KEY"] = S3_ACCESS_KEY
        result["S3_SECRET_KEY"] = S3_SECRET_KEY
    else:
        for var in ("S3_ACCESS_KEY", "S3_SECRET_KEY"):
            if environ.get(var):
                result[var] = environ[var]
    return result


def is_root() -> bool:
    return os.geteuid() == 0
