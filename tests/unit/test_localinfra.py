"""Unit tests for deploy.localinfra (the local server launcher): the parts needing no server."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploy.localinfra import commands, health, kafka, lifecycle, postgres, procs
from deploy.localinfra.config import (
    ENDPOINTS,
    REPO_ROOT,
    Layout,
    bad_endpoint,
    endpoint_env,
    external_value,
    redacted,
)
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
    names = [s.name for s in resolve([])]
    assert names == ["kafka", "postgres", "mongodb", "minio", "prometheus"]
    assert [s.name for s in resolve(["minio", "kafka"])] == ["kafka", "minio"]
    with pytest.raises(InfraError, match="unknown server"):
        resolve(["redis"])


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
        [sys.executable, "-m", "deploy.localinfra", "up", "redis"],
        cwd=REPO_ROOT,
        env={**os.environ, "REELFORGE_CACHE": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: unknown server(s): redis")
    assert "Traceback" not in result.stderr


# --- postgres: the job store ---------------------------------------------------------------


def _settings(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "-c")


def test_postgres_endpoint_is_the_job_store_uri_and_the_spec_address() -> None:
    assert ENDPOINTS["postgres"][0] == "JOB_STORE_URI"
    ours = "postgresql://postgres@127.0.0.1:15432/reelforge"
    assert endpoint_env({})["JOB_STORE_URI"] == ours
    assert postgres.SPEC.address == ours
    assert postgres.SPEC.port == 15432
    assert external_value("postgres", {"JOB_STORE_URI": ours}) is None
    assert external_value("postgres", {"JOB_STORE_URI": "postgresql://db/x"}) == "postgresql://db/x"


def test_postgres_as_root_runs_as_the_postgres_user_in_a_cluster_keyed_by_the_cache(
    tmp_path: Path,
) -> None:
    one = postgres.cluster(Layout(tmp_path / "a"), as_root=True)
    assert one == postgres.cluster(Layout(tmp_path / "a"), as_root=True)  # stable
    assert one.home != postgres.cluster(Layout(tmp_path / "b"), as_root=True).home
    assert one.home.parent == Path("/var/lib/reelforge")
    assert one.home.name.startswith("postgres-")
    assert one.user == "postgres"
    assert (one.data, one.socket_dir) == (one.home / "data", one.home / "socket")
    mine = postgres.cluster(Layout(tmp_path / "a"), as_root=False)
    assert (mine.home, mine.user) == (tmp_path / "a" / "data" / "postgres", None)
    assert not (tmp_path / "a").exists()  # no side effects


def test_postgres_command_is_the_foreground_postmaster_on_loopback(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    home = postgres.cluster(layout, as_root=True).home
    argv = postgres.command(layout, as_root=True)
    assert argv[:5] == [
        "/usr/lib/postgresql/15/bin/postgres",
        "-D",
        str(home / "data"),
        "-p",
        "15432",
    ]
    settings = _settings(argv)
    assert settings["listen_addresses"] == "127.0.0.1"
    assert settings["unix_socket_directories"] == str(home / "socket")
    assert settings["max_connections"] == "200"
    assert settings["shared_buffers"] == "256MB"
    assert settings["fsync"] == "on"
    assert settings["synchronous_commit"] == "on"
    assert settings["logging_collector"] == "off"  # stderr -> run/postgres.log
    mine = postgres.command(layout, as_root=False)
    assert mine[2] == str(tmp_path / "data" / "postgres" / "data")


def test_postgres_stops_fast_and_runs_in_a_directory_its_user_can_enter(tmp_path: Path) -> None:
    assert postgres.SPEC.stop_signal == signal.SIGINT  # fast shutdown, not "smart" (SIGTERM)
    layout = Layout(tmp_path)
    assert postgres.SPEC.workdir(layout) == postgres.cluster(layout).home
    assert postgres.SPEC.run_as() == ("postgres" if os.geteuid() == 0 else None)


def test_postgres_cluster_is_an_orphan_once_its_cache_no_longer_links_it(tmp_path: Path) -> None:
    home = tmp_path / "clusters" / "postgres-abc"
    home.mkdir(parents=True)
    assert not postgres.is_orphan(home)  # no cache-root file: never ours to remove
    cache = tmp_path / "cache"
    (home / "cache-root").write_text(f"{cache}\n")
    assert postgres.is_orphan(home)  # the cache (or its data/postgres) is gone
    (cache / "data").mkdir(parents=True)
    (cache / "data" / "postgres").symlink_to(home)
    assert not postgres.is_orphan(home)
    (cache / "data" / "postgres").unlink()
    (cache / "data" / "postgres").symlink_to(tmp_path / "clusters" / "postgres-other")
    assert postgres.is_orphan(home)


def test_postmaster_counts_as_running_only_while_its_pid_serves_that_data_dir(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    assert not postgres.postmaster_running(data)
    argv = [sys.executable, "-c", "import time; time.sleep(30)", "-D", str(data)]
    process = procs.start(argv, {}, tmp_path / "x.log", cwd=tmp_path)  # returns once exec'd
    try:
        (data / "postmaster.pid").write_text(f"{process.pid}\n{data}\n")
        assert postgres.postmaster_running(data)
        (data / "postmaster.pid").write_text(f"{os.getpid()}\n{data}\n")  # some other process
        assert not postgres.postmaster_running(data)
    finally:
        process.kill()
        process.wait()


def test_malformed_job_store_uri_is_a_one_line_error_with_the_password_masked(
    tmp_path: Path,
) -> None:
    assert bad_endpoint("postgres", "postgresql://u:pw@db:5432/x") is None
    assert bad_endpoint("postgres", "postgres://db/x") is None
    assert bad_endpoint("kafka", "anything") is None
    assert redacted("postgresql://u:pw@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redacted("postgresql://u@db/x") == "postgresql://u@db/x"
    result = subprocess.run(
        [sys.executable, "-m", "deploy.localinfra", "up", "postgres"],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "REELFORGE_CACHE": str(tmp_path),
            "JOB_STORE_URI": "mongodb://u:pw@db:27017/",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "error: postgres: JOB_STORE_URI=mongodb://u:***@db:27017/ is not a postgresql:// URL "
        "(unset it to use postgresql://postgres@127.0.0.1:15432/reelforge)\n"
    )
    assert not (tmp_path / "run").exists()  # refused before anything was touched


def test_pg_startup_message_is_protocol_3_with_user_and_database() -> None:
    message = health.encode_pg_startup("postgres", "reelforge")
    length, protocol = struct.unpack_from("!ii", message)
    assert (length, protocol) == (len(message), 196608)
    assert b"\x00user\x00postgres\x00database\x00reelforge\x00" in message
    assert message.endswith(b"\x00\x00")


def test_pg_session_is_ready_only_after_authentication_ok_then_ready_for_query() -> None:
    auth_ok = (b"R", b"\x00\x00\x00\x00")
    ready = (b"Z", b"I")
    assert health.pg_session_ready([auth_ok]) is None
    assert health.pg_session_ready([auth_ok, (b"S", b"a\x00b\x00"), (b"K", b"12345678"), ready])
    assert health.pg_session_ready([(b"E", b"SFATAL\x00C57P03\x00\x00")]) is False  # starting up
    assert health.pg_session_ready([(b"R", b"\x00\x00\x00\x0a")]) is False  # SASL: not trust
    assert health.pg_session_ready([ready]) is False


def _fake_postgres(replies: bytes) -> tuple[int, threading.Thread, list[bytes]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    received: list[bytes] = []

    def serve() -> None:
        with listener, listener.accept()[0] as conn:
            received.append(conn.recv(4096))
            conn.sendall(replies)
            conn.settimeout(2)
            with contextlib.suppress(OSError):
                received.append(conn.recv(4096))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return int(listener.getsockname()[1]), thread, received


def _pg_message(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


def test_postgres_ready_speaks_the_startup_protocol_and_terminates_politely() -> None:
    replies = (
        _pg_message(b"R", b"\x00\x00\x00\x00")
        + _pg_message(b"S", b"server_version\x0015.18\x00")
        + _pg_message(b"K", b"\x00\x00\x00\x01\x00\x00\x00\x02")
        + _pg_message(b"Z", b"I")
    )
    port, thread, received = _fake_postgres(replies)
    assert health.postgres_ready("127.0.0.1", port, "postgres", "reelforge")
    thread.join(5)
    assert received[0] == health.encode_pg_startup("postgres", "reelforge")
    assert received[1] == b"X\x00\x00\x00\x04"  # Terminate


def test_postgres_that_is_starting_up_or_absent_is_not_ready() -> None:
    starting = _pg_message(b"E", b"SFATAL\x00C57P03\x00Mthe database system is starting up\x00\x00")
    port, thread, _ = _fake_postgres(starting)
    assert not health.postgres_ready("127.0.0.1", port, "postgres", "reelforge")
    thread.join(5)
    assert not health.postgres_ready("127.0.0.1", _free_port(), "postgres", "reelforge")


def test_stop_sends_the_specs_signal_first(tmp_path: Path) -> None:
    """A process that ignores SIGTERM still stops at once when the spec's signal is SIGINT."""
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"
    argv = [sys.executable, "-c", code]
    process = procs.start(argv, {}, tmp_path / "x.log", cwd=tmp_path)
    try:
        record = procs.PidRecord(process.pid, argv, "v", "addr", 0.0)
        began = time.monotonic()
        assert procs.stop(record, timeout=20.0, sig=signal.SIGINT)
        assert time.monotonic() - began < 10  # no SIGKILL fallback needed
    finally:
        process.kill()
        process.wait()


