"""Small real backend servers on loopback addresses, for front ends to balance over.

`HttpBackend` answers every request with its own name (an ``X-Backend`` header and a JSON body
that also echoes the method, path, headers and body length it received), ``/health`` with
200 (or 503 once `healthy` is False), and ``/slow?ms=N`` only after N milliseconds. `TcpEchoBackend` answers each chunk of bytes with
``<name>:`` followed by the bytes. Both stop for real: the listening socket and every open
connection are closed, so a front end sees connection refused, as with a crashed server.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class IncompleteBody(Exception):
    """The connection ended before the request body did: the request never fully arrived."""


def read_body_strictly(headers: Any, rfile: Any) -> int:
    """The body's length, read to its end (the last chunk, or all of Content-Length).

    A body cut short, as a front end that aborts an upload leaves it, raises IncompleteBody:
    such a request is not counted as delivered, as a real application would not act on it.
    """
    if headers.get("Transfer-Encoding", "").lower() == "chunked":
        total = 0
        while True:
            line = rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise IncompleteBody(f"after {total} bytes")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (trailer := rfile.readline(1024)) not in (b"\r\n", b"\n"):
                    if not trailer:
                        raise IncompleteBody("in the trailers")
                return total
            data = rfile.read(size)
            if len(data) < size or not rfile.readline(8).endswith(b"\n"):
                raise IncompleteBody(f"after {total + len(data)} bytes")
            total += size
    length = int(headers.get("Content-Length") or 0)
    remaining = length
    while remaining > 0:
        chunk = rfile.read(min(remaining, 65536))
        if not chunk:
            raise IncompleteBody(f"after {length - remaining} of {length} bytes")
        remaining -= len(chunk)
    return length


class _Tracked:
    """Open connections of a server, so stop() can cut keep-alive connections too."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conns: set[socket.socket] = set()

    def add(self, conn: socket.socket) -> None:
        with self.lock:
            self.conns.add(conn)

    def discard(self, conn: socket.socket) -> None:
        with self.lock:
            self.conns.discard(conn)

    def cut_all(self) -> None:
        with self.lock:
            conns, self.conns = list(self.conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    backend: HttpBackend

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a front end cutting a connection (a 413, a stop) is not news


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer
    timeout = 30

    def log_message(self, format: str, *args: object) -> None:
        return

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without this, Nagle's algorithm and the
        # front end's delayed ACK hold every response back ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.backend.conns.add(self.connection)

    def finish(self) -> None:
        self.server.backend.conns.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _read_body(self) -> int:
        return read_body_strictly(self.headers, self.rfile)

    def _handle(self) -> None:
        b = self.server.backend
        try:
            body_length = self._read_body()
        except (IncompleteBody, ValueError):
            self.close_connection = True  # no answer, no hit: nothing was delivered
            return
        if self.path.split("?", 1)[0] == "/health":
            status, body, ctype = (
                (200, b"ok\n", "text/plain") if b.healthy else (503, b"down\n", "text/plain")
            )
            b.checks += 1
        else:
            with b.lock:
                b.hits[self.path] += 1
            if self.path.startswith("/slow?ms="):  # answer late: past a front end's timeout
                time.sleep(int(self.path.split("=", 1)[1]) / 1000)
            status, ctype = 200, "application/json"
            reply: dict[str, Any] = {
                "backend": b.name,
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body_length": body_length,
            }
            body = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", b.name)
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = _handle
    do_HEAD = _handle
    do_POST = _handle
    do_PUT = _handle


class _Served:
    """A server in a thread, on a port the OS picks unless given; stop() also cuts every open
    connection, so the port then refuses connections as a stopped backend would."""

    def __init__(self, name: str, address: str, port: int = 0) -> None:
        self.name = name
        self.address = address
        self.port = port
        self.conns = _Tracked()
        self._server: socketserver.TCPServer | None = None
        self._thread: threading.Thread | None = None

    def _make(self) -> socketserver.TCPServer:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = self._make()
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self.conns.cut_all()
        if self._thread is not None:
            self._thread.join(timeout=5)


class HttpBackend(_Served):
    """An HTTP server on `address` that answers with its `name`; port 0 picks a free one."""

    def __init__(self, name: str, address: str, port: int = 0) -> None:
        super().__init__(name, address, port)
        self.healthy = True
        self.checks = 0
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()

    def _make(self) -> socketserver.TCPServer:
        server = _HttpServer((self.address, self.port), _Handler)
        server.backend = self
        return server

    def total_hits(self) -> int:
        with self.lock:
            return sum(self.hits.values())


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    backend: TcpEchoBackend

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


class _EchoHandler(socketserver.BaseRequestHandler):
    server: _TcpServer

    def handle(self) -> None:
        b = self.server.backend
        b.conns.add(self.request)
        try:
            while True:
                data = self.request.recv(65536)
                if not data:
                    return
                self.request.sendall(b.name.encode() + b":" + data)
        except OSError:
            return
        finally:
            b.conns.discard(self.request)


class TcpEchoBackend(_Served):
    """A TCP server that answers every chunk it reads with ``<name>:<chunk>``."""

    def _make(self) -> socketserver.TCPServer:
        server = _TcpServer((self.address, self.port), _EchoHandler)
        server.backend = self
        return server
