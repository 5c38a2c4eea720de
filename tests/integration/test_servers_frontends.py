"""Real haproxy, nginx and apache2 on rendered configs, in front of real backends.

Each kind runs once per module (see tests/helpers/cluster.py for the cluster's shape) and every
test sends real HTTP to it over loopback: what is asserted is what a user of the inventory
relies on, observed at the backends.
"""

from __future__ import annotations

import socket
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from tests.helpers.cluster import (
    HSTS_SECONDS,
    MAX_BODY,
    SLOW_TIMEOUT_MS,
    Cluster,
    running_cluster,
)
from tests.helpers.frontends import have
from tests.helpers.http import request, tls_context

KINDS = ("haproxy", "nginx", "apache")
pytestmark = pytest.mark.servers


def kinds(*names: str) -> pytest.MarkDecorator:
    """Run a test against a running front end of each of these kinds (default: all three)."""
    return pytest.mark.parametrize("cluster", names or KINDS, indirect=True, scope="module")


@pytest.fixture(scope="module")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    kind = request.param
    if not have(kind):
        pytest.skip(f"{kind} is not installed (bash scripts/setup.sh installs it)")
    with running_cluster(kind, tmp_path_factory.mktemp(f"inv-{kind}")) as c:
        yield c


def sticky_cookie(server: str) -> str:
    """The cookie value that pins a client to `server`: the same on every kind."""
    return f".{server}"


def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.1)


# -- routing -------------------------------------------------------------------------------


@kinds()
@pytest.mark.parametrize(
    ("path", "pool"),
    [
        ("/course", "course"),
        ("/course/", "course"),
        ("/course/x/y?q=1&r=%2F", "course"),
        ("/course?q=1", "course"),
        ("/courses", "app"),
        ("/course-x", "app"),
        ("/COURSE", "app"),
        ("/x/course", "app"),
        ("/horse", "Horse_v2.pool-1"),
        ("/horse/1", "Horse_v2.pool-1"),
        ("/horsey", "app"),
        ("/", "app"),
        ("/anything/else", "app"),
    ],
)
def test_path_routes_pick_the_pool_and_pass_the_path_unchanged(
    cluster: Cluster, path: str, pool: str
) -> None:
    r = request(cluster.ports["web"], path)
    assert r.status == 200, r.body
    assert cluster.pool_of(r.backend) == pool, f"{path} went to {r.backend}"
    assert r.data["path"] == path


@kinds()
@pytest.mark.parametrize(
    ("host", "path", "pool"),
    [
        ("api.example.com", "/", "api"),
        ("api.example.com", "/v1/users", "api"),
        # A route for the host beats a route without one, even with a longer path.
        ("api.example.com", "/course", "api"),
        ("API.Example.COM", "/", "api"),
        ("api.example.com:{port}", "/", "api"),
        ("www.example.com", "/", "app"),
        ("www.example.com", "/course", "course"),
        ("xapi.example.com", "/", "app"),
        ("api.example.com.evil.test", "/", "app"),
    ],
)
def test_host_routes(cluster: Cluster, host: str, path: str, pool: str) -> None:
    port = cluster.ports["web"]
    r = request(port, path, host=host.format(port=port))
    assert r.status == 200, r.body
    assert cluster.pool_of(r.backend) == pool, f"{host}{path} went to {r.backend}"


@kinds()
def test_service_without_the_route_uses_its_default_pool(cluster: Cluster) -> None:
    # `secure` routes only /course; /horse is another service's route.
    r = request(cluster.ports["https"], "/horse", tls=True)
    assert cluster.pool_of(r.backend) == "app"
    r = request(cluster.ports["https"], "/course/1", tls=True)
    assert cluster.pool_of(r.backend) == "course"


# -- sticky sessions, states -----------------------------------------------------------------


@kinds()
def test_sticky_cookie_keeps_a_client_on_one_backend(cluster: Cluster) -> None:
    port = cluster.ports["web"]
    for _ in range(3):  # three fresh clients, each pinned to wherever it landed first
        first = request(port, "/")
        cookie = first.cookies().get("SRVID")
        assert cookie, f"no sticky cookie set: {first.header_values('Set-Cookie')}"
        raw = " ".join(first.header_values("Set-Cookie")).lower()
        assert "httponly" in raw
        assert "path=/" in raw
        seen = {request(port, f"/page/{i}", cookies={"SRVID": cookie}).backend for i in range(20)}
        assert seen == {first.backend}


