"""A bounded HTTP load client: steady GETs and POSTs, keep-alive on or off, every failure counted.

It behaves as browsers do in one respect only: a request whose *reused* keep-alive connection
was closed before any byte of the answer arrived is sent once more on a new connection (a server
may close an idle connection at any moment; RFC 9112 section 9.3.1). Such a request is a failed
request all the same (a client that never resends, as wrk, sees it fail), and the resends are
also counted apart, so a report shows where its failures came from. Everything else, a 5xx, a
refused or reset connection, a timeout, is a failed request too.

It only sends to loopback and to the lab's 198.18.0.0/15 hosts, and stops by itself after
`duration` seconds or `max_requests` requests.
"""

from __future__ import annotations

import http.client
import ipaddress
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from clusterctl.errors import ClusterctlError
from clusterctl.model.queries import host_port

ALLOWED = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("198.18.0.0/15"))

REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5


def _lab_tls() -> ssl.SSLContext:
    # Targets are loopback and lab hosts only (check_target), whose certificates name the
    # inventory's host names, not the addresses load is sent to: encrypted, not verified.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class LoadReport:
    requests: int = 0
    failed: int = 0
    resent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    backends: Counter[str] = field(default_factory=Counter)
    # "backend/release" of every answer carrying both headers (the lab app sends them).
    served: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    slowest: float = 0.0  # seconds of the longest request, answered or failed

    def merge(self, other: LoadReport) -> None:
        self.requests += other.requests
        self.failed += other.failed
        self.resent += other.resent
        self.statuses.update(other.statuses)
        self.errors.update(other.errors)
        self.backends.update(other.backends)
        self.served.update(other.served)
        self.slowest = max(self.slowest, other.slowest)

    def summary(self) -> str:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        errs = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"
        return (
            f"{self.requests} requests in {self.seconds:.1f}s, {self.failed} failed "
            f"(status {codes or '-'}; errors {errs}; of them resent on closed keep-alive "
            f"{self.resent}; "
            f"slowest {self.slowest:.2f}s)"
        )


def check_target(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ClusterctlError(f"load target {url!r} has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClusterctlError(f"load target {url!r} must be an http:// or https:// URL")
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        raise ClusterctlError(f"load target {url!r} must be an IP address") from None
    if not any(address in net for net in ALLOWED):
        raise ClusterctlError(
            f"load target {address} is outside loopback and the lab's 198.18.0.0/15; refused"
        )
    path = parts.path or "/"
    return parts.hostname, port, f"{path}?{parts.query}" if parts.query else path


class _Worker(threading.Thread):
    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        keepalive: bool,
        post_every: int,
        deadline: float,
        budget: _Budget,
        timeout: float,
        sticky: bool,
        think: float = 0.0,
        cookies: dict[str, str] | None = None,
        tls: bool = False,
        follow: bool = False,
    ) -> None:
        super().__init__(daemon=True)
        self.tls, self.follow = tls, follow
        self.host, self.port, self.path = host, port, path
        self.keepalive, self.post_every = keepalive, post_every
        self.deadline, self.budget, self.timeout = deadline, budget, timeout
        self.sticky, self.think = sticky, think
        self.cookies: dict[str, str] = dict(cookies or {})
        self.report = LoadReport()
        self.conn: http.client.HTTPConnection | None = None
        self.used = False

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            if self.tls:
                self.conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=_lab_tls()
                )
            else:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.used = False
        return self.conn

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def _once(self, method: str, body: bytes | None) -> http.client.HTTPResponse:
        conn = self._connection()
        headers = {"Connection": "keep-alive" if self.keepalive else "close"}
        if self.sticky and self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        conn.request(method, self.path, body=body, headers=headers)
        return conn.getresponse()

    def _follow(
        self, resp: http.client.HTTPResponse, method: str, body: bytes | None
    ) -> http.client.HTTPResponse:
        """Follow redirects, as browsers do, to loopback or lab targets only; the worker then
        stays on the final URL (http -> https once, not on every request)."""
        hops = 0
        while self.follow and resp.status in REDIRECTS and hops < MAX_REDIRECTS:
            location = resp.getheader("Location")
            if not location:
                break
            resp.read()
            scheme = "https" if self.tls else "http"
            url = urljoin(f"{scheme}://{host_port(self.host, self.port)}{self.path}", location)
            try:
                target = (*check_target(url), urlsplit(url).scheme == "https")
            except ClusterctlError as exc:
                raise http.client.HTTPException(str(exc)) from None
            if (target[0], target[1], target[3]) != (self.host, self.port, self.tls):
                self._drop()
            self.host, self.port, self.path, self.tls = target
            if resp.status == 303:
                method, body = "GET", None
            resp = self._once(method, body)
            hops += 1
        return resp

    def run(self) -> None:
        n = 0
        while time.monotonic() < self.deadline and self.budget.take():
            if n and self.think:
                time.sleep(self.think)
            n += 1
            method = "POST" if self.post_every and n % self.post_every == 0 else "GET"
            body = b"x" * 512 if method == "POST" else None
            reused = self.conn is not None and self.used
            resent = False
            began = time.monotonic()
            try:
                try:
                    resp = self._once(method, body)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not reused:
                        raise
                    # The server closed an idle keep-alive connection as we reused it: a
                    # failure for any client that does not resend, whatever the resend gets.
                    self.report.resent += 1
                    self.report.failed += 1
                    resent = True
                    self._drop()
                    resp = self._once(method, body)
                resp = self._follow(resp, method, body)
                data = resp.read()
                self.used = True
                self.report.requests += 1
                self.report.statuses[resp.status] += 1
                backend = resp.getheader("X-Backend")
                if backend:
                    self.report.backends[backend] += 1
                    release = resp.getheader("X-Release")
                    if release:
                        self.report.served[f"{backend}/{release}"] += 1
                for header, value in resp.getheaders():
                    if header.lower() == "set-cookie":
                        name, _, rest = value.partition("=")
                        self.cookies[name.strip()] = rest.split(";", 1)[0]
                if resp.status >= 500 and not resent:
                    self.report.failed += 1
                    self.report.errors[f"HTTP {resp.status}: {data[:60]!r}"] += 1
                if not self.keepalive or resp.will_close:
                    self._drop()
            except (OSError, http.client.HTTPException) as exc:
                self.report.requests += 1
                self.report.failed += 0 if resent else 1
                self.report.errors[type(exc).__name__] += 1
                self._drop()
            self.report.slowest = max(self.report.slowest, time.monotonic() - began)
        self._drop()


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


