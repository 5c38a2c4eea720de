"""A tiny RFC 6455 WebSocket client and echo server, for front ends to carry real upgrades.

`EchoServer` answers a GET with an `Upgrade: websocket` and `Connection: Upgrade` handshake (101,
the RFC's accept key; 400 without the Connection token)
and then echoes every text frame back as ``NAME:text``; any other GET gets 200 with its name,
so it also serves health checks and plain requests. `WebSocket` opens one through a front end,
sends masked text frames and reads the server's. Frames up to 64 KiB, text only: enough to
tell a tunnel that carries messages both ways from one that is cut or never upgraded.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import struct
import threading

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())  # RFC 6455 names SHA-1


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"connection closed in the head: {data[:200]!r}")
        data += chunk
        if len(data) > 65536:
            raise ConnectionError("head larger than 64 KiB")
    return data


def encode_frame(payload: bytes, mask: bool, opcode: int = 1) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    else:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """(opcode, payload) of the next frame."""
    b0, b1 = _read_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", _read_exact(sock, 2))
    elif n == 127:
        raise ConnectionError("frame larger than 64 KiB")
    key = _read_exact(sock, 4) if b1 & 0x80 else b""
    data = _read_exact(sock, n)
    if key:
        data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return b0 & 0x0F, data


class EchoServer:
    """A WebSocket echo server (and plain HTTP 200) on `address`, in threads of its own."""

    def __init__(self, name: str, address: str = "127.0.0.1") -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 0))
        self.address = address
        self.port = int(self.sock.getsockname()[1])
        self.conns: set[socket.socket] = set()
        self.upgrades = 0
        # (request path, the peer's address and port) of every plain request: which upstream
        # connection of a front end carried it.
        self.requests: list[tuple[bytes, tuple[str, int]]] = []
        self.lock = threading.Lock()

    def start(self) -> EchoServer:
        self.sock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        with self.lock:
            conns, self.conns = list(self.conns), set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                head = _read_head(conn)
                lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (ln.partition(b":") for ln in lines[1:])
                }
                tokens = {t.strip().lower() for t in headers.get(b"connection", b"").split(b",")}
                if headers.get(b"upgrade", b"").lower() == b"websocket":
                    # RFC 6455 4.2.1: an upgrade needs `Connection: Upgrade` too (a proxy that
                    # drops it, as nginx's `Connection ""` does, breaks real servers' upgrades).
                    if b"upgrade" not in tokens:
                        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                        continue
                    self._upgrade(conn, headers)
                    return
                with self.lock:
                    self.requests.append((lines[0].split(b" ")[1], conn.getpeername()))
                body = self.name.encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"X-Backend: "
                    + body
                    + b"\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                if b"close" in tokens:  # as a real server does: the proxy cannot keep it
                    return
        except (ConnectionError, OSError):
            pass
        finally:
            with self.lock:
                self.conns.discard(conn)
            conn.close()

    def _upgrade(self, conn: socket.socket, headers: dict[bytes, bytes]) -> None:
        key = headers.get(b"sec-websocket-key", b"")
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n"
        )
        with self.lock:
            self.upgrades += 1
        while True:
            opcode, data = read_frame(conn)
            if opcode == 8:  # close: answer it and end
                conn.sendall(encode_frame(data[:2], mask=False, opcode=8))
                return
            if opcode == 9:  # ping
                conn.sendall(encode_frame(data, mask=False, opcode=10))
                continue
            conn.sendall(encode_frame(self.name.encode() + b":" + data, mask=False))


class WebSocket:
    """A client WebSocket over plain TCP to host:port (the front end), through `path`."""

    def __init__(self, host: str, port: int, path: str = "/", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n".encode()
            + b"Sec-WebSocket-Key: "
            + key
            + b"\r\n\r\n"
        )
        head = _read_head(self.sock)
        self.status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if b" 101 " not in head.split(b"\r\n", 1)[0] + b" ":
            self.sock.close()
            raise ConnectionError(f"no upgrade: {head[:300]!r}")
        if accept_key(key) not in head:
            self.sock.close()
            raise ConnectionError(f"wrong Sec-WebSocket-Accept: {head[:300]!r}")

    def exchange(self, text: str) -> str:
        """Send one text message and return the server's answer."""
        self.sock.sendall(encode_frame(text.encode(), mask=True))
        opcode, data = read_frame(self.sock)
        if opcode != 1:
            raise ConnectionError(f"expected a text frame, got opcode {opcode}")
        return data.decode()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(encode_frame(struct.pack("!H", 1000), mask=True, opcode=8))
            read_frame(self.sock)
        self.sock.close()
