"""Properties of validation and rendering over generated inventories (hypothesis).

A. Every generated inventory validates (loaded from its dumped YAML) and renders the same bytes
   every time.
B. For each front-end kind, what clusterctl renders passes the real validator (haproxy -c,
   nginx -t, apache2 -t through clusterctl.localcheck.check_frontend).
C. nginx.conf parsed back with crossplane holds exactly what the model says: one upstream per
   pool in use, one server per server with its flags, the routes' locations, a server block per
   routed host, and no directive outside an allow-list; and a request is sent to the pool the
   documented rule picks (a route for the host first, then the longest path).
D. Arbitrary text in a name, path, cookie or host is refused by validation, or renders without
   changing the shape of any config (no added directive).

The generated inventories stay within what validation accepts; where the model accepts more
than the servers do, a strict xfail below pins the gap (and the strategy avoids it).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import re
import shlex
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import crossplane
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from clusterctl.drivers import driver_for
from clusterctl.errors import InventoryError
from clusterctl.localcheck import check_frontend
from clusterctl.model import parse
from clusterctl.model.schema import Inventory
from clusterctl.render import render, render_frontend
from tests.helpers.frontends import have

REPO = Path(__file__).resolve().parents[2]
KINDS = ("haproxy", "nginx", "apache")
BALANCE = {
    "haproxy": {"roundrobin", "leastconn", "source", "random", "first"},
    "nginx": {"roundrobin", "leastconn", "source", "random"},
    "apache": {"roundrobin", "leastconn"},
}
# Versions each kind may declare (all at or above clusterctl's minimum); INSTALLED is what
# Debian 12 ships and what the real validators on this machine read.
VERSIONS = {
    "haproxy": ["2.2", "2.6", "2.8", "3.0"],
    "nginx": ["1.19.5", "1.22.1", "1.25.1", "1.29.6", "1.30.0"],
    "apache": ["2.4.30", "2.4.62"],
}
INSTALLED = {"haproxy": "2.6", "nginx": "1.22.1", "apache": "2.4.62"}
STICKY_NGINX = (1, 29, 6)

# Generated inventories are large: shrinking one takes minutes for little gain, and a failure
# prints the whole inventory anyway. So those tests skip the shrink phase (NO_SHRINK).
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]
settings.register_profile(
    "clusterctl",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("clusterctl")


# -- strategies ------------------------------------------------------------------------------

# Names: the model's alphabet. Kept unique ignoring case (see test_pool_names_differing_only_in_case)
# and short enough for `render --check` (see test_check_with_a_long_front_end_name).
NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,11}", fullmatch=True)
COOKIES = st.from_regex(r"[A-Za-z0-9_]{1,16}", fullmatch=True)  # no '-': see checks.cookie
_SEG = st.from_regex(r"[A-Za-z0-9._~-]{1,8}", fullmatch=True).filter(lambda s: s not in (".", ".."))
PATHS = st.one_of(
    st.just("/"), st.lists(_SEG, min_size=1, max_size=3).map(lambda segs: "/" + "/".join(segs))
)
_LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
HOSTS = st.builds(
    lambda labels, tld, dot: ".".join([*labels, tld]) + dot,
    st.lists(_LABEL, min_size=1, max_size=3),
    st.sampled_from(["com", "example", "test", "Net"]),
    st.sampled_from(["", "", "."]),
)
IPV4 = st.builds(
    lambda net, host: f"{net}.{host}",
    st.sampled_from(["192.0.2", "198.51.100", "203.0.113"]),
    st.integers(1, 254),
)
IPV6 = st.builds(lambda n: f"2001:db8::{n:x}", st.integers(1, 0xFFFF))
ADDRESSES = st.one_of(IPV4, IPV4, IPV6, HOSTS)
DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# Up to ~24 days: HAProxy's timers hold 2**31 ms (see test_durations_beyond_haproxy_timers).
DURATIONS = st.one_of(
    st.builds(lambda n: f"{n}ms", st.integers(1, 10**8)),
    st.builds(lambda n: f"{n}s", st.integers(1, 10**6)),
    st.builds(lambda n: f"{n}m", st.integers(1, 30_000)),
    st.builds(lambda n: f"{n}h", st.integers(1, 500)),
    st.builds(lambda n: f"{n}d", st.integers(1, 20)),
)
SIZES = st.one_of(
    st.integers(1, 2**31),
    st.builds(lambda n, u: f"{n}{u}", st.integers(1, 4096), st.sampled_from(["k", "m", "g", "K"])),
)


def _unique(draw: Any, n: int, strategy: st.SearchStrategy[str] = NAMES) -> list[str]:
    names: list[str] = draw(st.lists(strategy, min_size=n, max_size=n, unique_by=str.lower))
    return names


def _older(version: str | None, kind: str, than: tuple[int, ...]) -> bool:
    v = version or INSTALLED[kind]
    return tuple(int(x) for x in v.split(".")) < than


@st.composite
def inventories(
    draw: Any, kinds: tuple[str, ...] | None = None, installed: bool = False
) -> dict[str, Any]:
    """A valid inventory as plain data. `installed`: versions the local validators read."""
    fe_kinds = list(kinds or draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=3)))
    has_tcp = "haproxy" in fe_kinds and draw(st.booleans())
    n_http_pools = draw(st.integers(1, 4))
    n_tcp_pools = 1 if has_tcp else 0
    n_http_services = draw(st.integers(1, 2))
    fe_names = _unique(draw, len(fe_kinds))
    pool_names = _unique(draw, n_http_pools + n_tcp_pools)
    svc_names = _unique(draw, n_http_services + (1 if has_tcp else 0))

    frontends = []
    old_nginx = False
    for name, kind in zip(fe_names, fe_kinds, strict=True):
        fe: dict[str, Any] = {"name": name, "kind": kind, "address": draw(IPV4)}
        version = draw(
            st.sampled_from([None, INSTALLED[kind]] if installed else [None, *VERSIONS[kind]])
        )
        if version:
            fe["version"] = version
        old_nginx |= kind == "nginx" and _older(version, "nginx", STICKY_NGINX)
        if kind == "haproxy" and draw(st.booleans()):
            fe["hard_stop_after"] = draw(DURATIONS)
        if kind == "haproxy" and draw(st.booleans()):
            fe["paths"] = {"config": "/srv/lb/haproxy.cfg", "admin_socket": "/srv/lb/admin.sock"}
            fe["outside_paths"] = ["/srv/lb"]  # outside haproxy's own folders, so named
        if kind == "nginx" and draw(st.booleans()):
            fe["paths"] = {"config": "/opt/nginx/nginx.conf", "tls_dir": "/opt/nginx/tls"}
            fe["outside_paths"] = ["/opt/nginx"]
        frontends.append(fe)

    balance_ok = set.intersection(*(BALANCE[k] for k in fe_kinds))
    servers_seen = _unique(draw, 4 * (n_http_pools + n_tcp_pools))
    pools = []
    for i, pname in enumerate(pool_names):
        tcp = i >= n_http_pools
        n = draw(st.integers(1, 4))
        servers = []
        for j in range(n):
            s: dict[str, Any] = {
                "name": servers_seen[4 * i + j],
                # Host names must resolve where the config is checked: IPs for the validators.
                "address": draw(st.one_of(IPV4, IPV6) if installed else ADDRESSES),
                "port": draw(st.integers(1, 65535)),
            }
            if draw(st.booleans()):
                s["weight"] = draw(st.integers(1, 100))
            if j > 0 and draw(st.booleans()):
                s["backup"] = True
            state = draw(st.sampled_from(["ready", "ready", "drain", "maint", None]))
            if state:
                s["state"] = state
            servers.append(s)
        pool: dict[str, Any] = {"name": pname, "servers": servers}
        balance = draw(st.sampled_from(sorted(BALANCE["haproxy"] if tcp else balance_ok)))
        sticky = not tcp and draw(st.booleans())
        if sticky:
            pool["sticky"] = {"cookie": draw(COOKIES)}
        if old_nginx and not tcp:
            # nginx before 1.29.6 hashes for stickiness: no backup servers beside a hash, and
            # no other balance method with a sticky cookie.
            if sticky and balance != "roundrobin":
                balance = "roundrobin"
            if sticky or balance in ("source", "random"):
                for s in servers:
                    s.pop("backup", None)
        pool["balance"] = balance
        if draw(st.booleans()):
            health: dict[str, Any] = {}
            kind = draw(st.sampled_from(["http", "tcp", "mysql"] if tcp else ["http", "tcp"]))
            health["type"] = kind
            if kind == "mysql":
                health["user"] = draw(st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True))
            if draw(st.booleans()):
                health["path"] = draw(PATHS)
            if draw(st.booleans()):
                health["host"] = draw(HOSTS)
            for key, strat in (
                ("expect", st.integers(200, 399)),
                ("interval", DURATIONS),
                ("timeout", DURATIONS),
                ("rise", st.integers(1, 100)),
                ("fall", st.integers(1, 100)),
                ("max_fails", st.integers(0, 100)),
                ("fail_timeout", DURATIONS),
            ):
                if draw(st.booleans()):
                    health[key] = draw(strat)
            pool["health"] = health
        if draw(st.booleans()):
            pool["keepalive"] = draw(st.integers(0, 1024))
        pools.append(pool)

    http_pools = pool_names[:n_http_pools]
    admin_ports = [8081]
    for fe in frontends:
        if fe["kind"] == "apache" and draw(st.booleans()):
            fe["admin_port"] = draw(st.integers(1024, 65535))
            admin_ports.append(fe["admin_port"])
    n_listeners = [draw(st.integers(1, 2)) for _ in svc_names]
    ports = draw(
        st.lists(
            st.integers(1, 65535).filter(lambda p: p not in admin_ports),
            min_size=sum(n_listeners),
            max_size=sum(n_listeners),
            unique=True,
        )
    )
    services = []
    for si, sname in enumerate(svc_names):
        tcp = si >= n_http_services
        mine = ports[sum(n_listeners[:si]) : sum(n_listeners[: si + 1])]
        tls = not tcp and draw(st.booleans())
        listen = []
        for li, port in enumerate(mine):
            ln: dict[str, Any] = {"port": port}
            if draw(st.booleans()):
                # nginx -t binds its listeners: only local addresses for the validators.
                local = ["*", "127.0.0.1", "::1"]
                ln["address"] = draw(
                    st.sampled_from(local if installed else [*local, "192.0.2.10", "2001:db8::10"])
                )
            if tls and (li == len(mine) - 1 or draw(st.booleans())):
                ln["tls"] = True
            listen.append(ln)
        svc: dict[str, Any] = {"name": sname, "listen": listen}
        if tcp:
            svc["mode"] = "tcp"
            svc["default_pool"] = pool_names[-1]
        else:
            svc["default_pool"] = draw(st.sampled_from(http_pools))
            routes = []
            keys: set[tuple[str | None, str | None]] = set()
            for _ in range(draw(st.integers(0, 4))):
                route: dict[str, Any] = {"pool": draw(st.sampled_from(http_pools))}
                shape = draw(st.sampled_from(["path", "host", "both"]))
                if shape in ("path", "both"):
                    route["path"] = draw(PATHS)
                if shape in ("host", "both"):
                    route["host"] = draw(HOSTS)
                route_key = (
                    route.get("host", "").lower().rstrip(".") or None,
                    route.get("path", "/"),  # no path and "/" are the same route
                )
                if route_key not in keys:
                    keys.add(route_key)
                    routes.append(route)
            if routes:
                svc["routes"] = routes
        if tls:
            svc["tls"] = {"certificate": "files/example.com.crt", "key": "files/example.com.key"}
            if draw(st.booleans()):
                svc["tls"]["redirect"] = draw(st.booleans())
            if draw(st.booleans()):
                svc["tls"]["hsts"] = draw(st.one_of(st.just("0s"), DURATIONS))
            if draw(st.booleans()):
                svc["tls"]["profile"] = draw(st.sampled_from(["intermediate", "modern"]))
        if draw(st.booleans()):
            svc["timeouts"] = {
                k: draw(DURATIONS) for k in ("connect", "client", "server") if draw(st.booleans())
            }
        if not tcp and draw(st.booleans()):
            svc["max_body"] = draw(SIZES)
        if not tcp and draw(st.booleans()):
            svc["forwarded"] = draw(st.booleans())
        services.append(svc)

    if has_tcp:
        http_names = svc_names[:n_http_services]
        for fe in frontends:
            if fe["kind"] != "haproxy":
                fe["services"] = http_names
    return {"cluster": draw(NAMES), "frontends": frontends, "pools": pools, "services": services}


# -- helpers -----------------------------------------------------------------------------------


def dump(doc: dict[str, Any]) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.representer.ignore_aliases = lambda *_: True  # the loader refuses anchors
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A folder with the example TLS files where generated inventories are `loaded` from."""
    d = Path(tempfile.mkdtemp(prefix="cc-prop-"))
    (d / "files").mkdir()
    for name in ("example.com.crt", "example.com.key"):
        shutil.copy(REPO / "inventories" / "files" / name, d / "files" / name)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def load_doc(doc: dict[str, Any], workdir: Path) -> Inventory:
    text = dump(doc)
    try:
        return parse(text, str(workdir / "inventory.yaml"))
    except InventoryError as exc:
        raise AssertionError(f"generated inventory refused:\n{exc}\n---\n{text}") from None


