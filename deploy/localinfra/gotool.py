"""Building Go servers with the module and build caches kept inside $REELFORGE_CACHE."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from deploy.localinfra.config import Layout
from deploy.localinfra.errors import InfraError
from deploy.localinfra.shell import require_tool, run_logged


def go_install(server: str, layout: Layout, package: str, gobin: Path, log: Path) -> None:
    """``go install package`` into ``gobin`` (outside any module, so go.mod is not consulted)."""
    go = require_tool(server, "go")
    gobin.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reelforge-go-") as scratch:
        run_logged(
            server,
            [go, "install", "-v", package],
            log,
            env={**layout.go_env, "GOBIN": str(gobin)},
            cwd=Path(scratch),
        )


def module_source(server: str, layout: Layout, module: str, log: Path) -> Path:
    """Download ``module`` (``path@version``) into the module cache; return its directory."""
    go = require_tool(server, "go")
    run_logged(
        server,
        [go, "mod", "download", "-x", module],
        log,
        env=layout.go_env,
        cwd=layout.root,
        what="module download",
    )
    try:
        out = subprocess.run(
            [go, "mod", "download", "-json", module],
            capture_output=True,
            text=True,
            env={**os.environ, **layout.go_env},
            cwd=layout.root,
            check=True,
        ).stdout
        return Path(json.loads(out)["Dir"])
    except (subprocess.CalledProcessError, ValueError, KeyError) as exc:
        raise InfraError(f"{server}: cannot locate {module} in the module cache: {exc}") from exc


def writable_copy(source: Path, target: Path) -> None:
    """Copy a (read-only) module directory to ``target`` and make the copy writable."""
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)
    for root, dirs, files in os.walk(target):
        for entry in [*dirs, *files]:
            path = Path(root) / entry
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    target.chmod(target.stat().st_mode | stat.S_IWUSR)


def go_build(server: str, layout: Layout, src: Path, package: str, output: Path, log: Path) -> None:
    """``go build -o output package`` inside the module at ``src`` (no VCS stamping: no .git)."""
    go = require_tool(server, "go")
    output.parent.mkdir(parents=True, exist_ok=True)
    env = {**layout.go_env, "GOFLAGS": layout.go_env["GOFLAGS"] + " -buildvcs=false"}
    run_logged(server, [go, "build", "-v", "-o", str(output), package], log, env=env, cwd=src)
