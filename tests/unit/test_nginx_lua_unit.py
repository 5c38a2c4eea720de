"""nginx's Lua balancer, the pure parts: the rendered config, the commands, their parsers."""

from __future__ import annotations

import dataclasses
import json

import pytest

from clusterctl.drivers import driver_for
from clusterctl.drivers import nginx_lua as nl
from clusterctl.drivers.control import ALL_CHANGES, Change, ControlRefused
from clusterctl.facts import parse_gather
from clusterctl.model import parse
from clusterctl.model.schema import Frontend, Inventory
from clusterctl.plan import effective_frontend
from clusterctl.render import render_frontend

INV = """\
cluster: lua
frontends:
  - {name: lb, kind: nginx, address: 192.0.2.10}
pools:
  - name: app
    sticky: {cookie: SRVID}
    health: {max_fails: 2, fail_timeout: 5s}
    keepalive: 8
    servers:
      - {name: web1, address: 192.0.2.21, port: 8080, weight: 3}
      - {name: web2, address: "2001:db8::22", port: 8080, state: drain}
      - {name: spare, address: 192.0.2.29, port: 8080, backup: true}
services:
  - name: web
    listen: [{port: 80}]
    default_pool: app
"""


def inv(text: str = INV) -> Inventory:
    return parse(text, "inv.yaml")


def conf(fe: Frontend, i: Inventory | None = None) -> str:
    i = i or inv()
    return render_frontend(i, fe)["/etc/nginx/nginx.conf"].content.decode()


def test_the_lua_config_loads_the_modules_first_and_carries_every_member() -> None:
    i = inv()
    text = conf(i.frontends[0], i)
    lines = text.splitlines()
    loads = [ln for ln in lines if ln.startswith("load_module")]
    assert loads == [f"load_module {m};" for m in nl.MODULES]
    assert lines.index(loads[0]) < lines.index("user www-data;")
    assert (
        '{ name = "web1", address = "192.0.2.21", port = 8080, weight = 3, state = "ready", backup = false },'
        in text
    )
    assert 'address = "2001:db8::22", port = 8080, weight = 1, state = "drain"' in text
    assert 'sticky = "SRVID", max_fails = 2, fail_timeout = 5,' in text
    # One placeholder peer, the balancer, and the upstream keep-alive kept.
    assert "        server 0.0.0.1;\n        balancer_by_lua_block" in text
    assert "        keepalive 8;\n" in text
    assert f"listen unix:{nl.SOCKET} default_server;" in text
    # No per-server upstreams or maps: the balancer pins by the cookie itself.
    assert "upstream app~" not in text and "split_clients" not in text
    files = render_frontend(i, i.frontends[0])
    assert b"M.balance" in files["/etc/nginx/clusterctl-balancer.lua"].content
    assert nl.PLACEHOLDER in files


def test_a_host_without_the_module_gets_upstream_blocks_and_no_lua() -> None:
    i = inv()
    facts = parse_gather("lb", "VERSION nginx version: nginx/1.22.1\nLACKS " + nl.MODULES[1])
    fe = effective_frontend(i.frontends[0], facts)
    assert fe.present == ()
    text = conf(fe, i)
    assert "_by_lua" not in text and "load_module" not in text
    assert "server 192.0.2.21:8080 weight=3" in text
    files = render_frontend(i, fe)
    assert nl.PLACEHOLDER not in files and "/etc/nginx/clusterctl-balancer.lua" not in files
    assert driver_for("nginx").control_for(fe) == "rerender"  # type: ignore[attr-defined]
    assert driver_for("nginx").parse_members(text) is None


def test_facts_name_the_probe_files_the_host_has() -> None:
    text = "".join(f"HAS {p}\n" for p in nl.PROBE_FILES)
    facts = parse_gather("lb", text)
    assert facts.present == nl.PROBE_FILES
    assert nl.lua_available(facts.present)
    assert not nl.lua_available(nl.PROBE_FILES[:2])
    assert parse_gather("lb", "VERSION x\n").present is None  # not asked: not known
    fe = effective_frontend(inv().frontends[0], facts)
    assert driver_for("nginx").control_for(fe) == "lua-socket"  # type: ignore[attr-defined]