def render_all_bytes(inv: Inventory) -> dict[str, dict[str, bytes]]:
    return {h: {p: f.content for p, f in files.items()} for h, files in render(inv).items()}


# -- A: valid and deterministic ---------------------------------------------------------------


@settings(max_examples=40, phases=NO_SHRINK)
@given(doc=inventories())
def test_generated_inventories_validate_and_render_deterministically(
    doc: dict[str, Any], workdir: Path
) -> None:
    inv = load_doc(doc, workdir)
    first = render_all_bytes(inv)
    assert render_all_bytes(inv) == first
    assert render_all_bytes(load_doc(copy.deepcopy(doc), workdir)) == first
    assert set(first) == {fe["name"] for fe in doc["frontends"]}


# -- B: the real validators accept the output ---------------------------------------------------


@pytest.mark.servers
@pytest.mark.parametrize("kind", KINDS)
def test_real_validator_accepts_rendered_config(kind: str, workdir: Path) -> None:
    if not have(kind):
        pytest.skip(f"{kind} is not installed")

    @settings(max_examples=25, phases=NO_SHRINK)
    @given(doc=inventories(kinds=(kind,), installed=True))
    def check(doc: dict[str, Any]) -> None:
        inv = load_doc(doc, workdir)
        result = check_frontend(inv, inv.frontends[0])
        assert result.ok, f"{kind} rejected:\n{result.output}\n---\n{dump(doc)}"

    check()


