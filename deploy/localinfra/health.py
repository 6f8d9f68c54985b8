"""Cheap readiness probes: a TCP connect, an HTTP GET, a MongoDB ``hello`` over OP_MSG, and a
PostgreSQL session start (protocol 3.0) up to ReadyForQuery."""

from __future__ import annotations

import socket
import struct
import urllib.error
import urllib.request

OP_MSG = 2013
PG_PROTOCOL_3 = 196608  # major 3, minor 0


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts a TCP connection on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status) == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _bson_hello() -> bytes:
    db = b"admin\x00"
    body = (
        b"\x10hello\x00"
        + struct.pack("<i", 1)
        + b"\x02$db\x00"
        + struct.pack("<i", len(db))
        + db
        + b"\x00"
    )
    return struct.pack("<i", len(body) + 4) + body


def encode_hello(request_id: int = 1) -> bytes:
    """An OP_MSG carrying ``{hello: 1, $db: "admin"}``."""
    payload = struct.pack("<I", 0) + b"\x00" + _bson_hello()
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, OP_MSG) + payload


def reply_is_ok(reply: bytes) -> bool:
    """True when ``reply`` is an OP_MSG whose body document has ``ok: 1.0``."""
    if len(reply) < 21:
        return False
    _length, _req, _to, opcode = struct.unpack_from("<iiii", reply)
    marker = b"\x01ok\x00"
    at = reply.find(marker, 21)
    if opcode != OP_MSG or at < 0 or at + len(marker) + 8 > len(reply):
        return False
    return bool(struct.unpack_from("<d", reply, at + len(marker))[0] == 1.0)


def mongo_hello(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when a MongoDB-wire server answers ``hello`` with ok: 1."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(encode_hello())
            header = _recv_exact(sock, 4)
            (length,) = struct.unpack("<i", header)
            if not 21 <= length <= 16 * 1024 * 1024:
                return False
            return reply_is_ok(header + _recv_exact(sock, length - 4))
    except OSError:
        return False


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed mid-reply")
        chunks.extend(chunk)
    return bytes(chunks)


def encode_pg_startup(user: str, database: str) -> bytes:
    """A PostgreSQL StartupMessage (protocol 3.0) for ``user`` on ``database``."""
    params = {"user": user, "database": database, "application_name": "reelforge-health"}
    pairs = b"".join(f"{key}\x00{value}\x00".encode() for key, value in params.items())
    body = struct.pack("!i", PG_PROTOCOL_3) + pairs + b"\x00"
    return struct.pack("!i", len(body) + 4) + body


def pg_session_ready(messages: list[tuple[bytes, bytes]]) -> bool | None:
    """Judge the server's answers to a StartupMessage so far: True once ReadyForQuery follows
    AuthenticationOk, False on an error (e.g. 57P03 "starting up", 3D000 no such database) or an
    authentication we cannot answer, None while undecided."""
    authenticated = False
    for kind, payload in messages:
        if kind == b"R":
            if payload[:4] != b"\x00\x00\x00\x00":  # anything but AuthenticationOk (trust)
                return False
            authenticated = True
        elif kind == b"E":
            return False
        elif kind == b"Z":
            return authenticated
    return None


def postgres_ready(host: str, port: int, user: str, database: str, timeout: float = 2.0) -> bool:
    """True when a PostgreSQL server accepts a session for ``user`` on ``database`` without a
    password, i.e. it is up, out of recovery and the database exists."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(encode_pg_startup(user, database))
            messages: list[tuple[bytes, bytes]] = []
            verdict = None
            while verdict is None and len(messages) < 64:
                kind = _recv_exact(sock, 1)
                (length,) = struct.unpack("!i", _recv_exact(sock, 4))
                if not 4 <= length <= 1024 * 1024:
                    return False
                messages.append((kind, _recv_exact(sock, length - 4)))
                verdict = pg_session_ready(messages)
            if verdict:
                sock.sendall(b"X" + struct.pack("!i", 4))  # Terminate: no "unexpected EOF" log
            return bool(verdict)
    except OSError:
        return False
