"""A pair of HAProxy front ends sharing the lab's virtual address (keepalived 2.2.7 from Debian
in each namespace): the backup takes the address when the master's proxy dies, a planned
failover and maintain move it on purpose, and a group's last healthy member is never taken.
The load is wrk's (never resent), with Connection: close and with keep-alive. One lab for the
module; durations are measured in bench/failover.py, not asserted here."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterctl import lab as labmod
from clusterctl.execute.runner import execute_plan, make_plan
from clusterctl.lab.vrrp import holders, vip, without_probes
from clusterctl.model import load
from clusterctl.model.schema import Inventory
from clusterctl.orchestrate import failover as fo
from clusterctl.verify import verify_checks
from tests.helpers.wrk import Wrk, WrkLoad

NAME = "tvrrp"


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[labmod.LabInfo, Inventory]]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces)")
    labmod.down(NAME)
    try:
        info = labmod.up(NAME, backends=1, frontends=["haproxy", "haproxy"], vip=True)
        inv = load(info.inventory_path)
        results = execute_plan(inv, make_plan(inv))
        assert [r.status for r in results if r.status not in ("changed", "unchanged")] == []
        wait_one_holder(inv)
        yield info, inv
    finally:
        labmod.down(NAME)


def states(inv: Inventory) -> dict[str, fo.Member]:
    with fo.members(inv) as ms:
        return fo.survey(ms, inv.vrrp[0])


def wait_one_holder(inv: Inventory, not_: str = "", timeout: float = 15) -> str:
    g = inv.vrrp[0]
    deadline = time.monotonic() + timeout
    while True:
        seen = states(inv)
        holders = [n for n, m in seen.items() if m.holds(g)]
        if len(holders) == 1 and holders[0] != not_:
            return holders[0]
        assert time.monotonic() < deadline, {n: m.state(g) for n, m in seen.items()}
        time.sleep(0.2)


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return int(resp.status)


def ssh(info: labmod.LabInfo, host: str, line: str) -> None:
    import subprocess

    subprocess.run(info.ssh_argv(host, line), check=True, capture_output=True, timeout=30)


def test_lab_lists_the_group_and_one_member_holds_it(
    pair: tuple[labmod.LabInfo, Inventory],
) -> None:
    info, inv = pair
    assert info.vrrp[0]["members"] == ["lb1", "lb2"]
    assert vip(info) == inv.vrrp[0].address.split("/")[0]
    seen = states(inv)
    assert sorted(m.state(inv.vrrp[0]) for m in seen.values()) == ["BACKUP", "MASTER"]
    assert get(f"http://{vip(info)}/") == 200


def wrk_total(load: WrkLoad) -> Wrk:
    """wrk's counts over every run of `load` (GETs and POSTs), stopped now."""
    runs = [w for by_method in load.stop().values() for w in by_method.values()]
    return Wrk(
        sum(w.requests for w in runs),
        sum(w.socket_errors for w in runs),
        sum(w.non_2xx for w in runs),
        "\n".join(w.text for w in runs),
    )


def clean_load(url: str, work: Path, keepalive: bool) -> Wrk:
    """A second of wrk (GETs and POSTs, never resent) through `url`: what it counted."""
    load_ = WrkLoad({"vip": url}, work, keepalive=keepalive)
    time.sleep(1)
    return wrk_total(load_)


MODES = pytest.mark.parametrize("keepalive", [False, True], ids=["close", "keepalive"])
# WrkLoad's connections: two for GETs and two for POSTs, each with one request in flight.
IN_FLIGHT = 4