# -- C: nginx.conf says exactly what the model means ---------------------------------------------

# Every directive name the nginx template may write (in map blocks, the keys are data).
NGINX_ALLOWED = {
    "user", "worker_processes", "pid", "error_log", "events", "worker_connections", "http",
    "default_type", "access_log", "client_body_temp_path", "proxy_temp_path",
    "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path", "server_tokens",
    "keepalive_timeout", "map", "upstream", "sticky", "hash", "least_conn", "ip_hash", "random",
    "server", "keepalive", "listen", "server_name", "return", "client_max_body_size",
    "client_header_timeout", "client_body_timeout", "send_timeout", "proxy_connect_timeout",
    "proxy_read_timeout", "proxy_send_timeout", "proxy_http_version", "proxy_set_header",
    "proxy_next_upstream", "proxy_next_upstream_tries", "ssl_certificate", "ssl_certificate_key",
    "ssl_protocols", "ssl_ciphers", "ssl_prefer_server_ciphers", "ssl_session_timeout",
    "ssl_session_cache", "ssl_session_tickets", "http2", "location", "proxy_pass", "add_header",
    "worker_rlimit_nofile", "keepalive_min_timeout", "ssl_ecdh_curve", "split_clients",
    "log_format", "error_page", "internal", "alias", "stub_status", "allow", "deny",
    # nginx's Lua balancer (drivers/nginx_lua.py): its code is clusterctl's, its data the model's.
    "load_module", "lua_shared_dict", "init_by_lua_block", "header_filter_by_lua_block",
    "log_by_lua_block", "balancer_by_lua_block", "content_by_lua_block", "client_body_buffer_size",
}  # fmt: skip
# One pool, one member, in the member list nginx.conf's init_by_lua_block carries.
LUA_POOL = re.compile(
    r'\{ name = "([^"]*)", balance = "([^"]*)", sticky = "([^"]*)", max_fails = (\d+), '
    r"fail_timeout = (\d+), servers = \{\n((?:.*\n)*?) *\} \},"
)
LUA_MEMBER = re.compile(
    r'\{ name = "([^"]*)", address = "([^"]*)", port = (\d+), weight = (\d+), '
    r'state = "([^"]*)", backup = (true|false) \},'
)
MAP_KEYS = {"", "default", "on", ":", ":on", "*"}
# Also data in map and split_clients blocks: a sticky cookie's value (.<server>), a share.
MAP_KEY_PATTERN = re.compile(r"\.[A-Za-z0-9._-]+|[0-9]+\.[0-9]{2}%")