class Load:
    """Start with `start()`, stop with `stop()` (or let the bounds stop it); `report` after."""

    def __init__(
        self,
        url: str,
        clients: int = 4,
        duration: float = 30.0,
        max_requests: int = 100_000,
        keepalive: bool = True,
        post_every: int = 5,
        timeout: float = 10.0,
        sticky: bool = False,
        think: float = 0.0,
        cookies: dict[str, str] | None = None,
        follow: bool = False,
    ) -> None:
        """`clients` send one request after another, each `think` seconds after the last answer
        (0: at once); `sticky` clients send back the cookies they were given, as browsers do,
        starting with `cookies` (to pin them to one server from their first request); an
        https:// URL is spoken over TLS; `follow`: redirects are followed (to loopback and lab
        targets only) and each client stays on where they led."""
        host, port, path = check_target(url)
        if not 0 < duration <= 600:
            raise ClusterctlError("load duration is bounded to 600 seconds")
        self.duration = duration
        self.started = time.monotonic()
        budget = _Budget(max_requests)
        self.workers = [
            _Worker(
                host,
                port,
                path,
                keepalive,
                post_every,
                self.started,
                budget,
                timeout,
                sticky,
                think,
                cookies,
                urlsplit(url).scheme == "https",
                follow,
            )
            for _ in range(clients)
        ]
        self._budget = budget

    def start(self) -> Load:
        # The bound runs from the start, not from when the load was set up.
        self.started = time.monotonic()
        for w in self.workers:
            w.deadline = self.started + self.duration
            w.start()
        return self

    def stop(self) -> LoadReport:
        """Stop now (requests in flight finish) and report."""
        self._budget.left = 0
        return self.wait()

    def wait(self) -> LoadReport:
        """Let the load run to its bounds and report."""
        for w in self.workers:
            w.join()
        report = LoadReport()
        for w in self.workers:
            report.merge(w.report)
        report.seconds = time.monotonic() - self.started
        return report


def load_all(urls: dict[str, str], **options: Any) -> dict[str, LoadReport]:
    """The same bounded load through several targets at once, run to its bounds."""
    loads = {name: Load(url, **options).start() for name, url in urls.items()}
    return {name: load.wait() for name, load in loads.items()}
