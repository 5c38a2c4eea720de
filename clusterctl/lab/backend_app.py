"""Lab backend HTTP application (runs *inside* a lab backend host, stdlib only).

Installed on each backend host as /srv/app/bin/app.py and started by
/srv/app/bin/deploy.  It serves the release that /srv/app/current points to
when the process starts:

* every path answers 200 with ``X-Backend``/``X-Release`` headers and a JSON
  body ``{"host", "release", "path", "method", "body_length"}``;
* a ``SESSIONID`` cookie is set when the request carries none;
* ``/health`` answers ``200 ok <release>`` or ``503 broken <release>`` when the
  release directory contains a ``BROKEN`` file;
* ``/slow?seconds=N`` holds the request open N seconds (max 60);
* SIGTERM drains: the listening socket is closed, idle keep-alive connections
  are shut down, in-flight requests finish, then the process exits.

The listening socket uses SO_REUSEPORT so a new release can bind the port
while the old process is still draining.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

MAX_SLOW_SECONDS = 60.0
MAX_BODY = 64 * 1024 * 1024


def read_body(headers: Any, rfile: Any, limit: int = MAX_BODY) -> int:
    """Read a request body (Content-Length or chunked) and return its length in bytes."""
    if headers.get("Transfer-Encoding", "").lower() == "chunked":
        total = 0
        while True:
            line = rfile.readline(1024)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return total
            total += len(rfile.read(size))
            rfile.readline(8)
            if total > limit:
                raise ValueError("body too large")
    length = int(headers.get("Content-Length") or 0)
    if length > limit:
        raise ValueError("body too large")
    remaining = length
    while remaining > 0:
        chunk = rfile.read(min(remaining, 65536))
        if not chunk:
            break
        remaining -= len(chunk)
    return length - remaining


class State:
    """Process-wide state shared by the request handlers."""

    host = socket.gethostname()
    release = "unknown"
    release_dir = ""
    draining = threading.Event()
    lock = threading.Lock()
    idle: ClassVar[set[socket.socket]] = set()


class Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 128

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "clusterctl-lab-app/1"
    timeout = 30  # idle keep-alive connections are closed after this

    def log_message(self, format: str, *args: object) -> None:
        return  # keep the log quiet under load; errors still go to stderr

    served = 0  # requests answered on this connection so far

    def handle_one_request(self) -> None:
        # Only a connection waiting for its *next* request is idle; a fresh one
        # (accepted just before a drain) still gets its first request served.
        if self.served:
            if State.draining.is_set():
                self.close_connection = True
                return
            with State.lock:
                State.idle.add(self.connection)
        try:
            super().handle_one_request()
        finally:
            self.served += 1
            with State.lock:
                State.idle.discard(self.connection)

    def parse_request(self) -> bool:
        with State.lock:
            State.idle.discard(self.connection)
        return super().parse_request()

    # -- helpers -----------------------------------------------------------
    def _read_body(self) -> int:
        return read_body(self.headers, self.rfile)

    def _has_session(self) -> bool:
        raw = self.headers.get("Cookie")
        if not raw:
            return False
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(raw)
        except CookieError:
            return False
        return "SESSIONID" in cookie

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", State.host)
        self.send_header("X-Release", State.release)
        self.send_header("Cache-Control", "no-store")
        if not self._has_session():
            token = secrets.token_hex(16)
            self.send_header("Set-Cookie", f"SESSIONID={token}; Path=/; HttpOnly")
        if State.draining.is_set():
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        try:
            body_length = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send(400, f"bad request: {exc}\n".encode(), "text/plain")
            return
        if url.path == "/health":
            broken = (Path(State.release_dir) / "BROKEN").exists()
            if broken:
                self._send(503, f"broken {State.release}\n".encode(), "text/plain")
            else:
                self._send(200, f"ok {State.release}\n".encode(), "text/plain")
            return
        if url.path == "/slow":
            try:
                seconds = float(parse_qs(url.query).get("seconds", ["1"])[0])
            except ValueError:
                seconds = 1.0
            time.sleep(min(max(seconds, 0.0), MAX_SLOW_SECONDS))
        payload = {
            "host": State.host,
            "release": State.release,
            "path": self.path,
            "method": self.command,
            "body_length": body_length,
        }
        self._send(200, (json.dumps(payload) + "\n").encode(), "application/json")

    do_GET = _handle
    do_HEAD = _handle
    do_POST = _handle
    do_PUT = _handle
    do_DELETE = _handle
    do_PATCH = _handle
    do_OPTIONS = _handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--app-root", default="/srv/app")
    parser.add_argument("--ready-file", default="")
    args = parser.parse_args(argv)

    release_dir = (Path(args.app_root) / "current").resolve()
    State.release_dir = str(release_dir)
    State.release = release_dir.name
    server = Server((args.bind, args.port), Handler)

    def on_term(signum: int, frame: FrameType | None) -> None:
        if not State.draining.is_set():
            State.draining.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if args.ready_file:
        tmp = Path(args.ready_file + ".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        tmp.replace(args.ready_file)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        # Serve whatever is already queued on the listener, then close it
        # (the new release shares the port through SO_REUSEPORT).
        server.socket.setblocking(False)
        while True:
            try:
                request, client = server.socket.accept()
            except OSError:
                break
            request.setblocking(True)
            server.process_request(request, client)
        server.socket.close()
        if args.ready_file:  # tell the deploy script the port is released
            (Path(args.ready_file).parent / f"closed.{os.getpid()}").write_text("closed\n")
        with State.lock:
            idle = list(State.idle)
        for conn in idle:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()  # joins in-flight request threads
    return 0


if __name__ == "__main__":
    sys.exit(main())