@kinds()
def test_fresh_clients_are_spread_over_ready_servers_only(cluster: Cluster) -> None:
    seen = Counter(request(cluster.ports["web"], "/").backend for _ in range(40))
    # a3 is drained (no new sessions), a4 in maintenance (no traffic).
    assert set(seen) == {"a1", "a2"}, seen


@kinds()
def test_sticky_cookie_belongs_to_the_pool_that_served(cluster: Cluster) -> None:
    port = cluster.ports["web"]
    course = request(port, "/course")
    assert set(course.cookies()) == {"CRS"}
    app = request(port, "/")
    assert set(app.cookies()) == {"SRVID"}
    # A pinned client gets no new cookie.
    again = request(port, "/", cookies=app.cookies())
    assert "SRVID" not in again.cookies()
    assert again.backend == app.backend


@kinds()
def test_drained_server_keeps_its_sticky_clients(cluster: Cluster) -> None:
    cookie = sticky_cookie("a3")
    seen = {
        request(cluster.ports["web"], "/", cookies={"SRVID": cookie}).backend for _ in range(10)
    }
    assert seen == {"a3"}


@kinds()
def test_server_in_maintenance_gets_no_traffic_even_with_its_cookie(cluster: Cluster) -> None:
    port = cluster.ports["web"]
    seen = Counter(
        request(port, "/", cookies={"SRVID": sticky_cookie("a4")}).backend for _ in range(10)
    )
    assert "a4" not in seen
    assert set(seen) <= {"a1", "a2"}, seen


@kinds()
def test_an_unknown_cookie_places_the_client_afresh(cluster: Cluster) -> None:
    values = [uuid.uuid4().hex for _ in range(30)]
    replies = [request(cluster.ports["web"], "/", cookies={"SRVID": v}) for v in values]
    assert {r.backend for r in replies} <= {"a1", "a2"}
    assert all(r.cookies().get("SRVID") == sticky_cookie(str(r.backend)) for r in replies)


@kinds("haproxy", "nginx", "apache")
def test_weights_share_requests_in_proportion(cluster: Cluster) -> None:
    seen = Counter(request(cluster.ports["web"], "/weighted").backend for _ in range(200))
    assert set(seen) == {"w1", "w2"}, seen
    share = seen["w2"] / 200  # weight 3 of 4
    assert 0.65 <= share <= 0.85, seen


@kinds()
def test_backup_gets_traffic_only_when_every_primary_is_down(cluster: Cluster) -> None:
    port = cluster.ports["web"]
    s1, s2, s3 = (cluster.backends[n] for n in ("s1", "s2", "s3"))

    def hits(n: int) -> Counter[str | None]:
        replies = [request(port, "/standby") for _ in range(n)]
        assert all(r.status == 200 for r in replies), [r.status for r in replies]
        return Counter(r.backend for r in replies)

    try:
        assert set(hits(20)) == {"s1", "s2"}
        s1.stop()
        seen = hits(30)
        assert "s3" not in seen, f"backup used while s2 was up: {seen}"
        assert set(seen) == {"s2"}
        s2.stop()
        until(lambda: request(port, "/standby").backend == "s3")
        assert set(hits(20)) == {"s3"}
    finally:
        s1.start()
        s2.start()
    assert s3.running


# -- TLS -------------------------------------------------------------------------------------


@kinds()
@pytest.mark.parametrize("host_port", [False, True])
def test_plain_http_redirects_to_the_https_listener(cluster: Cluster, host_port: bool) -> None:
    http, https = cluster.ports["http"], cluster.ports["https"]
    host = f"www.example.com:{http}" if host_port else "www.example.com"
    r = request(http, "/some/path?q=1", host=host)
    assert r.status == 308  # a 301 lets clients turn a POST into a GET
    assert r.headers["Location"] == f"https://www.example.com:{https}/some/path?q=1"
    assert r.headers.get("Strict-Transport-Security") is None  # only ever sent over HTTPS
    assert r.backend is None


@kinds()
@pytest.mark.parametrize("sni", ["www.example.com", "api.example.com"])
def test_https_serves_the_inventory_certificate_with_hsts(cluster: Cluster, sni: str) -> None:
    # The client trusts only inventories/files/example.com.crt and checks the name.
    r = request(cluster.ports["https"], "/", host=sni, tls=True)
    assert r.status == 200
    assert cluster.pool_of(r.backend) == "app"
    assert r.headers["Strict-Transport-Security"] == f"max-age={HSTS_SECONDS}"