@MODES
def test_master_proxy_killed_backup_takes_the_address_and_serves(
    pair: tuple[labmod.LabInfo, Inventory], keepalive: bool, tmp_path: Path
) -> None:
    info, inv = pair
    url = f"http://{vip(info)}/"
    holder = wait_one_holder(inv)
    before = clean_load(url, tmp_path, keepalive)
    assert before.requests > 0 and before.errors == 0, before.text
    across = WrkLoad({"vip": url}, tmp_path, keepalive=keepalive)
    try:
        ssh(info, holder, "kill -KILL $(cat /run/haproxy.pid)")  # ssh passes one shell line
        other = wait_one_holder(inv, not_=holder)
    finally:
        during = wrk_total(across)
    # What failed, failed inside the takeover window: wrk before it and after it saw none.
    after = clean_load(url, tmp_path, keepalive)
    print(
        f"takeover, keepalive={keepalive}: wrk {during.errors} errors (a refused connect is one), {during.requests} completed"
    )
    assert during.requests > 0
    assert after.requests > 0 and after.errors == 0, after.text
    ssh(info, holder, "/srv/lab/bin/lab-service haproxy start")
    # nopreempt: the old master comes back as BACKUP, the address stays where it is.
    deadline = time.monotonic() + 15
    while states(inv)[holder].state(inv.vrrp[0]) != "BACKUP":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert wait_one_holder(inv) == other


@MODES
def test_planned_failover_fails_only_requests_in_flight(
    pair: tuple[labmod.LabInfo, Inventory], keepalive: bool, tmp_path: Path
) -> None:
    info, inv = pair
    url = f"http://{vip(info)}/"
    holder = wait_one_holder(inv)
    said: list[str] = []
    load_ = WrkLoad({"vip": url}, tmp_path, keepalive=keepalive)
    try:
        new = fo.failover(inv, "lab", None, said.append)
        time.sleep(1)
    finally:
        seen = wrk_total(load_)
    print(
        f"planned failover, keepalive={keepalive}: wrk {seen.errors} errors, {seen.requests} completed"
    )
    assert new != holder and wait_one_holder(inv) == new
    assert seen.requests > 0
    assert seen.errors <= IN_FLIGHT, seen.text  # at most the one each connection had in flight
    assert "moved from" in said[0]


def test_maintain_each_member_in_turn_under_load_ends_with_both_serving(
    pair: tuple[labmod.LabInfo, Inventory], tmp_path: Path
) -> None:
    info, inv = pair
    g = inv.vrrp[0]
    url = f"http://{vip(info)}/"
    said: list[str] = []
    loads = {ka: WrkLoad({"vip": url}, tmp_path, keepalive=ka) for ka in (False, True)}
    try:
        for member in g.members:
            fo.maintain(inv, member, ["sh", "-c", "test -S /run/haproxy/admin.sock"], said.append)
            assert wait_one_holder(inv) != member  # nopreempt: handed back as BACKUP
    finally:
        seen = {ka: wrk_total(load_) for ka, load_ in loads.items()}
    for ka, w in seen.items():
        print(
            f"maintain of each member, keepalive={ka}: wrk {w.errors} errors, {w.requests} completed"
        )
        # Two moves of the address: each fails at most the requests in flight at the switch.
        assert w.requests > 0 and w.errors <= 2 * IN_FLIGHT, w.text
    states_ = states(inv)
    assert sorted(m.state(g) for m in states_.values()) == ["BACKUP", "MASTER"]
    for h in info.frontends:
        assert get(h.url) == 200
    assert get(url) == 200
    assert sum("serves again" in s for s in said) == 2


