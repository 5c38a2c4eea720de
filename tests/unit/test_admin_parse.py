"""What the front ends report, parsed: HAProxy `show stat`, Apache's balancer-manager, nginx's config.

The HAProxy CSV and the balancer-manager pages in tests/unit/data/admin were captured from a lab
(`clusterctl lab up`, then `clusterctl apply`) on Debian 12:

- *-drain: after `clusterctl drain be1`;
- *-maint-down-busy: be1 in maintenance (HAProxy `set server app/be1 state maint`, Apache's
  w_status_D), be3 on a release whose /health answers 503 (down after 3 failed checks), and
  one /slow request in flight on be2.
"""

from __future__ import annotations

import dataclasses
import hashlib
import urllib.parse
from pathlib import Path

import pytest

from clusterctl.execute.admin import (
    AdminError,
    ServerView,
    apache_set,
    apache_view,
    nginx_live_states,
    nginx_sessions,
    parse_balancer_manager,
    parse_haproxy_stat,
    sessions_in,
)
from clusterctl.execute.ssh import Result
from clusterctl.facts import HostFacts, LiveFile
from clusterctl.model import parse
from clusterctl.model.schema import Frontend, Inventory
from clusterctl.orchestrate.rerender import nginx_drift, with_states
from clusterctl.render import render_frontend

DATA = Path(__file__).resolve().parent / "data" / "admin"


def data(name: str) -> str:
    return (DATA / name).read_text()


# ---------------------------------------------------------------------------- HAProxy


def test_haproxy_show_stat_after_a_drain() -> None:
    views = parse_haproxy_stat("lb1", data("haproxy-show-stat-drain.csv"))
    assert views == [
        ServerView("lb1", "app", "be1", "drain", "up", 0),
        ServerView("lb1", "app", "be2", "ready", "up", 0),
        ServerView("lb1", "app", "be3", "ready", "up", 0),
    ]


def test_haproxy_show_stat_maint_down_and_a_session_in_flight() -> None:
    views = parse_haproxy_stat("lb1", data("haproxy-show-stat-maint-down-busy.csv"))
    assert views == [
        ServerView("lb1", "app", "be1", "maint", "unknown", 0),
        ServerView("lb1", "app", "be2", "ready", "up", 1),
        ServerView("lb1", "app", "be3", "ready", "down", 0),
    ]


def test_haproxy_frontend_and_backend_rows_are_not_servers() -> None:
    text = data("haproxy-show-stat-drain.csv")
    assert "FRONTEND" in text and "BACKEND" in text
    assert {v.server for v in parse_haproxy_stat("lb1", text)} == {"be1", "be2", "be3"}


def _with_status(status: str, scur: str = "0") -> str:
    """The captured CSV with be2's status (and current sessions) replaced."""
    lines = data("haproxy-show-stat-drain.csv").splitlines()
    header = lines[0].lstrip("# ").split(",")
    i_status, i_scur = header.index("status"), header.index("scur")
    out = [lines[0]]
    for line in lines[1:]:
        cells = line.split(",")
        if len(cells) > i_status and cells[1] == "be2":
            cells[i_status], cells[i_scur] = status, scur
        out.append(",".join(cells))
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(
    ("status", "state", "health"),
    [
        ("UP", "ready", "up"),
        ("UP 1/3", "ready", "up"),  # going down, still serving
        ("DOWN 1/2", "ready", "down"),  # coming up, not yet serving
        ("DOWN", "ready", "down"),
        ("DRAIN", "drain", "up"),
        ("NOLB", "drain", "up"),
        ("MAINT", "maint", "unknown"),
        ("MAINT (via app/be1)", "maint", "unknown"),
        ("MAINT (resolution)", "maint", "unknown"),
        ("no check", "ready", "unknown"),
    ],
)
def test_haproxy_status_words(status: str, state: str, health: str) -> None:
    views = {v.server: v for v in parse_haproxy_stat("lb1", _with_status(status, "7"))}
    assert (views["be2"].state, views["be2"].health, views["be2"].sessions) == (state, health, 7)
    assert views["be1"].state == "drain"  # the other rows are untouched


def test_haproxy_empty_answer_has_no_servers() -> None:
    assert parse_haproxy_stat("lb1", "") == []
    assert parse_haproxy_stat("lb1", "\n") == []


# ---------------------------------------------------------------------------- Apache


def test_balancer_manager_after_a_drain() -> None:
    workers = parse_balancer_manager(data("balancer-manager-drain.html"))
    assert [(w.balancer, w.url, w.route, w.status, w.busy) for w in workers] == [
        ("app", "http://198.18.35.101:8080", "be1", "Init Drn Ok", 0),
        ("app", "http://198.18.35.102:8080", "be2", "Init Ok", 0),
        ("app", "http://198.18.35.103:8080", "be3", "Init Ok", 0),
    ]
    # The nonce the page carries is what a POST to the manager must send back.
    assert {w.nonce for w in workers} == {"f32cd9e9-2f4f-fe6e-2dc7-acf5d3deeea5"}
    assert apache_view("lb3", workers) == [
        ServerView("lb3", "app", "be1", "drain", "up", 0),
        ServerView("lb3", "app", "be2", "ready", "up", 0),
        ServerView("lb3", "app", "be3", "ready", "up", 0),
    ]


