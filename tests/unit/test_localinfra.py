"""Unit tests for deploy.localinfra (the local server launcher): the parts needing no server."""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.localinfra import commands, health, kafka, lifecycle, procs
from deploy.localinfra.config import REPO_ROOT, Layout, endpoint_env, external_value
from deploy.localinfra.errors import InfraError
from deploy.localinfra.registry import resolve
from deploy.localinfra.spec import ServerSpec, has_stamp, write_stamp


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fake_spec(argv: list[str], *, healthy: bool, timeout: float = 5.0) -> ServerSpec:
    port = _free_port()
    return ServerSpec(
        name="kafka",
        version="test",
        port=port,
        address=f"127.0.0.1:{port}",
        startup_timeout=timeout,
        installed=lambda layout: True,
        install=lambda layout, log: None,
        prepare=lambda layout: None,
        command=lambda layout: argv,
        healthy=lambda layout: healthy,
        stop_timeout=5.0,
    )


def test_kafka_config_is_a_single_node_static_quorum_on_loopback(tmp_path: Path) -> None:
    props = _properties(kafka.render_properties(tmp_path / "log"))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert "controller.quorum.bootstrap.servers" not in props  # never mix quorum forms
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["log.dirs"] == str(tmp_path / "log")
    assert props["num.partitions"] == "3"
    assert props["auto.create.topics.enable"] == "true"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["offsets.topic.num.partitions"] == "3"
    factors = [v for k, v in props.items() if k.endswith("replication.factor")]
    assert factors
    assert set(factors) == {"1"}