def test_backups_with_sticky_are_refused_on_1_22_only_without_the_module() -> None:
    i = inv()
    d = driver_for("nginx")
    assert d.check_pool(i.frontends[0], i.pools[0], "pools[0]") == []
    bare = dataclasses.replace(i.frontends[0], present=())
    assert "cannot combine backup servers" in d.check_pool(bare, i.pools[0], "pools[0]")[0][3]


def test_members_parse_back_and_a_member_change_leaves_the_rest_of_the_text_alone() -> None:
    i = inv()
    text = conf(i.frontends[0], i)
    parsed = driver_for("nginx").parse_members(text)
    assert parsed is not None
    pools, masked = parsed
    app = pools["app"]
    assert app.runtime == ALL_CHANGES
    assert [(m.name, m.address, m.port, m.weight, m.state, m.options) for m in app.members] == [
        ("web1", "192.0.2.21", 8080, 3, "ready", ()),
        ("web2", "2001:db8::22", 8080, 1, "drain", ()),
        ("spare", "192.0.2.29", 8080, 1, "ready", ("backup",)),
    ]
    changed = inv(INV.replace("weight: 3}", "weight: 5}").replace("state: drain}", "}"))
    other = driver_for("nginx").parse_members(conf(changed.frontends[0], changed))
    assert other is not None and other[1] == masked
    assert other[0]["app"].member("web1").weight == 5  # type: ignore[union-attr]
    # A pool-level change (the failure limits) is not a member change: the texts differ.
    limits = inv(INV.replace("max_fails: 2", "max_fails: 4"))
    third = driver_for("nginx").parse_members(conf(limits.frontends[0], limits))
    assert third is not None and third[1] != masked


def test_change_commands_are_curl_on_the_socket_with_json_on_stdin() -> None:
    cmds = nl.change_commands(
        [
            Change("state", "app", "web1", state="drain"),
            Change("weight", "app", "web1", weight=7),
            Change("add", "app", "web9", state="ready", weight=2, address="192.0.2.99", port=81),
            Change("remove", "app", "web2"),
        ]
    )
    for c in cmds:
        assert c.argv[:3] == ("curl", "--unix-socket", nl.SOCKET)
        assert "@-" in c.argv and not any("web" in a for a in c.argv)  # the request is on stdin
    assert [c.argv[-1] for c in cmds] == [
        "http://localhost/set",
        "http://localhost/set",
        "http://localhost/add",
        "http://localhost/remove",
    ]
    bodies = [json.loads(c.stdin) for c in cmds]
    assert bodies[0] == {"pool": "app", "server": "web1", "state": "drain"}
    assert bodies[1] == {"pool": "app", "server": "web1", "weight": 7}
    assert bodies[2] == {
        "pool": "app",
        "server": "web9",
        "address": "192.0.2.99",
        "port": 81,
        "weight": 2,
        "state": "ready",
        "backup": False,
    }
    assert cmds[0].what == "app/web1 state drain"
    (read,) = nl.read_commands()
    assert read.argv[-1] == "http://localhost/state" and read.stdin == b""


STATE = {
    "version": 4,
    "pools": [
        {
            "name": "app",
            "balance": "roundrobin",
            "sticky": "SRVID",
            "servers": [
                {"name": "web1", "state": "drain", "health": "up", "active": 3, "weight": 2},
                {"name": "web2", "state": "ready", "health": "down", "active": 0, "weight": 1},
            ],
        }
    ],
}


def test_the_state_parses_to_server_views_with_real_sessions_and_health() -> None:
    live = nl.live_view("lb", [json.dumps(STATE)])
    got = [(v.pool, v.server, v.state, v.health, v.sessions, v.weight) for v in live.views]
    assert got == [("app", "web1", "drain", "up", 3, 2), ("app", "web2", "ready", "down", 0, 1)]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "curl: (7) Couldn't connect to server",
        '{"pools": [{"name": "app", "servers": [{"name": "x", "state": "weird", "active": 0}]}]}',
        '{"pools": [{"name": "app", "servers": [{"name": "x", "state": "ready"}]}]}',
    ],
)
def test_an_unreadable_state_is_an_error_never_zero_sessions(text: str) -> None:
    with pytest.raises(ControlRefused, match="lb: "):
        nl.live_view("lb", [text])


