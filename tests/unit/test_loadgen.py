"""The bounded load client: where it may send, what it counts as failed, what it resends.

Every server here is a tiny one on 127.0.0.1 started by the test itself.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clusterctl.errors import ClusterctlError
from clusterctl.loadgen import Load, LoadReport, _Worker, check_target


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        path = self.path
        if path.startswith("/sleep"):
            time.sleep(1.0)
        status = (
            500 if path == "/boom" else 503 if path == "/busy" else 404 if path == "/nope" else 200
        )
        body = f"{self.command} {path} {self.headers.get('Cookie') or '-'}\n".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", "t1")
        self.send_header("X-Release", "1.0")
        if not self.headers.get("Cookie"):
            self.send_header("Set-Cookie", "SRVID=t1; Path=/; HttpOnly")
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def run(url: str, **kw: object) -> LoadReport:
    kw.setdefault("clients", 1)
    kw.setdefault("duration", 10.0)
    return Load(url, **kw).start().wait()  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- targets


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1.2.3:8080/x",
        "http://198.18.0.11/",
        "http://198.19.255.254:80/",
    ],
)
def test_loopback_and_the_lab_range_are_allowed(url: str) -> None:
    host, port, _ = check_target(url)
    assert host == url.split("/")[2].split(":")[0]
    assert port in (80, 8080)


@pytest.mark.parametrize(
    "url",
    [
        # Just outside the lab's range on either side, TEST-NET, the internet, unspecified.
        "http://192.0.2.1/",
        "http://198.17.255.255/",
        "http://198.20.0.1/",
        "http://8.8.8.8/",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
    ],
)
def test_other_addresses_are_refused(url: str) -> None:
    with pytest.raises(
        ClusterctlError, match=re.escape("outside loopback and the lab's 198.18.0.0/15")
    ):
        Load(url)


@pytest.mark.parametrize(
    "url",
    ["http://localhost/", "http://example.com/", "https://example.com/", "ftp://127.0.0.1/", "x"],
)
def test_names_and_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(ClusterctlError, match="must be"):
        Load(url)


def test_bad_port_and_unbounded_duration_are_refused() -> None:
    with pytest.raises(ClusterctlError, match="invalid port"):
        Load("http://127.0.0.1:99999/")
    with pytest.raises(ClusterctlError, match="bounded to 600 seconds"):
        Load("http://127.0.0.1/", duration=601)
    with pytest.raises(ClusterctlError, match="bounded to 600 seconds"):
        Load("http://127.0.0.1/", duration=0)


def test_the_query_string_is_sent(server: str) -> None:
    report = run(f"{server}/slow?seconds=0", max_requests=1)
    assert report.requests == 1 and report.failed == 0
    assert report.statuses == {200: 1}


# ---------------------------------------------------------------------------- counting


def test_answers_are_counted_with_gets_and_posts(server: str) -> None:
    report = run(server + "/", max_requests=10, post_every=5)
    assert (report.requests, report.failed, report.resent) == (10, 0, 0)
    assert report.statuses == {200: 10}
    assert report.backends == {"t1": 10}
    assert report.served == {"t1/1.0": 10}
    assert 0 < report.slowest < 1.0


def test_a_5xx_is_a_failed_request(server: str) -> None:
    report = run(server + "/boom", max_requests=4)
    assert (report.requests, report.failed) == (4, 4)
    assert report.statuses == {500: 4}
    assert sum(report.errors.values()) == 4
    assert all(k.startswith("HTTP 500") for k in report.errors)
    assert run(server + "/busy", max_requests=2).failed == 2


def test_a_4xx_is_an_answer_not_a_failure(server: str) -> None:
    report = run(server + "/nope", max_requests=3)
    assert (report.requests, report.failed, report.statuses) == (3, 0, {404: 3})


def test_connection_refused_is_a_failed_request() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once it is closed
    report = run(f"http://127.0.0.1:{port}/", max_requests=3)
    assert (report.requests, report.failed, report.resent) == (3, 3, 0)
    assert report.errors == {"ConnectionRefusedError": 3}


def test_a_timeout_is_a_failed_request(server: str) -> None:
    report = run(server + "/sleep", max_requests=1, timeout=0.2)
    assert (report.requests, report.failed) == (1, 1)
    assert report.errors == {"TimeoutError": 1}
    assert report.slowest >= 0.2


def test_sticky_clients_send_their_cookies_back() -> None:
    seen: list[tuple[str, str, str | None]] = []

    class Recorder(Handler):
        def _answer(self) -> None:
            seen.append((self.command, self.path, self.headers.get("Cookie")))
            super()._answer()

        do_GET = _answer
        do_POST = _answer

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        run(url, max_requests=3, sticky=True, post_every=3)
        run(url, max_requests=1, sticky=True, cookies={"SRVID": "be2"})
        run(url, max_requests=2)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    assert seen == [
        ("GET", "/", None),
        ("GET", "/", "SRVID=t1"),
        ("POST", "/", "SRVID=t1"),
        ("GET", "/", "SRVID=be2"),
        ("GET", "/", None),
        ("GET", "/", None),
    ]


# ---------------------------------------------------------------------------- resends


class OneShotServer:
    """Answers one request per connection keep-alive, then closes it (as a server closing an
    idle keep-alive connection does) without a word; `reset_first` instead resets a fresh
    connection before answering anything."""

    def __init__(self, reset_first: bool = False) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.reset_first = reset_first
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                if self.reset_first:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    continue
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                head = data.split(b"\r\n\r\n", 1)[0].lower()
                length = 0
                for line in head.split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
                while len(body) < length:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    body += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Backend: t2\r\n\r\nok\n")

    def close(self) -> None:
        self.sock.close()


def test_a_reused_keepalive_connection_closed_before_any_byte_is_a_failure_resent_and_shown() -> (
    None
):
    srv = OneShotServer()
    try:
        report = run(srv.url, max_requests=6, post_every=2)
    finally:
        srv.close()
    # Each reuse meets a closed connection: a failure for a client that never resends (wrk).
    # Each is still resent once on a new one and answered, and the resends are shown apart.
    assert (report.requests, report.failed, report.resent) == (6, 5, 5)
    assert report.statuses == {200: 6}
    assert srv.connections == 6


def test_without_keepalive_nothing_is_reused_or_resent() -> None:
    srv = OneShotServer()
    try:
        report = run(srv.url, max_requests=4, keepalive=False)
    finally:
        srv.close()
    assert (report.requests, report.failed, report.resent) == (4, 0, 0)


def test_a_fresh_connection_reset_is_a_failure_not_a_resend() -> None:
    srv = OneShotServer(reset_first=True)
    try:
        report = run(srv.url, max_requests=3)
    finally:
        srv.close()
    assert (report.requests, report.failed, report.resent) == (3, 3, 0)


# ---------------------------------------------------------------------------- bounds


def test_duration_bounds_the_load_from_its_start(server: str) -> None:
    load = Load(server + "/", clients=2, duration=0.5, think=0.01)
    time.sleep(0.6)  # set up long before it starts: the half second runs from start()
    started = time.monotonic()
    report = load.start().wait()
    took = time.monotonic() - started
    assert report.requests > 0 and report.failed == 0
    assert 0.4 < took < 2.0
    assert 0.4 < report.seconds < 2.0


def test_max_requests_is_shared_by_all_clients(server: str) -> None:
    report = run(server + "/", clients=4, max_requests=17)
    assert report.requests == 17


def test_stop_ends_it_early(server: str) -> None:
    load = Load(server + "/", clients=2, duration=60, think=0.01).start()
    time.sleep(0.3)
    started = time.monotonic()
    report = load.stop()
    assert time.monotonic() - started < 2.0
    assert report.requests > 0 and report.failed == 0


def test_merge_adds_counts_and_keeps_the_slowest() -> None:
    a = LoadReport(requests=3, failed=1, resent=1, slowest=0.5)
    a.statuses[200] += 2
    b = LoadReport(requests=2, failed=0, resent=2, slowest=0.2)
    b.statuses[200] += 2
    b.served["be1/2.0"] += 2
    a.merge(b)
    assert (a.requests, a.failed, a.resent, a.slowest) == (5, 1, 3, 0.5)
    assert a.statuses == {200: 4} and a.served == {"be1/2.0": 2}
    assert "5 requests" in a.summary() and "resent on closed keep-alive 3" in a.summary()


def test_a_resend_that_fails_again_is_one_failure_not_two() -> None:
    srv = OneShotServer()
    try:
        load = Load(srv.url, clients=1, max_requests=2, post_every=0)
        worker_once = _Worker._once
        calls = {"n": 0}

        def flaky(self: _Worker, method: str, body: bytes | None) -> object:
            calls["n"] += 1
            if calls["n"] == 3:  # the resend of the second request
                raise ConnectionRefusedError("refused")
            return worker_once(self, method, body)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(_Worker, "_once", flaky)
            report = load.start().wait()
    finally:
        srv.close()
    assert (report.requests, report.failed, report.resent) == (2, 1, 1)
    assert report.errors == {"ConnectionRefusedError": 1}