def test_kafka_cluster_id_is_16_bytes_of_urlsafe_base64() -> None:
    cluster_id = kafka.new_cluster_id()
    assert len(cluster_id) == 22
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_server_is_external_only_when_its_variable_points_elsewhere() -> None:
    assert external_value("kafka", {}) is None
    assert external_value("kafka", {"KAFKA_BOOTSTRAP_SERVERS": ""}) is None
    assert external_value("kafka", {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092"}) is None
    assert external_value("minio", {"S3_ENDPOINT": "http://127.0.0.1:19000/"}) is None
    assert external_value("kafka", {"KAFKA_BOOTSTRAP_SERVERS": "broker:9092"}) == "broker:9092"


def test_env_uses_external_endpoints_and_own_credentials_only_for_own_minio() -> None:
    ours = endpoint_env({})
    assert ours["MONGODB_URI"] == "mongodb://127.0.0.1:27117/"
    assert ours["S3_ACCESS_KEY"] == "reelforge"
    theirs = endpoint_env({"S3_ENDPOINT": "http://s3.example:9000", "S3_ACCESS_KEY": "k"})
    assert theirs["S3_ENDPOINT"] == "http://s3.example:9000"
    assert theirs["S3_ACCESS_KEY"] == "k"
    assert "S3_SECRET_KEY" not in theirs


def test_env_command_prints_shell_export_lines() -> None:
    out = io.StringIO()
    assert commands.env({"MONGODB_URI": "mongodb://db:27017/?a=1&b=2"}, out) == 0
    lines = out.getvalue().splitlines()
    assert "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092" in lines
    assert "export MONGODB_URI='mongodb://db:27017/?a=1&b=2'" in lines


def test_pid_counts_as_ours_only_while_its_cmdline_matches(tmp_path: Path) -> None:
    argv = ["sleep", "30"]
    process = procs.start(argv, {}, tmp_path / "sleep.log", cwd=tmp_path)
    try:
        record = procs.PidRecord(process.pid, argv, "v", "addr", 0.0)
        procs.write_record(tmp_path / "x.pid", record)
        assert procs.read_record(tmp_path / "x.pid") == record
        assert procs.is_ours(record)
        assert not procs.is_ours(procs.PidRecord(process.pid, ["sleep", "31"], "v", "addr", 0.0))
        assert procs.stop(record, timeout=5.0)
        assert not procs.is_ours(record)
    finally:
        process.kill()
        process.wait()


def test_stop_never_signals_a_process_that_is_not_ours() -> None:
    impostor = procs.PidRecord(os.getpid(), ["not", "what", "runs"], "v", "addr", 0.0)
    assert procs.stop(impostor, timeout=0.1) is False


def test_unreadable_pid_file_reads_as_no_record(tmp_path: Path) -> None:
    (tmp_path / "bad.pid").write_text("{not json")
    assert procs.read_record(tmp_path / "bad.pid") is None
    assert procs.read_record(tmp_path / "missing.pid") is None


def test_port_in_use_message_names_port_pid_and_setting() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        message = procs.port_conflict("kafka", "127.0.0.1", port, "", "KAFKA_BOOTSTRAP_SERVERS")
    assert message == (
        f"kafka: 127.0.0.1:{port} is in use by another process (pid {os.getpid()}); "
        "stop it or set KAFKA_BOOTSTRAP_SERVERS to use it"
    )


def test_free_port_is_no_conflict() -> None:
    assert procs.port_conflict("kafka", "127.0.0.1", _free_port(), "", "X") is None


def test_hello_is_an_op_msg_and_ok_reply_is_recognised() -> None:
    request = health.encode_hello(request_id=7)
    length, request_id, _, opcode = struct.unpack_from("<iiii", request)
    assert (length, request_id, opcode) == (len(request), 7, 2013)
    assert b"hello\x00" in request
    assert b"admin\x00" in request

    def reply(ok: float) -> bytes:
        doc = b"\x01ok\x00" + struct.pack("<d", ok) + b"\x00"
        body = struct.pack("<I", 0) + b"\x00" + struct.pack("<i", len(doc) + 4) + doc
        return struct.pack("<iiii", 16 + len(body), 1, 7, 2013) + body

    assert health.reply_is_ok(reply(1.0))
    assert not health.reply_is_ok(reply(0.0))
    assert not health.reply_is_ok(b"short")


def test_names_resolve_in_start_order_and_unknown_names_fail() -> None:
    assert [s.name for s in resolve([])] == ["kafka", "mongodb", "minio", "prometheus"]
    assert [s.name for s in resolve(["minio", "kafka"])] == ["kafka", "minio"]
    with pytest.raises(InfraError, match="unknown server"):
        resolve(["postgres"])


def test_install_stamp_is_keyed_by_version(tmp_path: Path) -> None:
    write_stamp(tmp_path, "kafka", "3.9.1")
    assert has_stamp(tmp_path, "kafka", "3.9.1")
    assert not has_stamp(tmp_path, "kafka", "4.0.0")


def test_server_that_exits_while_starting_reports_its_log(tmp_path: Path) -> None:
    spec = _fake_spec(["sh", "-c", "echo boom-from-server; exit 2"], healthy=False)
    with pytest.raises(InfraError, match="exited with code 2") as caught:
        lifecycle.ensure_running(spec, Layout(tmp_path))
    assert "boom-from-server" in str(caught.value)
    assert not Layout(tmp_path).pid_file("kafka").exists()


def test_server_not_healthy_in_time_is_stopped_and_reported(tmp_path: Path) -> None:
    spec = _fake_spec(["sh", "-c", "echo still-waiting; sleep 30; true"], healthy=False, timeout=1)
    with pytest.raises(InfraError, match="not healthy within 1s") as caught:
        lifecycle.ensure_running(spec, Layout(tmp_path))
    assert "still-waiting" in str(caught.value)
    assert lifecycle.inspect(spec, Layout(tmp_path), {}).state == "stopped"


def test_running_server_is_reused_then_stopped(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    spec = _fake_spec(["sleep", "30"], healthy=True)
    started, _ = lifecycle.ensure_running(spec, layout)
    try:
        again, line = lifecycle.ensure_running(spec, layout)
        assert (started, again) == (True, False)
        assert "reused" in line
        assert lifecycle.inspect(spec, layout, {}).state == "running"
    finally:
        assert "stopped pid" in lifecycle.stop(spec, layout)
    assert lifecycle.inspect(spec, layout, {}).state == "stopped"


def test_prometheus_local_config_is_valid() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    config = REPO_ROOT / "deploy" / "prometheus" / "prometheus.local.yml"
    result = subprocess.run(
        [promtool, "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deploy.localinfra", "up", "postgres"],
        cwd=REPO_ROOT,
        env={**os.environ, "REELFORGE_CACHE": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: unknown server(s): postgres")
    assert "Traceback" not in result.stderr