def map_key(name: str) -> bool:
    return name in MAP_KEYS or MAP_KEY_PATTERN.fullmatch(name) is not None


def nginx_tree(text: str) -> list[dict[str, Any]]:
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write(text)
    try:
        payload = crossplane.parse(f.name, single=True, check_ctx=False, check_args=False)
    finally:
        Path(f.name).unlink()
    assert payload["status"] == "ok", payload["errors"]
    parsed: list[dict[str, Any]] = payload["config"][0]["parsed"]
    return parsed


def walk(block: list[dict[str, Any]], in_map: bool = False) -> Iterator[tuple[str, bool]]:
    for d in block:
        yield d["directive"], in_map
        yield from walk(d.get("block", []), in_map or d["directive"] in ("map", "split_clients"))


def find(block: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [d for d in block if d["directive"] == name]


def winner(svc: dict[str, Any], host: str | None, path: str) -> dict[str, Any] | None:
    """The route the documented rule picks: a route for the host first, then the longest path."""
    routes: list[dict[str, Any]] = sorted(
        svc.get("routes", []),
        key=lambda r: (r.get("host") is None, -len(r.get("path") or "")),
    )
    for r in routes:
        rhost = r["host"].lower().rstrip(".") if "host" in r else None
        rpath = r.get("path")
        if rhost is not None and rhost != host:
            continue
        if rpath in (None, "/") or path == rpath or path.startswith(rpath + "/"):
            return r
    return None


def oracle(svc: dict[str, Any], host: str | None, path: str) -> str:
    r = winner(svc, host, path)
    return str(svc["default_pool"] if r is None else r["pool"])


def nginx_pick(servers: list[dict[str, Any]], host: str | None, path: str) -> str:
    """The pool nginx sends a request to: server block by name, then location matching."""
    named = [
        s
        for s in servers
        if host is not None and host in find(s["block"], "server_name")[0]["args"]
    ]
    block = (named or [s for s in servers if find(s["block"], "server_name")[0]["args"] == ["_"]])[
        0
    ]
    locations = find(block["block"], "location")
    exact = [loc for loc in locations if loc["args"] == ["=", path]]
    if exact:
        chosen = exact[0]
    else:
        prefixes = [
            loc for loc in locations if len(loc["args"]) == 1 and path.startswith(loc["args"][0])
        ]
        chosen = max(prefixes, key=lambda loc: len(loc["args"][0]))
    (proxy,) = find(chosen["block"], "proxy_pass")
    target: str = proxy["args"][0]
    assert target.startswith("http://")
    return target.removeprefix("http://")


def probes(svc: dict[str, Any]) -> list[tuple[str | None, str]]:
    hosts: list[str | None] = [None, "unrouted.example.org"]
    paths = ["/", "/zz-unrouted"]
    for r in svc.get("routes", []):
        if "host" in r:
            hosts.append(r["host"].lower().rstrip("."))
        if r.get("path", "/") != "/":
            p = r["path"]
            paths += [p, p + "/", p + "/deeper/x", p + "x", p.rsplit("/", 1)[0] or "/"]
    return [(h, p) for h in dict.fromkeys(hosts) for p in dict.fromkeys(paths)]


def lua_members(body: list[dict[str, Any]]) -> dict[str, tuple[tuple[str, ...], list[Any]]]:
    """Each pool in the Lua balancer's member list: its settings and its members."""
    (init,) = find(body, "init_by_lua_block")
    return {
        m[1]: (m.groups()[1:5], [s.groups() for s in LUA_MEMBER.finditer(m[6])])
        for m in LUA_POOL.finditer(init["args"][0])
    }


@settings(max_examples=50, phases=NO_SHRINK)
@given(doc=inventories(kinds=("nginx",)), lua=st.booleans())
def test_nginx_config_holds_exactly_the_model(
    doc: dict[str, Any], lua: bool, workdir: Path
) -> None:
    inv = load_doc(doc, workdir)
    (fe,) = inv.frontends
    if not lua:  # a host without the Lua module (its facts found none): upstream blocks
        fe = dataclasses.replace(fe, present=())
    new_nginx = not _older(fe.version, "nginx", STICKY_NGINX) and not lua
    text = render_frontend(inv, fe)[fe.paths.config or "/etc/nginx/nginx.conf"].content.decode()
    tree = nginx_tree(text)

    # No directive outside the allow-list: nothing from the inventory became a directive.
    for name, in_map in walk(tree):
        assert map_key(name) if in_map else name in NGINX_ALLOWED, f"unexpected directive {name!r}"

    (http,) = find(tree, "http")
    body = http["block"]
    pools = {p["name"]: p for p in doc["pools"]}
    services = [s for s in doc["services"] if s.get("mode", "http") == "http"]
    used = {s["default_pool"] for s in services} | {
        r["pool"] for s in services for r in s.get("routes", [])
    }

    # One upstream per pool in use, one server per server, with the model's flags; before
    # nginx 1.29.6 a sticky pool also has one per server not in maintenance (pool~server).
    all_upstreams = {u["args"][0]: u["block"] for u in find(body, "upstream")}
    assert len(find(body, "upstream")) == len(all_upstreams)
    upstreams = {k: v for k, v in all_upstreams.items() if "~" not in k}
    assert set(upstreams) == used
    if lua:
        # Each upstream is the balancer over its pool's members, which the member list holds
        # exactly as the model has them.
        members = lua_members(body)
        assert set(members) == used
        for name, block in upstreams.items():
            pool = pools[name]
            assert [d["args"] for d in find(block, "server")] == [["0.0.0.1"]]
            (bal,) = find(block, "balancer_by_lua_block")
            assert bal["args"][0].strip() == f'require("clusterctl").balance("{name}")'
            settings_, got_members = members[name]
            assert settings_[:2] == (
                pool.get("balance", "roundrobin"),
                pool["sticky"]["cookie"] if "sticky" in pool else "",
            )
            want = [
                (
                    str(s["name"]),
                    str(s["address"]).lower().rstrip("."),
                    str(s["port"]),
                    str(s.get("weight", 1)),
                    s.get("state", "ready"),
                    "true" if s.get("backup") else "false",
                )
                for s in pool["servers"]
            ]
            assert [tuple(g) for g in got_members] == want
        upstreams = {}
    for name, block in upstreams.items():
        pool = pools[name]
        got = find(block, "server")
        assert len(got) == len(pool["servers"])
        for s, d in zip(pool["servers"], got, strict=True):
            addr = str(s["address"]).lower().rstrip(".")
            want = f"[{addr}]:{s['port']}" if ":" in addr else f"{addr}:{s['port']}"
            assert d["args"][0] == want
            flags = d["args"][1:]
            assert f"weight={s.get('weight', 1)}" in flags
            assert ("backup" in flags) == bool(s.get("backup"))
            state = s.get("state", "ready")
            down = state == "maint" or (state == "drain" and not new_nginx)
            assert ("down" in flags) == down
            assert ("drain" in flags) == (state == "drain" and new_nginx)
            assert any(f.startswith("max_fails=") for f in flags) == ("health" in pool)
        if "sticky" in pool and new_nginx:
            (sticky,) = find(block, "sticky")
            assert sticky["args"][:2] == ["cookie", pool["sticky"]["cookie"]]
        elif "sticky" in pool:
            assert not any(find(block, d) for d in ("least_conn", "ip_hash", "random", "hash"))
            own = {s["name"] for s in pool["servers"] if s.get("state", "ready") != "maint"}
            assert {k.split("~", 1)[1] for k in all_upstreams if k.startswith(name + "~")} == own
        else:
            balance = pool.get("balance", "roundrobin")
            method = {"leastconn": "least_conn", "source": "ip_hash", "random": "random"}
            for directive in ("least_conn", "ip_hash", "random", "hash", "sticky"):
                assert bool(find(block, directive)) == (method.get(balance) == directive)

    # Each service: the listeners, a server block per routed host, and requests routed as the
    # documented rule says.
    server_blocks = find(body, "server")
    for svc in services:
        mine = [
            b for b in server_blocks
            if {tuple(ln["args"][:1]) for ln in find(b["block"], "listen")}
            & {(_listen_arg(ln),) for ln in svc["listen"]}
        ]  # fmt: skip
        redirect = "tls" in svc and svc["tls"].get("redirect", True)
        serving = [b for b in mine if not find(b["block"], "return")]
        hosts = {r["host"].lower().rstrip(".") for r in svc.get("routes", []) if "host" in r}
        names = [find(b["block"], "server_name")[0]["args"] for b in serving]
        assert sorted(names) == sorted([["_"]] + [[h] for h in hosts])
        redirectors = [b for b in mine if find(b["block"], "return")]
        if redirect and not all(ln.get("tls") for ln in svc["listen"]):
            (redirector,) = redirectors
            assert find(redirector["block"], "return")[0]["args"][0] == "308"
        else:
            assert redirectors == []
        for host, path in probes(svc):
            picked = sticky_pool(body, nginx_pick(serving, host, path))
            assert picked == oracle(svc, host, path), (host, path)
        # Each route's own server block has `location = /p` and `location /p/` for its path,
        # each passing to the route's pool, and no location twice.
        by_name = {find(b["block"], "server_name")[0]["args"][0]: b["block"] for b in serving}
        own: list[dict[str, Any]] = svc.get("routes", [])
        for r in own:
            path = r.get("path") or "/"
            rhost = r["host"].lower().rstrip(".") if "host" in r else None
            if winner(svc, rhost, path) is not r:
                continue  # another route always wins first (e.g. `path: /` beside no path)
            block = by_name[rhost or "_"]
            wanted = [["/"]] if path == "/" else [["=", path], [path + "/"]]
            for args in wanted:
                (loc,) = [d for d in find(block, "location") if d["args"] == args]
                (target,) = find(loc["block"], "proxy_pass")[0]["args"]
                assert sticky_pool(body, target.removeprefix("http://")) == r["pool"]
        for b in serving:
            locs = [tuple(d["args"]) for d in find(b["block"], "location")]
            assert len(locs) == len(set(locs))


def sticky_pool(http: list[dict[str, Any]], target: str) -> str:
    """The pool behind a proxy_pass target: itself, or the pool a sticky map variable picks in."""
    if not target.startswith("$"):
        return target
    (m,) = [d for d in find(http, "map") if d["args"][1] == target]
    (default,) = [e["args"][0] for e in m["block"] if e["directive"] == "default"]
    return str(default).split("~", 1)[0]


def _listen_arg(ln: dict[str, Any]) -> str:
    addr = ln.get("address", "*")
    if addr == "*":
        return str(ln["port"])
    return f"[{addr}]:{ln['port']}" if ":" in addr else f"{addr}:{ln['port']}"


# -- D: arbitrary text cannot add a directive ---------------------------------------------------

BASELINE: dict[str, Any] = {
    "cluster": "base",
    "frontends": [
        {"name": "lb-h", "kind": "haproxy", "address": "192.0.2.10"},
        {"name": "lb-n", "kind": "nginx", "address": "192.0.2.11"},
        {"name": "lb-a", "kind": "apache", "address": "192.0.2.12"},
    ],
    "pools": [
        {
            "name": "app",
            "sticky": {"cookie": "SRVID"},
            "health": {"path": "/health", "host": "check.example.com"},
            "servers": [
                {"name": "web1", "address": "192.0.2.21", "port": 8080},
                {"name": "web2", "address": "192.0.2.22", "port": 8080},
            ],
        },
        {"name": "other", "servers": [{"name": "web3", "address": "192.0.2.23", "port": 8080}]},
    ],
    "services": [
        {
            "name": "web",
            "listen": [{"port": 80}, {"port": 443, "tls": True}],
            "tls": {"certificate": "files/example.com.crt", "key": "files/example.com.key"},
            "routes": [
                {"path": "/course", "pool": "other"},
                {"host": "api.example.com", "pool": "other"},
            ],
            "default_pool": "app",
        }
    ],
}
FIELDS = {
    "cluster name": ("cluster",),
    "front end name": ("frontends", 1, "name"),
    "pool name": ("pools", 1, "name"),
    "server name": ("pools", 0, "servers", 0, "name"),
    "server address": ("pools", 0, "servers", 0, "address"),
    "cookie": ("pools", 0, "sticky", "cookie"),
    "health path": ("pools", 0, "health", "path"),
    "health host": ("pools", 0, "health", "host"),
    "service name": ("services", 0, "name"),
    "route path": ("services", 0, "routes", 0, "path"),
    "route host": ("services", 0, "routes", 1, "host"),
}
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(
        alphabet=st.sampled_from(
            list("abcz09/.-_~;{}#$\"' \n\r\t\x00\x0b\x85\u2028\u2029\ufeff<>\\`%:[]()=,|&*!?@+^")
        ),
        min_size=1,
        max_size=24,
    ),
)


