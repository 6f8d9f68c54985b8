"""MinIO built from source with ``go install`` (MinIO ships community builds as source only)."""

from __future__ import annotations

from pathlib import Path

from deploy.localinfra import versions as v
from deploy.localinfra.config import (
    HOST,
    MINIO_CONSOLE_PORT,
    MINIO_PORT,
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    Layout,
)
from deploy.localinfra.gotool import go_install
from deploy.localinfra.health import http_ok
from deploy.localinfra.shell import run_logged
from deploy.localinfra.spec import ServerSpec, has_stamp, write_stamp

NAME = "minio"


def _home(layout: Layout) -> Path:
    return layout.bin_dir / f"minio-{v.MINIO_VERSION}"


def binary(layout: Layout) -> Path:
    return _home(layout) / "minio"


def _installed(layout: Layout) -> bool:
    return binary(layout).is_file() and has_stamp(_home(layout), NAME, v.MINIO_VERSION)


def _install(layout: Layout, log: Path) -> None:
    go_install(NAME, layout, f"{v.MINIO_MODULE}@{v.MINIO_VERSION}", _home(layout), log)
    run_logged(NAME, [str(binary(layout)), "--version"], log, what="smoke test")
    write_stamp(_home(layout), NAME, v.MINIO_VERSION)


def _prepare(layout: Layout) -> None:
    layout.data(NAME).mkdir(parents=True, exist_ok=True)


def _command(layout: Layout) -> list[str]:
    return [
        str(binary(layout)),
        "server",
        str(layout.data(NAME)),
        "--address",
        f"{HOST}:{MINIO_PORT}",
        "--console-address",
        f"{HOST}:{MINIO_CONSOLE_PORT}",
    ]


def environment(layout: Layout) -> dict[str, str]:
    return {
        "MINIO_ROOT_USER": S3_ACCESS_KEY,
        "MINIO_ROOT_PASSWORD": S3_SECRET_KEY,
        "MINIO_BROWSER": "off",  # no console UI; --console-address still pins its port
        "MINIO_UPDATE": "off",
    }


def _healthy(layout: Layout) -> bool:
    return http_ok(f"http://{HOST}:{MINIO_PORT}/minio/health/ready")


SPEC = ServerSpec(
    name=NAME,
    version=v.MINIO_VERSION,
    port=MINIO_PORT,
    address=f"http://{HOST}:{MINIO_PORT}",
    startup_timeout=30.0,
    installed=_installed,
    install=_install,
    prepare=_prepare,
    command=_command,
    healthy=_healthy,
    environment=environment,
)
