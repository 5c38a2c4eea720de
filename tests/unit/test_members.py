"""Which changes go at run time (members only) and which reload: clusterctl/members.py.

Each case renders a base inventory and an edited one with the real templates, and asks
members.decide with the first as the host's live files: what `plan` and `apply` ask.
"""

from __future__ import annotations

import pytest

from clusterctl.drivers.control import Change
from clusterctl.members import MemberPlan, decide, summary
from clusterctl.model import parse
from clusterctl.render import render_frontend

INV = """
cluster: c
frontends:
  - {name: lb1, kind: haproxy, address: 192.0.2.11}
  - {name: lb3, kind: apache, address: 192.0.2.13}
pools:
  - name: app
    balance: BALANCE
    health: {path: /health}
    servers:
      - {name: be1, address: 198.18.35.101, port: 8080}
      - {name: be2, address: 198.18.35.102, port: 8080}
services:
  - {name: web, listen: [{port: 80}], default_pool: app}
"""
BE2 = "      - {name: be2, address: 198.18.35.102, port: 8080}\n"
BE3 = "      - {name: be3, address: 198.18.35.103, port: 8080}\n"
KINDS = {"haproxy": 0, "apache": 1}


def plan_for(kind: str, edited: str, base: str = INV, balance: str = "roundrobin") -> MemberPlan:
    i = KINDS[kind]
    old_inv = parse(base.replace("BALANCE", balance), "inventory.yaml")
    new_inv = parse(edited.replace("BALANCE", balance), "inventory.yaml")
    old = {p: f.content for p, f in render_frontend(old_inv, old_inv.frontends[i]).items()}
    new = {p: f.content for p, f in render_frontend(new_inv, new_inv.frontends[i]).items()}
    changed = {p: (old.get(p), c) for p, c in new.items() if old.get(p) != c}
    return decide(new_inv.frontends[i], changed)


@pytest.mark.parametrize("kind", KINDS)
def test_a_weight_change_is_one_runtime_change(kind: str) -> None:
    edited = INV.replace(
        "be1, address: 198.18.35.101, port: 8080}",
        "be1, address: 198.18.35.101, port: 8080, weight: 3}",
    )
    assert plan_for(kind, edited) == MemberPlan((Change("weight", "app", "be1", weight=3),))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("state", ["drain", "maint"])
def test_a_state_change_is_a_runtime_change_and_back(kind: str, state: str) -> None:
    edited = INV.replace(BE2, BE2.replace("}", f", state: {state}}}"))
    assert plan_for(kind, edited).changes == (Change("state", "app", "be2", state=state),)  # type: ignore[arg-type]
    # Restored: ready again, and on HAProxy (which renders a drain as weight 0) its weight too.
    back = plan_for(kind, INV, base=edited).changes
    assert back[-1] == Change("state", "app", "be2", state="ready")
    expected = 2 if kind == "haproxy" and state == "drain" else 1
    assert len(back) == expected
    if expected == 2:
        assert back[0] == Change("weight", "app", "be2", weight=1)


@pytest.mark.parametrize("kind", KINDS)
def test_adding_and_removing_a_server(kind: str) -> None:
    added = plan_for(kind, INV.replace(BE2, BE2 + BE3))
    (ch,) = added.changes
    assert (ch.kind, ch.pool, ch.server, ch.address, ch.port) == (
        "add",
        "app",
        "be3",
        "198.18.35.103",
        8080,
    )
    assert (ch.state, ch.weight) == ("ready", 1)
    removed = plan_for(kind, INV.replace(BE2, ""))
    assert removed.changes == (Change("remove", "app", "be2", address="198.18.35.102", port=8080),)
    assert summary(removed) == "runtime, no reload: remove app/be2"


def test_haproxy_add_carries_the_options_default_server_would_have_given() -> None:
    (ch,) = plan_for("haproxy", INV.replace(BE2, BE2 + BE3)).changes
    # `add server` ignores default-server: the check timings must come with the server.
    assert ch.options == ("inter", "2s", "rise", "2", "fall", "3", "check")


@pytest.mark.parametrize("kind", KINDS)
def test_a_timeout_is_a_reload(kind: str) -> None:
    edited = INV.replace("listen: [{port: 80}]", "listen: [{port: 80}], timeouts: {client: 30s}")
    plan = plan_for(kind, edited)
    assert not plan.runtime and plan.reload == "the config changes beyond pool members"
    assert summary(plan).startswith("reload (")


@pytest.mark.parametrize("kind", KINDS)
def test_a_member_moving_to_another_address_is_a_reload(kind: str) -> None:
    plan = plan_for(kind, INV.replace("198.18.35.102", "198.18.35.112"))
    assert plan.reload == "app/be2 changes beyond its state and weight"


@pytest.mark.parametrize("kind", KINDS)
def test_members_changing_order_is_a_reload(kind: str) -> None:
    be1 = "      - {name: be1, address: 198.18.35.101, port: 8080}\n"
    plan = plan_for(kind, INV.replace(be1 + BE2, BE2 + be1))
    assert plan.reload == "the members of pool app change order"


def test_haproxy_static_balance_takes_only_state_changes_at_run_time() -> None:
    only = INV.replace("  - {name: lb3, kind: apache, address: 192.0.2.13}\n", "")
    plan = plan_for("haproxy", only.replace(BE2, BE2 + BE3), base=only, balance="source")
    assert plan.reload == (
        "adding a server in pool app needs a reload: balance source is static in HAProxy"
    )
    edited = only.replace(BE2, BE2.replace("}", ", state: maint}"))
    assert plan_for("haproxy", edited, base=only, balance="source").runtime


def test_haproxy_cannot_add_a_server_with_a_cookie_but_removes_one() -> None:
    sticky = INV.replace(
        "    balance: BALANCE\n", "    balance: BALANCE\n    sticky: {cookie: SRVID}\n"
    )
    plan = plan_for("haproxy", sticky.replace(BE2, BE2 + BE3), base=sticky)
    assert "HAProxy 2.6 cannot add a server with a cookie" in plan.reload
    assert plan_for("haproxy", sticky.replace(BE2, ""), base=sticky).runtime
    # Apache sets the new member's route through balancer-manager: sticky pools too.
    assert plan_for("apache", sticky.replace(BE2, BE2 + BE3), base=sticky).runtime


def test_a_file_other_than_the_config_is_a_reload() -> None:
    inv = parse(INV.replace("BALANCE", "roundrobin"), "inventory.yaml")
    fe = inv.frontends[0]
    plan = decide(fe, {"/etc/haproxy/other.lua": (b"a", b"b")})
    assert plan.reload == "/etc/haproxy/other.lua changes"
    config = "/etc/haproxy/haproxy.cfg"
    assert decide(fe, {config: (None, b"x")}).reload == f"{config} is not on the host yet"
    assert decide(fe, {}) == MemberPlan()


def test_a_kind_without_runtime_changes_reloads(monkeypatch: pytest.MonkeyPatch) -> None:
    from clusterctl.drivers import driver_for

    monkeypatch.setattr(type(driver_for("haproxy")), "runtime_changes", frozenset())
    plan = plan_for("haproxy", INV.replace(BE2, BE2.replace("}", ", state: drain}")))
    assert plan.reload == "a haproxy front end changes its members by reload"
