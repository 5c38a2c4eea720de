"""One sticky-cookie format across the kinds, on real servers in front of the same backends.

inventories/three-kinds.yaml puts a front end of each kind before the same pools, for DNS or a
floating address to spread clients over them; a client then meets any of the three. Here the
three run side by side (a service each, as one host cannot bind a port three times) in front
of one set of backends, and a client pinned through one of them must stay on its server
through the other two.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from clusterctl.model import load
from tests.helpers.backends import HttpBackend
from tests.helpers.frontends import free_port, have, launch, short_root
from tests.helpers.http import EXAMPLE_CERT, EXAMPLE_KEY, Reply, request

KINDS = ("haproxy", "nginx", "apache")
SERVERS = ("b1", "b2", "b3")
pytestmark = pytest.mark.servers


@dataclass
class Ports:
    http: int
    https: int


def inventory_text(backends: dict[str, HttpBackend], ports: dict[str, Ports], admin: int) -> str:
    servers = "".join(
        f"      - {{name: {b.name}, address: {b.address}, port: {b.port}}}\n"
        for b in backends.values()
    )
    text = "cluster: sticky-test\nfrontends:\n"
    for kind in ports:
        text += f"  - {{name: fe-{kind}, kind: {kind}, address: 127.0.0.1, services: [web-{kind}]"
        text += f", admin_port: {admin}}}\n" if kind == "apache" else "}\n"
    text += f"""\
pools:
  - name: app
    sticky: {{cookie: SRVID}}
    servers:
{servers}\
services:
"""
    for kind, p in ports.items():
        text += f"""\
  - name: web-{kind}
    listen:
      - {{address: 127.0.0.1, port: {p.http}}}
      - {{address: 127.0.0.1, port: {p.https}, tls: true}}
    tls: {{certificate: files/example.com.crt, key: files/example.com.key, redirect: false}}
    default_pool: app
"""
    return text


@pytest.fixture(scope="module")
def fronts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Ports]]:
    """Each installed kind running in front of the same three backends: kind -> its ports."""
    kinds = [k for k in KINDS if have(k)]
    if len(kinds) < 2:
        pytest.skip("needs at least two of haproxy, nginx and apache2 installed")
    workdir = tmp_path_factory.mktemp("sticky")
    (workdir / "files").mkdir()
    shutil.copy(EXAMPLE_CERT, workdir / "files" / "example.com.crt")
    shutil.copy(EXAMPLE_KEY, workdir / "files" / "example.com.key")
    with ExitStack() as stack:
        backends = {}
        for i, name in enumerate(SERVERS):
            backends[name] = HttpBackend(name, f"127.0.1.{i + 2}").start()
            stack.callback(backends[name].stop)
        ports = {k: Ports(free_port(), free_port()) for k in kinds}
        path = workdir / "inventory.yaml"
        path.write_text(inventory_text(backends, ports, free_port()))
        inv = load(path)
        for fe in inv.frontends:
            root = short_root(f"cc-st-{fe.kind}-")
            stack.callback(shutil.rmtree, root, True)
            p = ports[fe.kind]
            stack.callback(launch(inv, fe, Path(root), [p.http, p.https]).stop)
        yield ports


def get(p: Ports, tls: bool, cookie: str | None = None) -> Reply:
    return request(
        p.https if tls else p.http, "/", tls=tls, cookies={"SRVID": cookie} if cookie else None
    )


def set_cookie_attributes(r: Reply) -> set[str]:
    (raw,) = [h for h in r.header_values("Set-Cookie") if h.startswith("SRVID=")]
    return {part.strip().lower() for part in raw.split(";")[1:]}


@pytest.mark.parametrize("first", KINDS)
@pytest.mark.parametrize("tls", [False, True])
def test_a_client_pinned_through_one_kind_stays_on_its_server_through_the_others(
    fronts: dict[str, Ports], first: str, tls: bool
) -> None:
    if first not in fronts:
        pytest.skip(f"{first} is not installed")
    for _ in range(4):  # fresh clients, spread over the servers by the first kind
        placed = get(fronts[first], tls)
        cookie = placed.cookies()["SRVID"]
        assert cookie == f".{placed.backend}"
        for kind, p in fronts.items():
            again = [get(p, tls, cookie) for _ in range(3)]
            assert {r.backend for r in again} == {placed.backend}, (first, kind)
            # Each kind recognises the others' cookie as valid: nobody re-pins the client.
            assert all("SRVID" not in r.cookies() for r in again), kind


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tls", [False, True])
def test_the_cookie_is_httponly_samesite_lax_and_secure_only_over_https(
    fronts: dict[str, Ports], kind: str, tls: bool
) -> None:
    if kind not in fronts:
        pytest.skip(f"{kind} is not installed")
    attrs = set_cookie_attributes(get(fronts[kind], tls))
    assert {"path=/", "httponly", "samesite=lax"} <= attrs
    # Over plain HTTP a browser would drop a Secure cookie, and the client would lose its pin.
    assert ("secure" in attrs) == tls


def test_fresh_clients_are_spread_over_every_server(fronts: dict[str, Ports]) -> None:
    for kind, p in fronts.items():
        seen = {get(p, False).backend for _ in range(40)}
        assert seen == set(SERVERS), kind