def put(doc: dict[str, Any], where: tuple[Any, ...], value: str) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    target: Any = out
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    if where == ("pools", 1, "name"):  # keep the references to the pool pointing at it
        for r in out["services"][0]["routes"]:
            r["pool"] = value
    return out


def _tokens(line: str, kind: str) -> tuple[str, int]:
    """A config line as its directive and argument count, read the way the server reads it."""
    if kind == "haproxy":
        line = line.split("#", 1)[0]  # HAProxy: a comment starts at any unquoted `#`
    try:
        words = shlex.split(line, posix=True)
    except ValueError:  # an unbalanced quote
        return ("<unbalanced quote>", 0)
    return (words[0], len(words)) if words else ("", 0)


def shapes(inv: Inventory) -> dict[str, Counter[tuple[str, int]]]:
    """Per front end, the multiset of (directive, number of arguments) of its config: nginx's
    parsed by crossplane, HAProxy's and Apache's split into words as their parsers do."""
    out: dict[str, Counter[tuple[str, int]]] = {}
    for fe in inv.frontends:
        driver = driver_for(fe.kind)
        text = render_frontend(inv, fe)[driver.paths(fe).config].content.decode()
        if fe.kind == "nginx":
            out[fe.kind] = Counter(_nginx_shape(nginx_tree(text)))
        else:
            lines = [
                ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
            ]
            out[fe.kind] = Counter(_tokens(ln, fe.kind) for ln in lines)
    return out


