"""A small real cluster for the front-end tests: backends on 127.0.0.x, an inventory for one
front end of a given kind, and that front end running on it.

Pools (every backend answers with its name):

- app: a1, a2 ready; a3 drain; a4 maint. Sticky cookie SRVID, http health checks. Default pool.
- course: c1 (route /course; sticky cookie CRS), api: p1 (host api.example.com).
- Horse_v2.pool-1: h1 (route /horse); a name with every kind of character a name may hold
  (capitals, digits, _ . -), to show each kind keeps it intact from pool to route.
- weighted: w1 weight 1, w2 weight 3 (route /weighted), roundrobin.
- standby: s1, s2 primaries, s3 backup (route /standby), quick health checks.
- slow: q1, q2 behind service `slow`, whose servers may take 1s to answer.
- echo (haproxy only): t1, a TCP echo server behind tcp service `tcp`.

Services: `web` (plain HTTP, max_body 1k, every route), `secure` (HTTP redirecting to HTTPS,
HSTS 1d, route /course), `mixed` (HTTP and HTTPS both serving, HSTS 1d), `slow` and on haproxy `tcp`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterctl.model import load
from clusterctl.model.schema import Inventory
from tests.helpers.backends import HttpBackend, TcpEchoBackend
from tests.helpers.frontends import FrontendFailed, RunningFrontend, free_port, launch, short_root
from tests.helpers.http import EXAMPLE_CERT, EXAMPLE_KEY

POOLS: dict[str, list[str]] = {
    "app": ["a1", "a2", "a3", "a4"],
    "course": ["c1"],
    "Horse_v2.pool-1": ["h1"],
    "api": ["p1"],
    "weighted": ["w1", "w2"],
    "standby": ["s1", "s2", "s3"],
    "slow": ["q1", "q2"],
}
SLOW_TIMEOUT_MS = 1000
MAX_BODY = 1024
HSTS_SECONDS = 86400


@dataclass
class Cluster:
    kind: str
    inv: Inventory
    frontend: RunningFrontend
    backends: dict[str, HttpBackend]
    tcp_backend: TcpEchoBackend | None
    ports: dict[str, int] = field(default_factory=dict)

    def pool_of(self, backend: str | None) -> str | None:
        for pool, names in POOLS.items():
            if backend in names:
                return pool
        return None


def inventory_text(
    kind: str, backends: dict[str, HttpBackend], ports: dict[str, int], tcp: TcpEchoBackend | None
) -> str:
    def srv(name: str, extra: str = "") -> str:
        b = backends[name]
        return f"      - {{name: {name}, address: {b.address}, port: {b.port}{extra}}}\n"

    services = (
        "[web, secure, mixed, slow, tcp]" if kind == "haproxy" else "[web, secure, mixed, slow]"
    )
    admin = f"\n    admin_port: {ports['admin']}" if kind == "apache" else ""
    text = f"""\
cluster: servers-test
frontends:
  - name: fe-{kind}
    kind: {kind}
    address: 127.0.0.1
    services: {services}{admin}
pools:
  - name: app
    sticky: {{cookie: SRVID}}
    health: {{path: /health, interval: 1s, rise: 1, fall: 2, max_fails: 1, fail_timeout: 1s}}
    servers:
{srv("a1")}{srv("a2")}{srv("a3", ", state: drain")}{srv("a4", ", state: maint")}\
  - name: course
    sticky: {{cookie: CRS}}
    servers:
{srv("c1")}\
  - name: Horse_v2.pool-1
    servers:
{srv("h1")}\
  - name: api
    servers:
{srv("p1")}\
  - name: weighted
    balance: roundrobin
    servers:
{srv("w1", ", weight: 1")}{srv("w2", ", weight: 3")}\
  - name: standby
    health: {{path: /health, interval: 200ms, rise: 1, fall: 1, max_fails: 1, fail_timeout: 30s}}
    servers:
{srv("s1")}{srv("s2")}{srv("s3", ", backup: true")}\
  - name: slow
    servers:
{srv("q1")}{srv("q2")}\
"""
    if tcp is not None:
        text += f"""\
  - name: echo
    servers:
      - {{name: t1, address: {tcp.address}, port: {tcp.port}}}
"""
    text += f"""\
