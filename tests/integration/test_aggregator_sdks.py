"""The official fal-client and replicate SDKs against a real emulator server.

replicate-python takes `base_url`, so it runs in this process. fal-client builds its queue URLs
as `https://{FAL_QUEUE_RUN_HOST}/...` (fal_client/auth.py reads the variable at import), so the
emulator is served over TLS with a throwaway self-signed certificate for 127.0.0.1, and the
SDK runs in a child process with `FAL_QUEUE_RUN_HOST=127.0.0.1:<port>/fal/queue` and
`SSL_CERT_FILE` naming that certificate (httpx honours it). Nothing else about the SDKs is
patched: status, result and cancel follow the URLs the submit answer carries, as on fal.
"""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.emulator.app import create_app
from services.emulator.settings import EmulatorSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SCALE = 0.25
SDK_TIMEOUT_S = 120


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def serve(settings: EmulatorSettings, **ssl: str) -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(create_app(settings), log_level="warning", **ssl)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "emulator did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def settings(directory: Path) -> EmulatorSettings:
    return EmulatorSettings(
        data_dir=directory, render_seconds=0.6, queue_seconds=0.1, render_scale=SCALE
    )


@pytest.fixture(scope="module")
def plain_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    yield from serve(settings(tmp_path_factory.mktemp("emulator")))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    directory = tmp_path_factory.mktemp("emulator-tls")
    cert, key = self_signed(directory)
    for port in serve(settings(directory), ssl_certfile=str(cert), ssl_keyfile=str(key)):
        yield port, cert


def assert_mp4(data: bytes, width: int, height: int, seconds: float) -> None:
    with av.open(io.BytesIO(data), mode="r") as container:
        video = container.streams.video[0]
        assert (video.width, video.height) == (width, height)
        assert container.duration is not None
        assert abs(container.duration / 1_000_000 - seconds) < 0.2


@pytest.fixture
def replicate_client(plain_port: int) -> Iterator[Any]:
    from replicate.client import Client

    # The SDK never closes its httpx client; owning the transport lets the test close it.
    transport = httpx.HTTPTransport()
    try:
        yield Client(
            api_token="r8_emulator",
            base_url=f"http://127.0.0.1:{plain_port}/replicate",
            transport=transport,
        )
    finally:
        transport.close()


def test_replicate_sdk_creates_polls_and_downloads_a_prediction(replicate_client: Any) -> None:
    client = replicate_client
    prediction = client.models.predictions.create(
        model="bytedance/seedance-1-pro",
        input={"prompt": "a paper boat on a rainy street", "duration": 2, "resolution": "720p"},
    )
    assert prediction.status == "starting"
    deadline = time.monotonic() + 30
    while prediction.status not in ("succeeded", "failed", "canceled"):
        assert time.monotonic() < deadline, "prediction did not finish"
        time.sleep(0.1)
        prediction.reload()
    assert prediction.status == "succeeded", prediction.error
    assert isinstance(prediction.output, str)
    assert_mp4(httpx.get(prediction.output).content, 320, 180, 2.0)


def test_replicate_sdk_sees_validation_errors_and_cancels(replicate_client: Any) -> None:
    from replicate.exceptions import ReplicateError

    client = replicate_client
    with pytest.raises(ReplicateError) as caught:
        client.models.predictions.create(
            model="bytedance/seedance-1-pro", input={"prompt": "x", "duration": 99}
        )
    assert caught.value.status == 422
    slow = client.models.predictions.create(
        model="bytedance/seedance-1-pro", input={"prompt": "slow [render:30]", "duration": 2}
    )
    slow.cancel()
    slow.reload()
    assert slow.status == "canceled"


FAL_SCRIPT = """
import json, sys, time
import fal_client, httpx

handle = fal_client.submit(
    "fal-ai/bytedance/seedance/v1/pro/text-to-video",
    arguments={"prompt": "a paper boat on a rainy street", "duration": "5", "resolution": "720p"},
)
states = []
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    status = handle.status(with_logs=True)
    states.append(type(status).__name__)
    if isinstance(status, fal_client.Completed):
        break
    time.sleep(0.1)
result = handle.get()
video = httpx.get(result["video"]["url"])
video.raise_for_status()
open(sys.argv[1], "wb").write(video.content)
slow = fal_client.submit(
    "fal-ai/bytedance/seedance/v1/pro/text-to-video",
    arguments={"prompt": "slow [render:30]", "duration": "5"},
)
slow.cancel()
print(json.dumps({"states": states, "request_id": handle.request_id}))
"""


def test_fal_client_submits_polls_fetches_and_cancels_over_tls(
    tls: tuple[int, Path], tmp_path: Path
) -> None:
    port, cert = tls
    out = tmp_path / "fal.mp4"
    env = {
        **os.environ,
        "FAL_KEY": "emulator-fal-key",
        "FAL_QUEUE_RUN_HOST": f"127.0.0.1:{port}/fal/queue",
        "SSL_CERT_FILE": str(cert),
    }
    done = subprocess.run(
        [sys.executable, "-c", FAL_SCRIPT, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=SDK_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["states"][-1] == "Completed"
    assert_mp4(out.read_bytes(), 320, 180, 5.0)
