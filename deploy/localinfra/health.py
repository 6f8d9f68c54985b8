"""Cheap readiness probes: a TCP connect, an HTTP GET, and a MongoDB ``hello`` over OP_MSG."""

from __future__ import annotations

import socket
import struct
import urllib.error
import urllib.request

OP_MSG = 2013


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
