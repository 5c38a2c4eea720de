"""WebSockets, unavailable pages, metrics and access logs on the real servers (issue 15).

One front end of each installed kind, side by side on loopback, in front of the same
WebSocket echo server (tests/helpers/websocket.py), rendered from one inventory:
- pool `app` serves; `gone`'s only server never answers; `closed` is in maintenance;
- client timeout 1s and server timeout 3s, so a WebSocket that idles 1.5s at a time and lives
  4.5s is held past both only by the tunnel settings;
- a metrics listener each, open to 127.0.0.1 alone; HAProxy logs to a UDP socket of the test's.
`clusterctl maintenance` runs against a lab of its own (SSH, the runtime interfaces).
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from clusterctl.model import load
from tests.helpers.frontends import RunningFrontend, free_port, have, launch, short_root
from tests.helpers.http import request
from tests.helpers.websocket import EchoServer, WebSocket
from tests.integration.labfixtures import (
    Lab,
    cli,
    http_get,
    load_yaml,
    needs_root,
    own_lab,
    wait_serving,
)

KINDS = ("haproxy", "nginx", "apache")
PAGE = b"<!DOCTYPE html><title>Back soon</title><p>clusterctl-features-sorry</p>\n"
pytestmark = pytest.mark.servers


@dataclass
class Front:
    kind: str
    port: int
    metrics: int
    running: RunningFrontend


@dataclass
class Setup:
    fronts: dict[str, Front]
    syslog: socket.socket
    echo: EchoServer


def inventory_text(echo: EchoServer, ports: dict[str, tuple[int, int]], udp: int) -> str:
    text = "cluster: features-test\nfrontends:\n"
    for kind, (_, metrics) in ports.items():
        text += f"  - name: fe-{kind}\n    kind: {kind}\n    address: 127.0.0.1\n"
        text += f"    services: [web-{kind}]\n"
        text += f"    metrics: {{port: {metrics}, allow: [127.0.0.1]}}\n"
        if kind == "haproxy":
            text += f'    syslog: "127.0.0.1:{udp}"\n'
        if kind == "apache":
            text += f"    admin_port: {free_port()}\n"
    text += f"""\
pools:
  - name: app
    servers: [{{name: ws1, address: 127.0.0.1, port: {echo.port}}}]
  - name: gone
    health: {{path: /health, interval: 1s, rise: 1, fall: 1}}
    servers: [{{name: dead, address: 127.0.0.1, port: {free_port()}}}]
  - name: closed
    maintenance: true
    servers: [{{name: ws2, address: 127.0.0.1, port: {echo.port}}}]
services:
"""
    for kind, (port, _) in ports.items():
        text += f"""\
  - name: web-{kind}
    listen: [{{address: 127.0.0.1, port: {port}}}]
    timeouts: {{client: 1s, server: 3s}}
    unavailable: {{page: sorry.html, retry_after: 2m}}
    routes: [{{path: /gone, pool: gone}}, {{path: /closed, pool: closed}}]
    default_pool: app