def _nginx_shape(block: list[dict[str, Any]], data: bool = False) -> Iterator[tuple[str, int]]:
    for d in block:
        # Entries of map and split_clients blocks are data (a server's cookie value), not
        # directives: only how many there are, and their arity, is the shape.
        yield ("<entry>" if data else d["directive"]), len(d["args"])
        yield from _nginx_shape(d.get("block", []), d["directive"] in ("map", "split_clients"))


@pytest.fixture(scope="module")
def baseline_shapes(workdir: Path) -> dict[str, Counter[tuple[str, int]]]:
    return shapes(load_doc(BASELINE, workdir))


def refused_or_same_shape(
    field: str, value: str, workdir: Path, base: dict[str, Counter[tuple[str, int]]]
) -> None:
    inventory = str(workdir / "inventory.yaml")
    try:
        inv = parse(dump(put(BASELINE, FIELDS[field], value)), inventory)
    except InventoryError as exc:
        assert all(line.startswith(inventory + ":") for line in str(exc).splitlines())
        return
    assert shapes(inv) == base, f"{field}={value!r} changed a config's shape"


@settings(max_examples=120)
@given(field=st.sampled_from(sorted(FIELDS)), value=HOSTILE_TEXT)
def test_arbitrary_text_is_refused_or_adds_no_directive(
    field: str, value: str, workdir: Path, baseline_shapes: dict[str, Counter[tuple[str, int]]]
) -> None:
    assume(not (field == "route path" and value == "/"))  # the root route is another shape
    refused_or_same_shape(field, value, workdir, baseline_shapes)