def test_master_cut_off_backup_takes_over_and_one_holder_remains_when_it_is_back(
    pair: tuple[labmod.LabInfo, Inventory],
) -> None:
    import subprocess

    from clusterctl.lab.naming import Naming

    info, inv = pair
    holder = wait_one_holder(inv)
    link = Naming(info.name).veth(holder)
    subprocess.run(["ip", "link", "set", link, "down"], check=True, timeout=10)
    try:
        deadline = time.monotonic() + 15
        while True:  # the old master is cut off: whoever answers now is the other member
            try:
                if get(f"http://{vip(info)}/") == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the backup did not take the address"
            time.sleep(0.1)
    finally:
        subprocess.run(["ip", "link", "set", link, "up"], check=True, timeout=10)
    # Its carrier back, the cut-off member leaves FAULT; the adverts leave exactly one holder.
    deadline = time.monotonic() + 15
    while sorted(m.state(inv.vrrp[0]) for m in states(inv).values()) != ["BACKUP", "MASTER"]:
        assert time.monotonic() < deadline, states(inv)
        time.sleep(0.2)
    assert wait_one_holder(inv) in inv.vrrp[0].members
    assert get(f"http://{vip(info)}/") == 200


def test_a_partition_between_the_members_heals_to_exactly_one_holder(
    pair: tuple[labmod.LabInfo, Inventory],
) -> None:
    # The holder's link is taken off the lab bridge but stays up (no carrier loss, so no
    # FAULT), and the group steps down by adverts alone (no probe: its backends are across the
    # bridge too). The other member hears no advert and takes the address: two MASTERs. Once
    # the link is back on the bridge, the adverts leave exactly one.
    import subprocess

    from clusterctl.lab.naming import Naming

    info, inv = pair
    g = inv.vrrp[0]
    assert g.probe is not None
    quiet = without_probes(inv)
    results = execute_plan(quiet, make_plan(quiet))
    assert all(r.status in ("changed", "unchanged") for r in results), results
    holder = wait_one_holder(quiet)
    naming = Naming(info.name)
    link = naming.veth(holder)
    subprocess.run(["ip", "link", "set", link, "nomaster"], check=True, timeout=10)
    try:
        deadline = time.monotonic() + 15
        while sorted(holders(info)) != sorted(g.members):
            assert time.monotonic() < deadline, holders(info)
            time.sleep(0.1)
    finally:
        subprocess.run(["ip", "link", "set", link, "master", naming.bridge], check=True, timeout=10)
    deadline = time.monotonic() + 15
    while len(holders(info)) != 1:
        assert time.monotonic() < deadline, holders(info)
        time.sleep(0.05)
    assert sorted(m.state(g) for m in states(quiet).values()) == ["BACKUP", "MASTER"]
    assert get(f"http://{vip(info)}/") == 200
    results = execute_plan(inv, make_plan(inv))  # the probe back
    assert all(r.status in ("changed", "unchanged") for r in results), results
    wait_one_holder(inv)


def test_the_last_healthy_member_is_never_taken(pair: tuple[labmod.LabInfo, Inventory]) -> None:
    _info, inv = pair
    g = inv.vrrp[0]
    holder = wait_one_holder(inv)
    other = next(m for m in g.members if m != holder)
    with fo.members(inv) as ms:
        ms.hold(other, g, True)
        try:
            deadline = time.monotonic() + 10
            while ms.read(other).state(g) != "FAULT":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            with pytest.raises(fo.FailoverError, match="last healthy member"):
                fo.maintain(inv, holder, ["true"], print)
            with pytest.raises(fo.FailoverError, match="no other member is healthy"):
                fo.failover(inv, "lab", None, print)
        finally:
            ms.hold(other, g, False)
    assert wait_one_holder(inv) == holder