"""
    return text


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    kinds = [k for k in KINDS if have(k)]
    if not kinds:
        pytest.skip("needs haproxy, nginx or apache2 installed")
    workdir = tmp_path_factory.mktemp("features")
    (workdir / "sorry.html").write_bytes(PAGE)
    with ExitStack() as stack:
        echo = EchoServer("ws1").start()
        stack.callback(echo.stop)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stack.callback(udp.close)
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(5)
        ports = {k: (free_port(), free_port()) for k in kinds}
        path = workdir / "inventory.yaml"
        path.write_text(inventory_text(echo, ports, udp.getsockname()[1]))
        inv = load(path)
        fronts = {}
        for fe in inv.frontends:
            root = short_root(f"cc-ft-{fe.kind}-")
            stack.callback(shutil.rmtree, root, True)
            port, metrics = ports[fe.kind]
            running = launch(inv, fe, Path(root), [port, metrics])
            stack.callback(running.stop)
            fronts[fe.kind] = Front(fe.kind, port, metrics, running)
        yield Setup(fronts, udp, echo)


def front(setup: Setup, kind: str) -> Front:
    if kind not in setup.fronts:
        pytest.skip(f"{kind} is not installed")
    return setup.fronts[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_a_websocket_lives_past_the_client_and_server_timeouts_exchanging_messages(
    setup: Setup, kind: str
) -> None:
    f = front(setup, kind)
    ws = WebSocket("127.0.0.1", f.port, "/chat")
    try:
        started = time.monotonic()
        for i in range(4):
            assert ws.exchange(f"hello {i}") == f"ws1:hello {i}"
            time.sleep(1.5)  # idle longer than the client timeout (1s)
        assert ws.exchange("still there") == "ws1:still there"
        assert time.monotonic() - started > 3  # and, in all, longer than the server timeout
    finally:
        ws.close()


def test_nginx_keeps_upstream_keepalive_for_requests_without_an_upgrade(setup: Setup) -> None:
    # The Connection header maps to "" without an Upgrade: nginx keeps its upstream
    # connections open (`keepalive`), as it did with `Connection ""`.
    f = front(setup, "nginx")
    # Each worker (worker_processes auto: one per CPU) keeps its own upstream connections.
    n = 2 * (os.cpu_count() or 1) + 2
    replies = [request(f.port, f"/keepalive-{i}") for i in range(n)]
    assert [(r.status, r.body) for r in replies] == [(200, b"ws1")] * n
    peers = {peer for path, peer in setup.echo.requests if path.startswith(b"/keepalive-")}
    assert len(peers) <= (os.cpu_count() or 1) < n, peers


def _unavailable(f: Front, path: str) -> http.client.HTTPResponse:
    deadline = time.monotonic() + 10
    while True:
        reply = request(f.port, path)
        if reply.status == 503 or time.monotonic() > deadline:
            return reply  # type: ignore[return-value]
        time.sleep(0.2)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", ["/gone/x", "/closed"])
def test_a_pool_without_a_serving_server_answers_503_with_the_page_and_retry_after(
    setup: Setup, kind: str, path: str
) -> None:
    f = front(setup, kind)
    reply = request(f.port, path)
    if path.startswith("/gone") and reply.status != 503:
        reply = _unavailable(f, path)  # type: ignore[assignment]
    assert reply.status == 503, reply.body[:300]
    assert reply.headers["Retry-After"] == "120"
    assert reply.body == PAGE
    assert reply.headers.get_content_type() == "text/html"
    # A POST gets the same page (nginx turns the error's internal redirect into a GET).
    post = request(f.port, path, method="POST", body=b"x=1")
    assert (post.status, post.body) == (503, PAGE)


def _metrics(port: int, source: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        conn.request("GET", "/metrics?auto")
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


METRIC_MARKER = {
    "haproxy": "haproxy_process_",
    "nginx": "Active connections:",
    "apache": "Total Accesses:",
}


@pytest.mark.parametrize("kind", KINDS)
def test_the_metrics_listener_answers_allowed_sources_only(setup: Setup, kind: str) -> None:
    f = front(setup, kind)
    status, text = _metrics(f.metrics, "127.0.0.1")
    assert status == 200 and METRIC_MARKER[kind] in text, text[:300]
    status, text = _metrics(f.metrics, "127.0.0.9")
    assert status == 403, text[:300]


def _last_line(path: Path, marker: str) -> str:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = (
            [ln for ln in path.read_text().splitlines() if marker in ln] if path.exists() else []
        )
        if lines:
            return lines[-1]
        time.sleep(0.1)
    raise AssertionError(f"no line with {marker!r} in {path}")


@pytest.mark.parametrize("kind", KINDS)
def test_the_access_log_names_the_upstream_server_and_its_timings(setup: Setup, kind: str) -> None:
    f = front(setup, kind)
    marker = f"/logged-{kind}"
    assert request(f.port, marker).status == 200
    if kind == "haproxy":
        deadline = time.monotonic() + 5
        line = ""
        while marker not in line and time.monotonic() < deadline:
            line = setup.syslog.recv(65536).decode(errors="replace")
        # httplog: frontend backend/server Tq/Tw/Tc/Tr/Ta status ...
        assert f"svc-web-{kind} app/ws1 " in line, line
        timings = line.split(" app/ws1 ", 1)[1].split()[0].split("/")
        assert len(timings) == 5 and all(t.lstrip("-").isdigit() for t in timings), line
    elif kind == "nginx":
        line = _last_line(f.running.root / "var/log/nginx/access.log", marker)
        assert f"upstream=127.0.0.1:{setup.echo.port} " in line, line
        t = line.split("upstream_response_time=", 1)[1].split()[0]
        assert float(t) >= 0, line
    else:
        line = _last_line(f.running.root / "var/log/apache2/access.log", marker)
        assert f" http://127.0.0.1:{setup.echo.port} " in line, line
        assert line.rsplit(" ", 1)[1].isdigit(), line  # %D: microseconds


# ---------------------------------------------------------------------------- maintenance, lab

MAINT_LAB = "tfeat"


@pytest.fixture(scope="module")
def maint_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab of one backend behind each kind, applied with the unavailable page of ours."""
    with own_lab(MAINT_LAB, tmp_path_factory.mktemp(MAINT_LAB), backends=1) as lab:
        (lab.workdir / "sorry.html").write_bytes(PAGE)
        data = load_yaml(lab.info.inventory_path)
        data["services"][0]["unavailable"] = {"page": "sorry.html", "retry_after": "45s"}
        lab.write(data)
        run = cli("apply", "-i", str(lab.inventory), "--yes")
        assert run.rc == 0, run
        for fe in lab.frontends:
            wait_serving(fe.address)
        yield lab


@pytest.mark.lab
@needs_root
def test_maintenance_on_and_off_switch_every_kind_to_the_page_and_back_without_a_reload(
    maint_lab: Lab,
) -> None:
    lab = maint_lab
    before = {fe.name: lab.pids(fe.name) for fe in lab.frontends}
    on = cli("maintenance", "on", "-i", str(lab.inventory), "app")
    assert on.rc == 0, on
    assert "pool app in maintenance on 3 front ends" in on.out, on
    for fe in lab.frontends:
        reply = http_get(fe.address, "/")
        assert (reply.status, reply.headers.get("retry-after"), reply.body) == (503, "45", PAGE)
    off = cli("maintenance", "off", "-i", str(lab.inventory))  # the whole site: every http pool
    assert off.rc == 0, off
    assert "every http pool serving again on 3 front ends" in off.out, off
    for fe in lab.frontends:
        assert wait_serving(fe.address).status == 200
    # The runtime path: the same workers served throughout, nothing was reloaded.
    assert lab.not_reloaded(before) == {}


@pytest.mark.lab
@needs_root
def test_maintenance_refuses_a_pool_that_has_no_page(maint_lab: Lab) -> None:
    run = cli("maintenance", "on", "-i", str(maint_lab.inventory), "nope")
    assert run.rc == 1
    assert run.err.strip() == "error: no pool named 'nope'; the inventory has: app"