def test_credentials_name_the_users_ids_and_unknown_users_fail() -> None:
    creds = procs.credentials("root")
    assert (creds["user"], creds["group"]) == (0, 0)
    with pytest.raises(InfraError, match="no system user 'no-such-user-here'"):
        procs.credentials("no-such-user-here")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
def test_server_started_as_another_user_keeps_its_exact_cmdline(tmp_path: Path) -> None:
    try:
        uid = procs.credentials("postgres")["user"]
    except InfraError:
        pytest.skip("no postgres system user")
    argv = ["sleep", "30"]
    process = procs.start(argv, {}, tmp_path / "x.log", cwd=Path("/"), user="postgres")
    try:
        record = procs.PidRecord(process.pid, argv, "v", "addr", 0.0)
        assert procs.is_ours(record)  # the pid is the server itself, not a runuser in between
        status = Path(f"/proc/{process.pid}/status").read_text()
        assert f"Uid:\t{uid}\t" in status
        assert procs.stop(record, timeout=5.0)
    finally:
        process.kill()
        process.wait()


def test_prometheus_runs_without_the_lifecycle_api_and_reloads_on_sighup(tmp_path: Path) -> None:
    from deploy.localinfra import prometheus

    layout = Layout(tmp_path)
    assert not any("lifecycle" in arg for arg in prometheus._command(layout))
    assert prometheus.reload_config(layout) is False  # none of ours: nothing is signalled
    # A process of ours gets the SIGHUP (a sleeper that records it stands in for Prometheus).
    marker = tmp_path / "hup"
    script = (
        "import signal, sys, time, pathlib\n"
        f"hup = lambda *a: (pathlib.Path({str(marker)!r}).touch(), sys.exit(0))\n"
        "signal.signal(signal.SIGHUP, hup)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    argv = [sys.executable, "-c", script]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        layout.run_dir.mkdir(parents=True, exist_ok=True)
        record = procs.PidRecord(child.pid, argv, "test", "-", time.time())
        procs.write_record(layout.pid_file(prometheus.NAME), record)
        assert prometheus.reload_config(layout) is True
        assert child.wait(timeout=10) == 0
        assert marker.exists()
    finally:
        child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
