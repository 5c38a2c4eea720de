"""A plain HTTP(S) client for tests: one request per connection, to 127.0.0.1 only.

TLS connections send the SNI name `host` and check the server's certificate against the
inventory's self-signed example.com certificate, so a front end serving the wrong one fails.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import warnings
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CERT = REPO / "inventories" / "files" / "example.com.crt"
EXAMPLE_KEY = REPO / "inventories" / "files" / "example.com.key"


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def backend(self) -> str | None:
        return self.headers.get("X-Backend")

    def header_values(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []

    def cookies(self) -> dict[str, str]:
        """Cookies the response sets, name -> value."""
        jar: SimpleCookie = SimpleCookie()
        for raw in self.header_values("Set-Cookie"):
            jar.load(raw)
        return {k: m.value for k, m in jar.items()}

    def sent_headers(self) -> dict[str, list[str]]:
        """Headers the backend received (lower-cased names), from its JSON echo."""
        out: dict[str, list[str]] = {}
        for k, v in self.data.get("headers", []):
            out.setdefault(k.lower(), []).append(v)
        return out


def tls_context(
    minimum: ssl.TLSVersion | None = None, maximum: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(EXAMPLE_CERT))
    with warnings.catch_warnings():  # old versions are deprecated: tests offer them on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        if minimum is not None:
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
    return ctx


class _TLSConnection(http.client.HTTPConnection):
    """HTTPS to an address, with SNI and certificate checks for a name (`sni`)."""

    def __init__(self, port: int, sni: str, ctx: ssl.SSLContext, timeout: float) -> None:
        super().__init__("127.0.0.1", port, timeout=timeout)
        self._sni = sni
        self._ctx = ctx

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self._sni)


def request(
    port: int,
    path: str = "/",
    *,
    host: str | None = "www.example.com",
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
    tls: bool = False,
    ctx: ssl.SSLContext | None = None,
    timeout: float = 10.0,
) -> Reply:
    conn: http.client.HTTPConnection
    if tls:
        sni = (host or "www.example.com").split(":")[0]
        conn = _TLSConnection(port, sni, ctx or tls_context(), timeout)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if cookies:
            conn.putheader("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.putheader("Connection", "close")
        conn.endheaders(body)
        resp = conn.getresponse()
        raw = resp.read()
        data: dict[str, Any] = {}
        if resp.headers.get_content_type() == "application/json":
            data = json.loads(raw)
        return Reply(resp.status, resp.headers, raw, data)
    finally:
        conn.close()


def chunked_post(
    port: int,
    path: str,
    size: int,
    *,
    chunk: int = 16384,
    host: str = "www.example.com",
    timeout: float = 20.0,
) -> tuple[int, dict[str, Any]]:
    """POST `size` bytes with Transfer-Encoding: chunked over a raw socket: (status, JSON body).

    The body is written from a thread while this one reads the answer, so a server that
    answers (413) and closes before the body is all sent is still heard: the writer's broken
    pipe is expected then, not a failure.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def write() -> None:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
        )
        block = b"x" * chunk
        with contextlib.suppress(OSError):
            sock.sendall(head.encode())
            sent = 0
            while sent < size:
                n = min(chunk, size - sent)
                sock.sendall(b"%x\r\n" % n + block[:n] + b"\r\n")
                sent += n
            sock.sendall(b"0\r\n\r\n")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        raw = resp.read()
    finally:
        sock.close()
        writer.join(timeout)
    data = json.loads(raw) if resp.headers.get_content_type() == "application/json" else {}
    return resp.status, data