def test_balancer_manager_disabled_failed_check_and_busy() -> None:
    workers = parse_balancer_manager(data("balancer-manager-maint-down-busy.html"))
    assert [(w.route, w.status, w.busy) for w in workers] == [
        ("be1", "Init Dis", 0),
        ("be2", "Init Ok", 1),
        ("be3", "Init HcFl", 0),
    ]
    assert apache_view("lb3", workers) == [
        ServerView("lb3", "app", "be1", "maint", "up", 0),
        ServerView("lb3", "app", "be2", "ready", "up", 1),
        ServerView("lb3", "app", "be3", "ready", "down", 0),
    ]


def test_balancer_manager_drained_and_disabled_is_maint() -> None:
    page = data("balancer-manager-drain.html").replace("Init Drn Ok ", "Init Drn Dis ")
    (be1, *_) = apache_view("lb3", parse_balancer_manager(page))
    assert be1.state == "maint"


class FakeRemote:
    """Answers the balancer-manager page for GETs and 200 for POSTs; records the forms."""

    def __init__(self, page: str) -> None:
        self.page = page
        self.posts: list[dict[str, list[str]]] = []

    def sh(self, script: str, *args: str, **kw: object) -> Result:
        if "--data-binary" in args:  # the driver's curl argv, its form on stdin
            assert args[-1] == "http://127.0.0.1:8081/balancer-manager"
            stdin = kw["stdin"]
            assert isinstance(stdin, bytes)
            self.posts.append(urllib.parse.parse_qs(stdin.decode()))
            return Result((), 0, "200", "")
        return Result((), 0, self.page, "")


@pytest.mark.parametrize(
    ("state", "drain_flag", "disabled_flag"),
    [("drain", "1", "0"), ("maint", "1", "1"), ("ready", "0", "0")],
)
def test_apache_set_posts_both_flags(state: str, drain_flag: str, disabled_flag: str) -> None:
    remote = FakeRemote(data("balancer-manager-drain.html"))
    fe = parse(NGINX_INV.replace("kind: nginx", "kind: apache"), "inventory.yaml").frontends[0]
    apache_set(remote, fe, "be2", state)  # type: ignore[arg-type]
    (form,) = remote.posts
    assert form == {
        "b": ["app"],
        "w": ["http://198.18.35.102:8080"],
        "w_status_N": [drain_flag],
        "w_status_D": [disabled_flag],  # ready clears a disable too (restore from maint)
        "nonce": ["f32cd9e9-2f4f-fe6e-2dc7-acf5d3deeea5"],
    }


def test_apache_set_unknown_member_is_an_error() -> None:
    remote = FakeRemote(data("balancer-manager-drain.html"))
    fe = parse(NGINX_INV.replace("kind: nginx", "kind: apache"), "inventory.yaml").frontends[0]
    with pytest.raises(AdminError, match="no member with route be9"):
        apache_set(remote, fe, "be9", "drain")  # type: ignore[arg-type]
    assert remote.posts == []


def test_a_page_without_members_has_no_workers() -> None:
    assert parse_balancer_manager("<html><body>Forbidden</body></html>") == []


# ---------------------------------------------------------------------------- nginx

NGINX_INV = """
cluster: c
frontends:
  - {name: lb2, kind: nginx, address: 192.0.2.12}
pools:
  - name: app
    sticky: {cookie: SRVID}
    servers:
      - {name: be1, address: 198.18.35.101, port: 8080}
      - {name: be2, address: 198.18.35.102, port: 8080}
      - {name: be3, address: 198.18.35.103, port: 8080, state: maint}
      - {name: be10, address: 198.18.35.10, port: 8080}
services:
  - {name: web, listen: [{port: 80}], default_pool: app}
"""


def nginx_conf(states: dict[str, str]) -> tuple[bytes, Inventory, Frontend]:
    inv = parse(NGINX_INV, "inventory.yaml")
    # A host without the Lua module (its facts found none of it): drains re-render there.
    fe = dataclasses.replace(inv.frontends[0], present=())
    files = render_frontend(with_states(inv, states), fe)
    conf = next(f.content for p, f in files.items() if p.endswith("nginx.conf"))
    return conf, inv, fe


def test_nginx_state_is_read_from_the_config_it_runs() -> None:
    conf, inv, fe = nginx_conf({"be2": "drain"})
    assert nginx_live_states(inv, fe, conf) == {
        "be1": "ready",
        "be2": "drain",
        "be3": "maint",  # down in the inventory too
        "be10": "ready",  # 198.18.35.10 is not a prefix match of .101
    }


