"""HAProxy's runtime control as data: the socket commands the driver builds and what it reads back."""

from __future__ import annotations

import pytest

from clusterctl.drivers import driver_for
from clusterctl.drivers.control import AdminState, Change, ControlRefused, Live
from clusterctl.drivers.haproxy_control import DEL_BUSY, parse_members
from clusterctl.model import parse
from clusterctl.model.schema import Frontend
from clusterctl.render import render_frontend

INV = """
cluster: c
frontends: [{name: lb1, kind: haproxy, address: 192.0.2.11}]
pools:
  - name: app
    health: {path: /health, port: 9200}
    servers:
      - {name: be1, address: 198.18.35.101, port: 8080, weight: 4, maxconn: 50}
      - {name: be2, address: "2001:db8::2", port: 8080, state: drain}
      - {name: be3, address: 198.18.35.103, port: 8080, state: maint, backup: true}
services:
  - {name: web, listen: [{port: 80}], default_pool: app}
"""
DRIVER = driver_for("haproxy")


def fe_and_config() -> tuple[Frontend, str]:
    inv = parse(INV, "inventory.yaml")
    fe = inv.frontends[0]
    files = render_frontend(inv, fe)
    return fe, files[DRIVER.paths(fe).config].content.decode()


def test_every_command_is_socat_on_the_admin_socket_with_the_command_on_stdin() -> None:
    fe, _ = fe_and_config()
    (read,) = DRIVER.read_commands(fe)
    assert read.argv == ("socat", "-t", "5", "stdio", "UNIX-CONNECT:/run/haproxy/admin.sock")
    assert read.stdin == b"show stat\n"
    cmds = DRIVER.change_commands(fe, Live(()), [Change("weight", "app", "be1", weight=7)])
    assert [(c.argv, c.stdin) for c in cmds] == [(read.argv, b"set server app/be1 weight 7\n")]


def test_the_member_lines_read_back_as_the_inventory_wrote_them() -> None:
    _, text = fe_and_config()
    pools, masked = parse_members(text)
    members = {m.name: m for m in pools["app"].members}
    assert (members["be1"].state, members["be1"].weight) == ("ready", 4)
    assert (members["be2"].address, members["be2"].state, members["be2"].weight) == (
        "2001:db8::2",
        "drain",
        0,  # a drain is rendered as weight 0
    )
    assert members["be3"].state == "maint"
    # add server ignores default-server: its options come first, then the line's own.
    assert members["be1"].options == (
        "inter", "2s", "rise", "2", "fall", "3", "check", "port", "9200", "maxconn", "50",
    )  # fmt: skip
    assert "backup" in members["be3"].options and "disabled" not in members["be3"].options
    assert "    server " not in masked and "    # servers of app" in masked
    assert pools["app"].runtime == frozenset({"state", "weight", "add", "remove"})


@pytest.mark.parametrize("state", ["ready", "drain", "maint"])
def test_add_spells_out_the_server_then_turns_its_check_and_itself_on(state: AdminState) -> None:
    fe, _ = fe_and_config()
    add = Change(
        "add", "app", "be4", state=state, weight=2, address="2001:db8::4", port=8080,
        options=("inter", "2s", "check", "port", "9200"),
    )  # fmt: skip
    cmds = DRIVER.change_commands(fe, Live(()), [add])
    said = [c.stdin.decode().strip() for c in cmds]
    expected = [
        "add server app/be4 [2001:db8::4]:8080 inter 2s check port 9200 weight 2",
        "enable health app/be4",  # a new server's check starts off
    ]
    # and the server itself starts in maintenance
    expected += [] if state == "maint" else [f"set server app/be4 state {state}"]
    assert said == expected


def test_remove_stops_new_sessions_then_waits_for_the_last_one() -> None:
    fe, _ = fe_and_config()
    maint, delete = DRIVER.change_commands(fe, Live(()), [Change("remove", "app", "be2")])
    assert maint.stdin == b"set server app/be2 state maint\n"
    assert delete.stdin == b"del server app/be2\n"
    assert (delete.retry_while, delete.retry_for) == (DEL_BUSY, 30.0)


@pytest.mark.parametrize(
    "answer",
    ["", "New server registered.\n", "Server deleted.\n"],
)
def test_the_apis_done_answers_pass(answer: str) -> None:
    fe, _ = fe_and_config()
    DRIVER.check_change(fe, [], [answer])


@pytest.mark.parametrize(
    "answer",
    [
        "No such server.\n",
        "Backend must use a dynamic load balancing to support dynamic servers.\n",
        "'cookie' option is not accepted for dynamic server\n",
    ],
)
def test_any_other_answer_is_a_refusal_in_haproxys_words(answer: str) -> None:
    fe, _ = fe_and_config()
    with pytest.raises(ControlRefused, match=f"lb1: HAProxy refused: {answer.strip()[:20]}"):
        DRIVER.check_change(fe, [], ["", answer])


def test_the_state_file_is_written_after_runtime_changes() -> None:
    fe, _ = fe_and_config()
    (save,) = DRIVER.persist_commands(fe)
    assert save.argv[:2] == ("sh", "-c")
    assert save.argv[-2:] == ("/run/haproxy/admin.sock", "/var/lib/haproxy/server-state")
