"""The vrrp section: its checks at FILE:LINE:COL, the keepalived units, the rendered config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clusterctl.drivers.keepalived import parse_state
from clusterctl.errors import InventoryError
from clusterctl.model import load, parse
from clusterctl.model.vrrp import own_address_problems, units, vip_problems
from clusterctl.render import render, render_frontend

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / "pair-keepalived"

BASE = """\
cluster: t
frontends:
  - {name: lb1, kind: haproxy, address: 192.0.2.11}
  - {name: lb2, kind: nginx, address: 192.0.2.12}
  - {name: lb3, kind: apache, address: 192.0.2.13}
pools:
  - name: app
    servers:
      - {name: web1, address: 192.0.2.21, port: 8080}
services:
  - name: web
    listen: [{port: 80}]
    default_pool: app
vrrp:
"""

GROUP = """\
  - name: web
    address: 192.0.2.250/24
    interface: eth0
    members: [lb1, lb2]
    router_id: 51
"""


def problems(vrrp: str) -> list[str]:
    with pytest.raises(InventoryError) as info:
        parse(BASE + vrrp, "inv.yaml")
    return [str(p) for p in info.value.problems]


def test_a_group_loads_with_its_defaults() -> None:
    inv = parse(BASE + GROUP, "inv.yaml")
    (g,) = inv.vrrp
    assert (g.advert, g.unicast, g.preempt, g.track_process, g.probe) == (
        1000,
        True,
        False,
        True,
        None,
    )
    assert [u.name for u in units(inv)] == ["lb1+keepalived", "lb2+keepalived"]
    assert {u.kind for u in units(inv)} == {"keepalived"}
    assert [u.address for u in units(inv)] == ["192.0.2.11", "192.0.2.12"]


def test_router_id_reused_is_refused_at_its_position() -> None:
    second = GROUP.replace("name: web", "name: api").replace("250/24", "251/24")
    assert problems(GROUP + second) == [
        "inv.yaml:24:16: vrrp[1].router_id: router id 51 is already used by vrrp[0]; "
        "each group needs its own"
    ]


def test_duplicate_group_names() -> None:
    second = GROUP.replace("router_id: 51", "router_id: 52")
    assert problems(GROUP + second) == [
        "inv.yaml:20:11: vrrp[1].name: duplicate group 'web' (first at [0])"
    ]


def test_fewer_than_two_members_and_a_member_not_a_front_end() -> None:
    assert problems(GROUP.replace("[lb1, lb2]", "[lb1]")) == [
        "inv.yaml:18:14: vrrp[0].members: a group needs two or more members"
    ]
    assert problems(GROUP.replace("[lb1, lb2]", "[lb1, web1]")) == [
        "inv.yaml:18:14: vrrp[0].members: 'web1' is not a front end (front ends: lb1, lb2, lb3)"
    ]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("eth0", "'eth0 dev lo'", "is not a valid interface name"),
        ("eth0", "'eth0}'", "is not a valid interface name"),
        ("192.0.2.250/24", "'192.0.2.250/24 dev lo'", "is not a valid address with prefix"),
        ("192.0.2.250/24", "192.0.2.250", "is not a valid address with prefix"),
        ("192.0.2.250/24", "192.0.2.0/24", "its network's own address"),
        ("router_id: 51", "router_id: 256", "256 is out of range 1..255"),
        ("router_id: 51", "router_id: 51\n    advert: 5ms", "VRRPv3 adverts are 10ms"),
        ("router_id: 51", "router_id: 51\n    advert: 1", "needs a unit"),
        ("name: web", "name: 'web {'", "is not a valid name"),
    ],
)
def test_values_that_would_inject_into_keepalived_conf_are_refused(
    old: str, new: str, message: str
) -> None:
    found = problems(GROUP.replace(old, new))
    assert len(found) == 1 and message in found[0], found
    assert found[0].split(":")[0:2] in (["inv.yaml", str(n)] for n in range(15, 21))


def test_unicast_needs_ip_addresses_and_families_match() -> None:
    text = BASE.replace("address: 192.0.2.12", "address: lb2.example.com") + GROUP
    with pytest.raises(InventoryError) as info:
        parse(text, "inv.yaml")
    assert "unicast adverts go to the members' IP addresses" in str(info.value)
    assert "IPv6 address, but 'lb1' is IPv4" in " ".join(
        problems(GROUP.replace("192.0.2.250/24", "2001:db8::250/64"))
    )
    assert "is 'lb1''s own address" in " ".join(
        problems(GROUP.replace("192.0.2.250/24", "192.0.2.11/24"))
    )


def test_plan_time_checks_against_the_hosts_addresses() -> None:
    (g,) = parse(BASE + GROUP, "inv.yaml").vrrp
    inside = (("lo", "127.0.0.1/8"), ("eth0", "192.0.2.11/24"))
    assert vip_problems(g, "lb1", inside) == []
    outside = (("eth0", "198.51.100.11/24"),)
    assert vip_problems(g, "lb1", outside) == [
        "192.0.2.250/24 of group web lies outside lb1's subnet on eth0 (198.51.100.0/24)"
    ]
    assert vip_problems(g, "lb1", (("ens3", "192.0.2.11/24"),)) == [
        "lb1 has no address on interface eth0 (group web)"
    ]
    owned = (*inside, ("eth0", "192.0.2.250/24"))
    assert own_address_problems(g, "lb1", owned, holds=False) == [
        "192.0.2.250 of group web is already lb1's own address (eth0)"
    ]
    assert own_address_problems(g, "lb1", owned, holds=True) == []


def test_members_get_priorities_in_order_and_peers_of_each_other() -> None:
    inv = parse(
        BASE
        + GROUP.replace("[lb1, lb2]", "[lb2, lb1, lb3]")
        + "    advert: 200ms\n    preempt: true\n",
        "inv.yaml",
    )
    conf = {
        u.name: render_frontend(inv, u)["/etc/keepalived/keepalived.conf"].content.decode()
        for u in units(inv)
    }
    assert "priority 200" in conf["lb2+keepalived"]
    assert "priority 150" in conf["lb1+keepalived"]
    assert "priority 100" in conf["lb3+keepalived"]
    assert "advert_int 0.2\n" in conf["lb1+keepalived"]
    assert "nopreempt" not in conf["lb1+keepalived"]
    lb1 = conf["lb1+keepalived"]
    peers = lb1.split("unicast_peer {")[1].split("}")[0].split()
    assert peers == ["192.0.2.12", "192.0.2.13"]
    assert "unicast_src_ip 192.0.2.11" in lb1
    assert "process apache2" in conf["lb3+keepalived"]


def test_multicast_and_no_process_tracking() -> None:
    text = GROUP + "    unicast: false\n    track_process: false\n"
    inv = parse(BASE + text, "inv.yaml")
    conf = render_frontend(inv, units(inv)[0])["/etc/keepalived/keepalived.conf"].content
    assert b"unicast" not in conf and b"track_process" not in conf and b"nopreempt" in conf


def test_render_puts_keepalived_beside_the_proxy_on_each_member() -> None:
    inv = load(REPO / "inventories" / "pair.yaml")
    files = render(inv)
    assert sorted(files) == ["lb1", "lb2"]
    assert "/etc/keepalived/keepalived.conf" in files["lb1"]
    assert "/etc/haproxy/haproxy.cfg" in files["lb1"]
    assert "/etc/keepalived/clusterctl-probe.sh" in files["lb2"]


def test_keepalived_conf_matches_golden() -> None:
    inv = load(REPO / "inventories" / "pair.yaml")
    for unit in units(inv):
        host = unit.name.split("+")[0]
        have = render_frontend(inv, unit)["/etc/keepalived/keepalived.conf"].content
        golden = GOLDEN / f"{host}.conf"
        if os.environ.get("UPDATE_GOLDEN") == "1":
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_bytes(have)
        assert have == golden.read_bytes(), f"{host}: UPDATE_GOLDEN=1 to accept"


def test_state_parsing() -> None:
    text = "INSTANCE web 2\nINSTANCE api 1\nADDR eth0@if9 192.0.2.11/24\nADDR eth0 192.0.2.250/24\n"
    assert parse_state(text) == (
        {"web": "MASTER", "api": "BACKUP"},
        [("eth0", "192.0.2.11/24"), ("eth0", "192.0.2.250/24")],
    )
    assert parse_state("DOWN\nADDR lo 127.0.0.1/8\n") == (None, [("lo", "127.0.0.1/8")])


def test_plan_refuses_a_virtual_address_outside_the_members_subnet() -> None:
    from clusterctl.facts import HostFacts, Network
    from clusterctl.plan import plan_host

    inv = load(REPO / "inventories" / "pair.yaml")
    unit = units(inv)[0]
    wrong = Network(addresses=(("eth0", "198.51.100.11/24"),))
    hp = plan_host(inv, unit, HostFacts(unit.name, network=wrong))
    assert hp.status == "refused"
    assert hp.refused == (
        "192.0.2.250/24 of group web lies outside lb1's subnet on eth0 (198.51.100.0/24)",
    )
    right = Network(addresses=(("eth0", "192.0.2.11/24"),))
    assert plan_host(inv, unit, HostFacts(unit.name, network=right)).status == "change"
    # On a host whose keepalived is not running, the address already there is its own.
    owned = Network(addresses=(("eth0", "192.0.2.11/24"), ("eth0", "192.0.2.250/24")))
    assert (
        "already lb1's own address"
        in plan_host(inv, unit, HostFacts(unit.name, network=owned)).refused[0]
    )


def test_a_member_whose_service_binds_the_address_gets_non_local_binding() -> None:
    from clusterctl.drivers.keepalived import SYSCTL_FILE, KeepalivedDriver

    text = BASE.replace("listen: [{port: 80}]", "listen: [{port: 80, address: 192.0.2.250}]")
    inv = parse(text + GROUP, "inv.yaml")
    unit = units(inv)[0]
    files = render_frontend(inv, unit)
    assert files[SYSCTL_FILE].content.decode().splitlines()[-1] == "net.ipv4.ip_nonlocal_bind = 1"
    assert KeepalivedDriver().after_reload(unit) == (
        '[ -f "$1" ] || exit 0; sysctl -q -p "$1"',
        [SYSCTL_FILE],
    )
    # Listening on every address needs nothing of the kind.
    plain = parse(BASE + GROUP, "inv.yaml")
    assert SYSCTL_FILE not in render_frontend(plain, units(plain)[0])


def probe_conf(interval: str, fall: int = 2) -> str:
    text = GROUP + f"    probe: {{port: 80, interval: {interval}, fall: {fall}, rise: 3}}\n"
    inv = parse(BASE + text, "inv.yaml")
    return render_frontend(inv, units(inv)[0])["/etc/keepalived/keepalived.conf"].content.decode()


def test_a_sub_second_probe_asks_within_each_once_a_second_run() -> None:
    # keepalived 2.2.7 reads a script's interval in whole seconds: a 100ms probe is one run a
    # second that asks every 100 ms and fails on 2 failures in a row; keepalived then steps
    # down on one failed run, and rise stays the user's.
    conf = probe_conf("100ms")
    script = conf.split("vrrp_script clusterctl_probe_web {")[1].split("}")[0]
    assert 'clusterctl-probe.sh http 127.0.0.1 80 / 100 2 /run/clusterctl-probe.web"' in script
    assert "interval 1\n" in script and "fall 1\n" in script and "rise 3\n" in script
    # Whole seconds (a bare number or a duration) ask once per run, keepalived counting.
    for interval in ("3", "3s"):
        conf = probe_conf(interval, fall=4)
        script = conf.split("vrrp_script clusterctl_probe_web {")[1].split("}")[0]
        assert 'clusterctl-probe.sh http 127.0.0.1 80 / 0 0 -"' in script
        assert "interval 3\n" in script and "fall 4\n" in script


@pytest.mark.parametrize(
    ("interval", "said"),
    [
        ("20ms", "at least 50ms apart"),
        ("1500ms", "whole seconds apart"),
        ("2m", "whole seconds apart, up to 60s"),
        ("0", "out of range 1..60"),
        ("soon", "not a duration"),
        ("0.5", "write a duration (e.g. 500ms)"),
    ],
)
def test_probe_intervals_keepalived_cannot_run_are_refused(interval: str, said: str) -> None:
    text = GROUP + f"    probe: {{port: 80, interval: {interval}}}\n"
    (line,) = problems(text)
    assert line.startswith("inv.yaml:") and said in line, line


def test_a_proxy_binding_the_address_it_does_not_hold_turns_non_local_binding_on_first() -> None:
    # The backup's proxy listens on an address it does not have: the bind preflight would
    # refuse it while non-local binding is off, so its plan turns that on before the preflight
    # (the keepalived unit's sysctl file keeps it for the next boot).
    from clusterctl.facts import HostFacts, Network
    from clusterctl.plan import plan_host
    from clusterctl.plan_steps import Preflight, RunScript

    text = BASE.replace("listen: [{port: 80}]", "listen: [{port: 80, address: 192.0.2.250}]")
    inv = parse(text + GROUP, "inv.yaml")
    lb2 = next(fe for fe in inv.frontends if fe.name == "lb2")
    off = Network(addresses=(("eth0", "192.0.2.12/24"),), sockets=())
    hp = plan_host(inv, lb2, HostFacts("lb2", network=off))
    assert hp.status == "change", hp.refused
    kinds = [(type(s).__name__, getattr(s, "script", "")) for s in hp.steps]
    on = kinds.index(("RunScript", "nonlocal-bind"))
    assert isinstance(hp.steps[on], RunScript) and hp.steps[on].args == ("ipv4",)
    assert hp.steps[on].fails_as == "preflight"  # a sysctl refused stops the apply, in its words
    assert isinstance(hp.steps[on + 1], Preflight)
    # Listening on every address: no such step, and the same facts pass.
    plain = parse(BASE + GROUP, "inv.yaml")
    lb2 = next(fe for fe in plain.frontends if fe.name == "lb2")
    hp = plan_host(plain, lb2, HostFacts("lb2", network=off))
    assert ("RunScript", "nonlocal-bind") not in [
        (type(s).__name__, getattr(s, "script", "")) for s in hp.steps
    ]


def test_a_probe_port_nobody_can_ask_is_refused_at_its_position() -> None:
    text = BASE.replace("listen: [{port: 80}]", "listen: [{port: 80, address: 192.0.2.250}]")
    with pytest.raises(InventoryError) as info:
        parse(text + GROUP + "    probe: {port: 80}\n", "inv.yaml")
    (line,) = [str(p) for p in info.value.problems]
    assert line.startswith("inv.yaml:20:") and "only at virtual addresses (192.0.2.250)" in line
    # Another group's address is no better: the member may not hold that one either.
    web2 = GROUP.replace("name: web", "name: web2").replace(".250/", ".251/")
    web2 = web2.replace("router_id: 51", "router_id: 52")
    text = BASE.replace("listen: [{port: 80}]", "listen: [{port: 80, address: 192.0.2.251}]")
    with pytest.raises(InventoryError) as info:
        parse(text + GROUP + "    probe: {port: 80}\n" + web2, "inv.yaml")
    (line,) = [str(p) for p in info.value.problems]
    assert "only at virtual addresses (192.0.2.251)" in line, line
    (line,) = problems(GROUP + "    probe: {port: 8081}\n")
    assert "lb1, lb2 have no service listening on port 8081" in line, line


def test_a_5000_digit_probe_interval_is_one_line() -> None:
    (line,) = problems(GROUP + f"    probe: {{port: 80, interval: {'9' * 5000}}}\n")
    assert line.startswith("inv.yaml:") and "5000-digit" in line and len(line) < 200, line


def test_the_probe_asks_the_members_own_listener_never_a_virtual_address() -> None:
    web2 = GROUP.replace("name: web", "name: web2").replace(".250/", ".251/")
    web2 = web2.replace("router_id: 51", "router_id: 52")
    listen = "listen: [{port: 80, address: 192.0.2.251}, {port: 80, address: 192.0.2.11}]"
    text = BASE.replace("listen: [{port: 80}]", listen)
    inv = parse(text + GROUP + "    probe: {port: 80, scheme: tcp}\n" + web2, "inv.yaml")
    conf = render_frontend(inv, units(inv)[0])["/etc/keepalived/keepalived.conf"].content
    assert b"clusterctl-probe.sh tcp 192.0.2.11 80 / 0 0 -" in conf