def test_nginx_restored_node_reads_ready_even_if_the_inventory_drains_it() -> None:
    conf, inv, fe = nginx_conf({"be3": "ready"})
    assert nginx_live_states(inv, fe, conf)["be3"] == "ready"


def test_nginx_without_a_live_config_falls_back_to_the_inventory() -> None:
    _, inv, fe = nginx_conf({})
    states = nginx_live_states(inv, fe, None)
    assert states == {"be1": "ready", "be2": "ready", "be3": "maint", "be10": "ready"}
    states = nginx_live_states(inv, fe, b"# someone else's config\n")
    assert states["be3"] == "maint"


# ---------------------------------------------------------------------------- counts that fail


class SsRemote:
    """Answers the `ss | wc -l` count with a fixed exit status and output."""

    def __init__(self, rc: int, out: str, err: str = "") -> None:
        self.rc, self.out, self.err = rc, out, err

    def sh(self, script: str, *args: str, **kw: object) -> Result:
        return Result((), self.rc, self.out, self.err)


def test_nginx_session_count_is_read() -> None:
    _, _inv, fe = nginx_conf({})
    assert nginx_sessions(SsRemote(0, "3\n"), fe, "198.18.35.101", 8080) == 3  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rc", "out", "err"),
    [(127, "", "sh: 1: ss: not found"), (0, "", ""), (0, "Cannot open netlink socket\n", "")],
)
def test_an_unreadable_nginx_session_count_is_an_error_never_zero(
    rc: int, out: str, err: str
) -> None:
    _, _inv, fe = nginx_conf({})
    with pytest.raises(AdminError, match=r"lb2: cannot count nginx's connections to 198\.18"):
        nginx_sessions(SsRemote(rc, out, err), fe, "198.18.35.101", 8080)  # type: ignore[arg-type]


def test_a_front_end_that_does_not_report_the_node_is_an_error() -> None:
    _, inv, fe = nginx_conf({})
    with pytest.raises(AdminError, match="lb2: reports no session count for be1"):
        sessions_in(inv, fe, "be1", [])
    # A node in none of this front end's pools has nothing in flight there.
    assert sessions_in(inv, fe, "db9", []) == 0
    unknown = [ServerView("lb2", "app", "be1", "drain", "up", None)]
    with pytest.raises(AdminError, match="cannot tell how many sessions be1 has"):
        sessions_in(inv, fe, "be1", unknown)


def test_haproxy_session_count_that_is_not_a_number_is_unknown() -> None:
    text = "# pxname,svname,scur,status\napp,be1,,UP\napp,be2,7,UP\n"
    views = {v.server: v.sessions for v in parse_haproxy_stat("lb1", text)}
    assert views == {"be1": None, "be2": 7}


def _facts_of(inv: Inventory, fe: Frontend, states: dict[str, str]) -> HostFacts:
    files = render_frontend(with_states(inv, states), fe)
    live = {
        p: LiveFile(
            p, True, f.mode, f.owner, f.group, hashlib.sha256(f.content).hexdigest(), f.content
        )
        for p, f in files.items()
    }
    return HostFacts("lb2", "1.22.1", files=live, present=fe.present)


def test_an_nginx_drain_takes_the_live_config_not_unreviewed_changes() -> None:
    conf, inv, fe = nginx_conf({"be2": "drain"})
    facts = _facts_of(inv, fe, {"be2": "drain"})
    live = nginx_live_states(inv, fe, conf)
    # The host runs what this inventory renders with be2 drained: nothing else to change.
    assert nginx_drift(inv, fe, facts, live) == []
    # The inventory has a change nobody applied: the drain must not put it live.
    edited = parse(NGINX_INV.replace("port: 80}", "port: 8000}"), "inventory.yaml")
    assert nginx_drift(edited, edited.frontends[0], facts, live) == ["/etc/nginx/nginx.conf"]


@pytest.mark.parametrize(
    "states",
    [
        {"be1": "drain"},
        {"be1": "maint"},
        {"be1": "maint", "be2": "drain"},
        {"be2": "drain", "be10": "maint", "be3": "ready"},
    ],
)
def test_nginx_states_read_back_as_they_were_rendered(states: dict[str, str]) -> None:
    # A drain re-renders from what it reads back: any state that did not survive the round
    # trip would look like an unreviewed change (or put a node in maint back to drain).
    conf, inv, fe = nginx_conf(states)
    expected = {s.name: states.get(s.name, s.state) for s in inv.pools[0].servers}
    assert nginx_live_states(inv, fe, conf) == expected
    facts = _facts_of(inv, fe, states)
    assert nginx_drift(inv, fe, facts, nginx_live_states(inv, fe, conf)) == []