def test_refusals_carry_the_servers_words() -> None:
    nl.check_refusal("lb", ['{"ok":true,"version":5}\n'])
    with pytest.raises(ControlRefused, match="refused: no server app/web7"):
        nl.check_refusal("lb", ['{"ok":true}', '{"error":"no server app/web7"}'])
    with pytest.raises(ControlRefused, match=r"refused: curl: \(7\) Couldn't connect"):
        nl.check_refusal("lb", ["curl: (7) Couldn't connect to server"])


def test_plan_says_a_host_without_the_module_reloads_and_why() -> None:
    from clusterctl.members import decide

    i = inv()
    bare = dataclasses.replace(i.frontends[0], present=())
    old = conf(bare, i).encode()
    changed = inv(INV.replace("weight: 3}", "weight: 5}"))
    new = conf(bare, changed).encode()
    plan = decide(bare, {"/etc/nginx/nginx.conf": (old, new)})
    assert plan.reload.startswith(f"the host has no {nl.PACKAGE}")
    # With the module the same change goes at run time.
    fe = i.frontends[0]
    live = decide(fe, {"/etc/nginx/nginx.conf": (conf(fe, i).encode(), conf(fe, changed).encode())})
    assert live.runtime and [c.describe() for c in live.changes] == ["app/web1 weight 5"]


def test_the_balancers_log_and_header_phases_are_the_only_ones() -> None:
    # A log_by_lua or header_filter_by_lua in a server or location would replace the http
    # block's: requests in flight would never be counted down (drains would wait out their
    # timeout) and fresh sticky clients would get no cookie.
    from clusterctl.model import load
    from tests.test_golden import REPO

    for name in ("full", "three-kinds"):
        full = load(REPO / "inventories" / f"{name}.yaml")
        for fe in full.frontends:
            if fe.kind != "nginx":
                continue
            text = conf(fe, full)
            assert text.count("log_by_lua") == 1, (name, fe.name)
            assert text.count("header_filter_by_lua") == 1, (name, fe.name)
            http = text.index("\nhttp {")
            first_server = text.index("\n    server {")
            assert http < text.index("log_by_lua_block") < first_server


def test_verify_expects_what_apply_renders_for_the_modules_the_host_has() -> None:
    from types import SimpleNamespace

    from clusterctl.verify.targets import expected_files, server_present

    class Host:  # answers as a host that has only the first probe file
        def run(self, script: str, *args: str) -> SimpleNamespace:
            assert script.count("%s") == len(args)
            return SimpleNamespace(stdout=args[0] + "\n")

    assert server_present(Host(), "nginx") == nl.PROBE_FILES[:1]
    assert server_present(Host(), "haproxy") is None
    i = inv()
    fe = i.frontends[0]
    bare = expected_files(i, fe, "1.22.1", nl.PROBE_FILES[:1])
    assert "/etc/nginx/clusterctl-balancer.lua" not in bare
    assert (
        bare["/etc/nginx/nginx.conf"].sha256
        == render_frontend(i, dataclasses.replace(fe, version="1.22.1", present=()))[
            "/etc/nginx/nginx.conf"
        ].sha256
    )
    assert "/etc/nginx/clusterctl-balancer.lua" in expected_files(i, fe, "1.22.1", nl.PROBE_FILES)


def test_the_shared_dict_grows_with_the_member_list() -> None:
    # About 300 bytes a member (measured: 1,000 pools x 20 servers start in a 22 MiB dict).
    # A new size at a reload would be an empty dict: it changes only by doubling.
    assert nl.dict_size_mb(3) == nl.dict_size_mb(20_000) == 32  # the same across reloads
    assert nl.dict_size_mb(40_000) == 64
    i = inv()
    assert "lua_shared_dict clusterctl_pools 32m;" in conf(i.frontends[0], i)
