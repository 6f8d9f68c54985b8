"""Session fixture: the provider emulator as a real process on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
# Passed to the emulator explicitly so the suite does not depend on both sides' defaults.
KLING_ACCESS_KEY = "contract-ak"
KLING_SECRET_KEY = "contract-sk-0123456789abcdef0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"emulator exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/_emulator/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"emulator not healthy after {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def emulator_url() -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "EMULATOR_HOST": "127.0.0.1",
        "EMULATOR_PORT": str(port),
        "EMULATOR_RENDER_SECONDS": "0.5",
        "EMULATOR_QUEUE_SECONDS": "0.1",
        "EMULATOR_RENDER_SCALE": "0.25",
        "EMULATOR_LIFECYCLE_TICK_SECONDS": "0.1",
        "EMULATOR_KLING_ACCESS_KEY": KLING_ACCESS_KEY,
        "EMULATOR_KLING_SECRET_KEY": KLING_SECRET_KEY,
    }
    with tempfile.NamedTemporaryFile(prefix="emulator-", suffix=".log", delete=False) as handle:
        log = Path(handle.name)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.emulator"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.unlink(missing_ok=True)
