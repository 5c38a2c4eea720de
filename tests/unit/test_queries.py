"""Inventory queries (model/queries.py) and the one host:port formatter."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from clusterctl.errors import ClusterctlError
from clusterctl.model import parse
from clusterctl.model.queries import (
    base_dir,
    bracket,
    find_server,
    frontend_pools,
    frontend_services,
    host_port,
    node_pools,
    rollout_pools,
    service_pools,
)
from clusterctl.preflight import Bind
from clusterctl.render import environment

INV = """
cluster: shop
frontends:
  - {name: lb1, kind: nginx, address: 192.0.2.10, services: [web]}
  - {name: lb2, kind: haproxy, address: 192.0.2.11}
pools:
  - name: app
    servers:
      - {name: a1, address: 192.0.2.21, port: 8080}
      - {name: a2, address: "2001:db8::22", port: 8080}
  - name: api
    servers:
      - {name: b1, address: 192.0.2.31, port: 9000}
      - {name: a1, address: 192.0.2.21, port: 9000}
  - name: db
    servers:
      - {name: d1, address: 192.0.2.41, port: 3306}
services:
  - name: web
    listen: [{port: 80}]
    default_pool: app
    routes: [{path: /api, pool: api}, {path: /v2, pool: app}]
  - name: sql
    mode: tcp
    listen: [{port: 3306}]
    default_pool: db
"""


@pytest.fixture(scope="module")
def inv():  # type: ignore[no-untyped-def]
    return parse(INV, "/srv/inventories/shop.yaml")


@pytest.mark.parametrize(
    ("address", "port", "want"),
    [
        ("192.0.2.1", 80, "192.0.2.1:80"),
        ("2001:db8::1", 443, "[2001:db8::1]:443"),
        ("::1", 8080, "[::1]:8080"),
        ("::", 80, "[::]:80"),
        ("lb.example.com", 22, "lb.example.com:22"),
        ("[2001:db8::1]", 443, "[2001:db8::1]:443"),  # already bracketed: not twice
        ("fe80::1", "8404", "[fe80::1]:8404"),
    ],
)
def test_host_port_brackets_ipv6_only(address: str, port: int | str, want: str) -> None:
    assert host_port(address, port) == want


def test_bracket_leaves_names_and_ipv4_alone() -> None:
    assert [bracket(a) for a in ("192.0.2.1", "example.com", "2001:db8::5")] == [
        "192.0.2.1",
        "example.com",
        "[2001:db8::5]",
    ]


def test_templates_format_with_the_same_function() -> None:
    env = environment()
    out = env.from_string("{{ a | hostport(p) }} {{ b | hostport(p) }} {{ b | bracket }}").render(
        a="192.0.2.1", b="2001:db8::1", p=80
    )
    assert out == "192.0.2.1:80 [2001:db8::1]:80 [2001:db8::1]"


def test_the_preflight_prints_binds_through_it() -> None:
    assert str(Bind("2001:db8::1", 443)) == "[2001:db8::1]:443"
    assert str(Bind("*", 80)) == "0.0.0.0:80"


def test_services_and_pools_of_a_front_end(inv) -> None:  # type: ignore[no-untyped-def]
    lb1, lb2 = inv.frontends
    assert [s.name for s in frontend_services(inv, lb1)] == ["web"]
    assert [s.name for s in frontend_services(inv, lb2)] == ["web", "sql"]
    assert [p.name for p in service_pools(inv, inv.services[0])] == ["app", "api"]
    assert [p.name for p in frontend_pools(inv, lb1)] == ["app", "api"]
    assert [p.name for p in frontend_pools(inv, lb2)] == ["app", "api", "db"]
    assert [p.name for p in node_pools(inv, lb2, "a1")] == ["app", "api"]
    assert node_pools(inv, lb1, "d1") == []


def test_server_by_name(inv) -> None:  # type: ignore[no-untyped-def]
    assert find_server(inv, "a2").address == "2001:db8::22"
    assert find_server(inv, "a1").port == 8080  # the first pool's entry
    with pytest.raises(
        ClusterctlError, match=r"no backend server named 'zz' \(known: a1, a2, b1, d1\)"
    ):
        find_server(inv, "zz")


def test_the_pools_a_rollout_covers(inv) -> None:  # type: ignore[no-untyped-def]
    assert [p.name for p in rollout_pools(inv, None)] == ["app", "api"]  # http services only
    assert [p.name for p in rollout_pools(inv, [" db ", "app"])] == ["db", "app"]
    with pytest.raises(ClusterctlError, match="--pool names nothing"):
        rollout_pools(inv, [" "])
    with pytest.raises(ClusterctlError, match="--pool names unknown pool nope"):
        rollout_pools(inv, ["nope"])


def test_the_base_folder_is_the_inventory_s(inv, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert base_dir(inv) == Path("/srv/inventories")
    monkeypatch.chdir(tmp_path)
    assert base_dir(dataclasses.replace(inv, source="")) == tmp_path


def test_old_names_answer_the_same(inv) -> None:  # type: ignore[no-untyped-def]
    from clusterctl.execute import admin_views
    from clusterctl.model import semantics
    from clusterctl.orchestrate import batches

    assert semantics.frontend_services is frontend_services
    assert semantics.service_pools is service_pools
    assert admin_views.pools_of is frontend_pools
    assert admin_views.node_pools is node_pools
    assert batches.find_server is find_server
    assert batches.rollout_pools is rollout_pools
