"""Running build tools with their output in a log file, and reading logs back."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from deploy.localinfra.errors import InfraError

INSTALL_HINTS = {
    "java": "install a JDK 17 (Debian: apt-get install openjdk-17-jre-headless)",
    "mvn": "install Maven (Debian: apt-get install maven)",
    "go": "install Go >= 1.24 (https://go.dev/dl) and put it on PATH",
}


def require_tool(server: str, tool: str) -> str:
    """The full path of ``tool`` on PATH, or an InfraError saying how to get it."""
    found = shutil.which(tool)
    if found is None:
        hint = INSTALL_HINTS.get(tool, f"install {tool}")
        raise InfraError(f"{server}: '{tool}' not found on PATH; {hint}")
    return found


def run_logged(
    server: str,
    argv: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    what: str = "build",
) -> None:
    """Run ``argv``, output appended to ``log``; on failure raise InfraError naming the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n### {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(argv)}\n")
        out.flush()
        try:
            code = subprocess.run(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=cwd,
                check=False,
            ).returncode
        except OSError as exc:
            raise InfraError(f"{server}: cannot run {argv[0]}: {exc}") from exc
    if code != 0:
        raise InfraError(f"{server}: {what} failed (exit {code}); see {log}\n{tail(log)}")


def tail(path: Path, lines: int = 10) -> str:
    """The last ``lines`` lines of a text file, indented, or a note that it is missing."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return f"    ({path} is missing)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def log_contains(path: Path, needle: str) -> bool:
    try:
        return needle in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
