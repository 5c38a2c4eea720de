"""What an expert reader (and gixy-ng) asks of the configs beyond routing: health checks on
every pool, file limits that hold the connections nginx is told to accept, an explicit
default server per shared socket, and version-aware keep-alive settings.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import crossplane
import pytest

from clusterctl.model import load, parse
from clusterctl.model.schema import Inventory
from clusterctl.render import render, render_frontend
from tests.helpers.cluster import Cluster, kinds_fixtures
from tests.helpers.frontends import manager_header

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.servers

clusters, cluster = kinds_fixtures("checks", ("nginx", "apache"))


def nginx_conf(inv: Inventory, name: str) -> list[dict[str, Any]]:
    """nginx.conf of front end `name`, parsed by crossplane."""
    fe = next(f for f in inv.frontends if f.name == name)
    text = render_frontend(inv, fe)["/etc/nginx/nginx.conf"].content.decode()
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
        f.write(text)
        f.flush()
        payload = crossplane.parse(f.name, single=True, check_ctx=False, check_args=False)
    assert payload["status"] == "ok", payload["errors"]
    parsed: list[dict[str, Any]] = payload["config"][0]["parsed"]
    return parsed


def directives(block: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [d for d in block if d["directive"] == name]


# -- nginx -------------------------------------------------------------------------------------


def test_nginx_workers_may_open_twice_worker_connections_files(
    clusters: dict[str, Cluster],
) -> None:
    if "nginx" not in clusters:
        pytest.skip("nginx is not installed")
    c = clusters["nginx"]
    (events,) = directives(nginx_conf(c.inv, c.inv.frontends[0].name), "events")
    (conns,) = directives(events["block"], "worker_connections")
    master = c.frontend.proc.pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert children, "no nginx worker"
    for pid in children:
        limits = Path(f"/proc/{pid}/limits").read_text()
        soft = int(re.search(r"^Max open files\s+(\d+)", limits, re.M).group(1))  # type: ignore[union-attr]
        # Each proxied request holds a client and an upstream socket.
        assert soft >= 2 * int(conns["args"][0]), limits


@pytest.mark.parametrize("name", ["full", "three-kinds"])
def test_nginx_names_one_default_server_per_shared_socket(name: str) -> None:
    inv = load(REPO / "inventories" / f"{name}.yaml")
    for fe in inv.frontends:
        if fe.kind != "nginx":
            continue
        (http,) = directives(nginx_conf(inv, fe.name), "http")
        blocks: Counter[str] = Counter()
        defaults: Counter[str] = Counter()
        for server in directives(http["block"], "server"):
            for listen in directives(server["block"], "listen"):
                blocks[listen["args"][0]] += 1
                defaults[listen["args"][0]] += "default_server" in listen["args"]
        if name == "full":  # its api.example.com route: blocks that share the sockets
            assert any(n > 1 for n in blocks.values())
        for socket_, n in blocks.items():
            assert defaults[socket_] == 1, f"{fe.name} {socket_}: {n} blocks"


@pytest.mark.parametrize(("version", "expected"), [("1.22.1", False), ("1.27.4", True)])
def test_nginx_keepalive_min_timeout_from_1_27_4(version: str, expected: bool) -> None:
    path = REPO / "inventories" / "three-kinds.yaml"
    text = path.read_text().replace(
        "    kind: nginx ", f'    version: "{version}"\n    kind: nginx ', 1
    )
    inv = parse(text, str(path))
    (http,) = directives(nginx_conf(inv, "lb-nginx"), "http")
    found = directives(http["block"], "keepalive_min_timeout")
    assert bool(found) == expected


# -- Apache --------------------------------------------------------------------------------------


def _manager(c: Cluster) -> str:
    """The balancer-manager page, asked as clusterctl asks (its token from the header file)."""
    header = manager_header(c.inv.frontends[0], c.frontend.root)
    url = f"http://127.0.0.1:{c.ports['admin']}/balancer-manager"
    return subprocess.run(
        ["curl", "-fsS", "--max-time", "5", "-H", f"@{header}", "--", url],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout


def _member_row(page: str, backend: str) -> str:
    text = re.sub(r"<[^>]+>", " ", page)
    (row,) = [ln for ln in text.splitlines() if re.search(rf"\s{backend}\s", ln)]
    return row


def test_apache_checks_every_pool_like_haproxy(clusters: dict[str, Cluster]) -> None:
    if "apache" not in clusters:
        pytest.skip("apache2 is not installed")
    c = clusters["apache"]
    page = _manager(c)
    for name in c.backends:
        assert re.search(r"\s(TCP|GET)\s", _member_row(page, name)), name
    # Horse_v2.pool-1 has no health settings: a TCP check finds its dead server by itself,
    # without a request having to fail first.
    h1 = c.backends["h1"]
    h1.stop()
    try:
        deadline = time.monotonic() + 15
        while "HcFl" not in _member_row(_manager(c), "h1"):
            assert time.monotonic() < deadline, _member_row(_manager(c), "h1")
            time.sleep(0.5)
    finally:
        h1.start()


def test_every_rendered_apache_pool_has_a_health_check() -> None:
    for name in ("full", "three-kinds"):
        for host, files in render(load(REPO / "inventories" / f"{name}.yaml")).items():
            for path, f in files.items():
                if path.endswith("apache2.conf"):
                    members = re.findall(r"^\s*BalancerMember .*$", f.content.decode(), re.M)
                    assert members, host
                    assert all(" hcmethod=" in m for m in members), host