SYNTAX = [*";{}\"'#$<> \t\n\r\\`%", "%{X}", "${X}", "\u2028", "\x85", "\x00"]


@pytest.mark.parametrize("char", SYNTAX, ids=repr)
@pytest.mark.parametrize("field", sorted(FIELDS))
def test_each_syntax_character_in_each_field_is_refused_or_inert(
    field: str, char: str, workdir: Path, baseline_shapes: dict[str, Counter[tuple[str, int]]]
) -> None:
    # Shaped like a good value of the field, so the character is the only thing wrong.
    value = {"path": f"/a{char}b", "host": f"a{char}b.example.com", "address": f"192.0.2.1{char}"}
    kind = next((k for k in value if field.endswith(k)), "")
    refused_or_same_shape(field, value.get(kind, f"a{char}b"), workdir, baseline_shapes)


def test_baseline_is_valid_and_fields_exist(workdir: Path) -> None:
    inv = load_doc(BASELINE, workdir)
    assert len(inv.frontends) == 3
    for where in FIELDS.values():
        put(BASELINE, where, "x")  # every path names an existing key


# -- where the model accepts more than the servers do --------------------------------------------

GAP_BASE = (
    "cluster: gap\n"
    "frontends: [{name: FE, kind: KIND, address: 192.0.2.10}]\n"
    "pools:\n"
    "  - {name: POOL1, servers: [{name: web1, address: 192.0.2.21, port: 8080}]}\n"
    "  - {name: POOL2, servers: [{name: web2, address: 192.0.2.22, port: 8080}]}\n"
    "services:\n"
    "  - name: web\n"
    "    listen: [{port: 80}]\n"
    "    routes: [{path: /a, pool: POOL2}]\n"
    "    default_pool: POOL1\n"
    "    timeouts: {server: SERVER_TIMEOUT}\n"
)