def test_vrrp_and_status_commands_name_the_holder(pair: tuple[labmod.LabInfo, Inventory]) -> None:
    import subprocess
    import sys

    info, inv = pair
    holder = wait_one_holder(inv)
    other = next(m for m in inv.vrrp[0].members if m != holder)
    want = f"vrrp lab {inv.vrrp[0].address}: held by {holder}; "
    for command in ("vrrp", "status"):
        run = subprocess.run(
            [sys.executable, "-m", "clusterctl", command, "-i", str(info.inventory_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        line = next(ln for ln in run.stdout.splitlines() if ln.startswith("vrrp "))
        assert line.startswith(want), line
        assert f"{holder} MASTER (holds it)" in line and f"{other} BACKUP" in line


def test_lab_load_targets_the_virtual_address(pair: tuple[labmod.LabInfo, Inventory]) -> None:
    import subprocess
    import sys

    info, _inv = pair
    argv = [sys.executable, "-m", "clusterctl", "lab", "load", info.name, "--vip"]
    run = subprocess.run(
        [*argv, "--duration", "1", "--clients", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("vip: ") and " 0 failed" in run.stdout, run.stdout


def test_verify_checks_keepalived_and_that_one_member_holds_the_address(
    pair: tuple[labmod.LabInfo, Inventory],
) -> None:
    # One verify run of the VRRP checks (the others are test_verify.py's) with the backup's
    # keepalived stopped: the master passes, the backup fails in its own words, and the address
    # is still on exactly one member. A split brain and no holder: tests/unit/test_verify_vrrp.py.
    info, inv = pair
    g = inv.vrrp[0]
    holder = wait_one_holder(inv)
    other = next(m for m in g.members if m != holder)
    ssh(info, other, "/srv/lab/bin/lab-service keepalived stop")
    try:
        report = verify_checks(info.inventory_path, None, ["-k", "keepalived or vrrp"])
    finally:
        ssh(info, other, "/srv/lab/bin/lab-service keepalived start")
    outcome = {c.check: c.outcome for c in report.checks}
    for m in g.members:
        assert outcome[f"test_installed_file[{m}:/etc/keepalived/keepalived.conf]"] == "passed"
    assert outcome[f"test_keepalived_running[{holder}]"] == "passed", report.summary()
    assert outcome[f"test_vrrp_address_on_one_member[{g.name}]"] == "passed", report.summary()
    said = {c.check: c.message for c in report.failed}
    assert said == {f"test_keepalived_running[{other}]": f"{other}: keepalived is not running"}
    assert "verify: 2 hosts and 1 vrrp group checked, 1 failed" in report.summary()[-1]
    assert wait_one_holder(inv) == holder
    assert get(f"http://{vip(info)}/") == 200


def test_services_bound_to_the_virtual_address_start_on_every_member_at_the_first_apply(
    pair: tuple[labmod.LabInfo, Inventory],
) -> None:
    # The member that does not hold the address must bind it too: its plan turns non-local
    # binding on before the bind preflight, so one apply serves on both, and the address
    # answers from either after a failover. Last in the module: it changes the listeners.
    import subprocess

    from clusterctl.model import parse

    info, inv = pair
    g = inv.vrrp[0]
    address = vip(info)
    base = info.inventory_path.read_text()
    listen = "  listen:\n  - port: 80\n"
    assert listen in base
    bound = base.replace(
        listen,
        f"  listen:\n  - port: 80\n    address: {address}\n  - port: 80\n    address: 127.0.0.1\n",
    )
    holder = wait_one_holder(inv)
    other = next(m for m in g.members if m != holder)
    ssh(info, other, "sysctl -q -w net.ipv4.ip_nonlocal_bind=0")
    try:
        info.inventory_path.write_text(bound)
        inv2 = parse(bound, str(info.inventory_path))
        results = execute_plan(inv2, make_plan(inv2))
        assert {r.host: r.status for r in results if r.host in g.members} == {
            holder: "changed",
            other: "changed",
        }, [(r.host, r.message) for r in results]
        for m in g.members:
            run = subprocess.run(
                info.ssh_argv(m, "sysctl -n net.ipv4.ip_nonlocal_bind"),
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
            assert run.stdout.strip() == "1", m
        assert get(f"http://{address}/") == 200
        new = fo.failover(inv2, g.name, None, print)
        assert new == other and wait_one_holder(inv2) == other
        assert get(f"http://{address}/") == 200
    finally:
        info.inventory_path.write_text(base)
        execute_plan(inv, make_plan(inv))
    assert get(f"http://{address}/") == 200