services:
  - name: web
    listen: [{{address: 127.0.0.1, port: {ports["web"]}}}]
    max_body: {MAX_BODY}
    routes:
      - {{path: /course, pool: course}}
      - {{path: /horse, pool: Horse_v2.pool-1}}
      - {{host: api.example.com, pool: api}}
      - {{path: /weighted, pool: weighted}}
      - {{path: /standby, pool: standby}}
    default_pool: app
  - name: secure
    listen:
      - {{address: 127.0.0.1, port: {ports["http"]}}}
      - {{address: 127.0.0.1, port: {ports["https"]}, tls: true}}
    tls:
      certificate: files/example.com.crt
      key: files/example.com.key
      hsts: {HSTS_SECONDS}s
    routes:
      - {{path: /course, pool: course}}
    default_pool: app
  - name: slow
    listen: [{{address: 127.0.0.1, port: {ports["slow"]}}}]
    timeouts: {{server: {SLOW_TIMEOUT_MS}ms}}
    default_pool: slow
  - name: mixed
    listen:
      - {{address: 127.0.0.1, port: {ports["mixed-http"]}}}
      - {{address: 127.0.0.1, port: {ports["mixed-https"]}, tls: true}}
    tls:
      certificate: files/example.com.crt
      key: files/example.com.key
      redirect: false
      hsts: {HSTS_SECONDS}s
    default_pool: app
"""
    if tcp is not None:
        text += f"""\
  - name: tcp
    mode: tcp
    listen: [{{address: 127.0.0.1, port: {ports["tcp"]}}}]
    default_pool: echo
"""
    return text


@contextmanager
def running_cluster(kind: str, workdir: Path, manager_token: bool = True) -> Iterator[Cluster]:
    """Backends, inventory and a running `kind` front end; everything is stopped on exit."""
    backends: dict[str, HttpBackend] = {}
    tcp: TcpEchoBackend | None = None
    frontend: RunningFrontend | None = None
    root = short_root(f"cc-{kind}-")
    try:
        i = 2
        for names in POOLS.values():
            for name in names:
                backends[name] = HttpBackend(name, f"127.0.0.{i}").start()
                i += 1
        if kind == "haproxy":
            tcp = TcpEchoBackend("t1", f"127.0.0.{i}").start()
        files = workdir / "files"
        files.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLE_CERT, files / "example.com.crt")
        shutil.copy(EXAMPLE_KEY, files / "example.com.key")
        path = workdir / "inventory.yaml"
        for attempt in range(3):
            # Free ports are picked before the server binds them; another process on this
            # machine may take one in between, so try again with new ones.
            port_names = (
                "web",
                "http",
                "https",
                "mixed-http",
                "mixed-https",
                "slow",
                "tcp",
                "admin",
            )
            ports = {k: free_port() for k in port_names}
            path.write_text(inventory_text(kind, backends, ports, tcp))
            inv = load(path)
            http_ports = ("web", "http", "https", "mixed-http", "mixed-https", "slow")
            listening = [ports[k] for k in http_ports]
            if kind == "haproxy":
                listening.append(ports["tcp"])
            try:
                frontend = launch(inv, inv.frontends[0], root, listening, manager_token)
                break
            except FrontendFailed as exc:
                if attempt == 2 or "in use" not in str(exc):
                    raise
        assert frontend is not None
        yield Cluster(kind, inv, frontend, backends, tcp, ports)
    finally:
        if frontend is not None:
            frontend.stop()
        for b in backends.values():
            b.stop()
        if tcp is not None:
            tcp.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running_clusters(workdir: Path, kinds: tuple[str, ...]) -> Iterator[dict[str, Cluster]]:
    """`running_cluster` for each of `kinds` that is installed, side by side."""
    from tests.helpers.frontends import have

    with ExitStack() as stack:
        yield {
            kind: stack.enter_context(running_cluster(kind, workdir / kind))
            for kind in kinds
            if have(kind)
        }


def kinds_fixtures(tag: str, kinds: tuple[str, ...]) -> tuple[Any, Any]:
    """Two fixtures for a test module: `clusters` (every installed kind of `kinds` running,
    module-scoped) and `cluster` (parametrized over `kinds`, skipping one not installed).

    In the module: ``clusters, cluster = kinds_fixtures("tls", KINDS)``.
    """
    import pytest

    @pytest.fixture(scope="module")
    def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Cluster]]:
        with running_clusters(tmp_path_factory.mktemp(tag), kinds) as out:
            yield out

    @pytest.fixture(params=kinds)
    def cluster(request: pytest.FixtureRequest, clusters: dict[str, Cluster]) -> Cluster:
        if request.param not in clusters:
            pytest.skip(f"{request.param} is not installed (bash scripts/setup.sh installs it)")
        return clusters[request.param]

    return clusters, cluster