def _gap(workdir: Path, **subst: str) -> Inventory:
    text = GAP_BASE
    for k, v in {"FE": "lb1", "KIND": "haproxy", "POOL1": "app", "POOL2": "other",
                 "SERVER_TIMEOUT": "60s", **subst}.items():  # fmt: skip
        text = text.replace(k, v)
    return parse(text, str(workdir / "inventory.yaml"))


def test_pool_names_differing_only_in_case_are_refused(workdir: Path) -> None:
    # nginx and Apache compare upstream/balancer names ignoring case: `App` and `app` collide.
    with pytest.raises(InventoryError, match="differs only in case"):
        _gap(workdir, KIND="nginx", POOL1="App", POOL2="app")


@pytest.mark.servers
def test_check_with_a_long_front_end_name(workdir: Path) -> None:
    # The checked tree's root stays short, so the admin socket path fits a unix socket.
    inv = _gap(workdir, FE="lb-" + "x" * 60)
    result = check_frontend(inv, inv.frontends[0])
    assert result.ok, result.output


def test_durations_beyond_haproxy_timers_are_refused(workdir: Path) -> None:
    # HAProxy timers hold 2**31 ms (~24.8 days); the model refuses longer ones for every kind.
    with pytest.raises(InventoryError, match="longer than the 24d"):
        _gap(workdir, SERVER_TIMEOUT="30d")
    inv = _gap(workdir, SERVER_TIMEOUT="24d")
    assert check_frontend(inv, inv.frontends[0]).ok