@kinds()
def test_hsts_only_over_https_when_http_is_served_too(cluster: Cluster) -> None:
    plain = request(cluster.ports["mixed-http"], "/")
    assert plain.status == 200
    assert cluster.pool_of(plain.backend) == "app"
    assert plain.headers.get("Strict-Transport-Security") is None
    secure = request(cluster.ports["mixed-https"], "/", tls=True)
    assert secure.status == 200
    assert secure.headers["Strict-Transport-Security"] == f"max-age={HSTS_SECONDS}"


def _handshake(port: int, version: ssl.TLSVersion) -> str:
    ctx = tls_context(minimum=version, maximum=version)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer old protocols at all
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname="www.example.com") as tls,
    ):
        return str(tls.version())


@kinds()
def test_tls_1_1_is_refused_and_1_2_accepted(cluster: Cluster) -> None:
    port = cluster.ports["https"]
    assert _handshake(port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _handshake(port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    with pytest.raises(ssl.SSLError) as err:
        _handshake(port, ssl.TLSVersion.TLSv1_1)
    # The server's alert, not the client failing to offer TLS 1.1.
    assert err.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", err.value


@kinds()
@pytest.mark.parametrize("tls", [False, True])
def test_forwarded_headers_reach_the_backend(cluster: Cluster, tls: bool) -> None:
    port = cluster.ports["https" if tls else "web"]
    host = f"www.example.com:{port}"
    r = request(
        port,
        "/",
        host=host,
        tls=tls,
        # A client cannot claim to have come over HTTPS.
        headers={"X-Forwarded-Proto": "https" if not tls else "http"},
    )
    sent = r.sent_headers()
    assert sent["x-forwarded-proto"] == ["https" if tls else "http"]
    assert sent["x-forwarded-for"][-1].split(",")[-1].strip() == "127.0.0.1"
    assert sent["x-forwarded-host"] == [host]
    assert sent["host"] == [host]


# -- limits ----------------------------------------------------------------------------------


@kinds()
def test_request_body_up_to_max_body_passes_and_larger_is_413(cluster: Cluster) -> None:
    port = cluster.ports["web"]
    ok = request(port, "/upload", method="POST", body=b"x" * MAX_BODY)
    assert ok.status == 200
    assert ok.data["body_length"] == MAX_BODY
    before = sum(b.hits["/upload"] for b in cluster.backends.values())
    big = request(port, "/upload", method="POST", body=b"x" * (MAX_BODY + 1))
    assert big.status == 413
    assert sum(b.hits["/upload"] for b in cluster.backends.values()) == before


def _raw_status(port: int, head: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head)
        line = s.makefile("rb").readline()
    return int(line.split()[1])


@kinds()
def test_declared_length_beyond_32_bits_is_413_not_wrapped(cluster: Cluster) -> None:
    # 2**32 + 100 reads as 100 to a 32-bit parser; the front end must refuse it before
    # any body arrives (nothing is sent after the headers).
    head = (
        b"POST /upload HTTP/1.1\r\nHost: www.example.com\r\n"
        + f"Content-Length: {2**32 + 100}\r\n\r\n".encode()
    )
    assert _raw_status(cluster.ports["web"], head) == 413


@kinds()
def test_a_post_that_times_out_is_not_replayed(cluster: Cluster) -> None:
    # The backend answers after the service's server timeout: the front end gives up with a
    # gateway error, and must not send the (non-idempotent) POST to another server meanwhile.
    path = f"/slow?ms={SLOW_TIMEOUT_MS * 3}"
    r = request(cluster.ports["slow"], path, method="POST", body=b"pay=1")
    assert r.status in (502, 504)
    time.sleep(0.5)
    delivered = sum(cluster.backends[n].hits[path] for n in ("q1", "q2"))
    assert delivered == 1


# -- layer 4 ---------------------------------------------------------------------------------


@kinds("haproxy")
def test_tcp_service_forwards_bytes_both_ways(cluster: Cluster) -> None:
    with socket.create_connection(("127.0.0.1", cluster.ports["tcp"]), timeout=5) as s:
        for payload in (b"hello\n", b"\x00\xff binary \r\n"):
            s.sendall(payload)
            want = b"t1:" + payload
            got = b""
            while len(got) < len(want):
                chunk = s.recv(4096)
                assert chunk, "connection closed"
                got += chunk
            assert got == want
