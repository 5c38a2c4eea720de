"""`clusterctl verify` on a VRRP pair, without hosts: what it checks, how it reads keepalived's
report, and what it says (the lab test in tests/integration/test_vrrp.py runs it for real)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from clusterctl.verify import VerifyReport
from clusterctl.verify import vrrp as vv
from clusterctl.verify.plugin import Check
from clusterctl.verify.targets import Settings, make_targets

PAIR = Path(__file__).resolve().parents[2] / "inventories" / "pair.yaml"


def test_members_groups_and_their_files_are_checked() -> None:
    t = make_targets(Settings(PAIR))
    assert vv.vrrp_members(t) == ["lb1", "lb2"]
    assert vv.vrrp_groups(t) == ["web"]
    # keepalived.conf is checked as one of the member's installed files.
    assert ("lb2", "/etc/keepalived/keepalived.conf") in t.files()
    # One member asked for: its group is still checked, on every member.
    one = make_targets(Settings(PAIR, ("lb2",)))
    assert vv.vrrp_members(one) == ["lb2"] and vv.vrrp_groups(one) == ["web"]
    assert vv.vrrp_members(make_targets(Settings(PAIR, ("web1",)))) == []


class FakeHost:
    def __init__(self, out: str) -> None:
        self.out = out
        self.argv: tuple[str, ...] = ()

    def run(self, command: str, *args: str) -> Any:
        self.argv = (command, *args)
        return SimpleNamespace(stdout=self.out, rc=0)


def fake_conn(outputs: dict[str, str]) -> Any:
    hosts = {name: FakeHost(out) for name, out in outputs.items()}
    targets = make_targets(Settings(PAIR))
    return SimpleNamespace(targets=targets, frontend=hosts.__getitem__, hosts=hosts)


MASTER = "INSTANCE web 2\nADDR eth0 192.0.2.11/24\nADDR eth0 192.0.2.250/24\n"
BACKUP = "INSTANCE web 1\nADDR eth0 192.0.2.12/24\n"


def test_keepalived_is_read_once_per_member_with_its_pid_file() -> None:
    conn = fake_conn({"lb1": MASTER, "lb2": BACKUP})
    seen = vv.Keepalived(conn)
    assert seen.read("lb1").instances == {"web": "MASTER"}
    assert seen.read("lb1") is seen.read("lb1")
    command, _script, pid_file, _dump = conn.hosts["lb1"].argv
    assert command == "sh -c %s sh %s %s" and pid_file == "/run/keepalived.pid"


def test_one_holder_passes() -> None:
    conn = fake_conn({"lb1": MASTER, "lb2": BACKUP})
    vv.test_keepalived_running("lb2", vv.Keepalived(conn))
    vv.test_vrrp_address_on_one_member("web", conn, vv.Keepalived(conn))


@pytest.mark.parametrize(
    ("lb2", "check", "said"),
    [
        (
            BACKUP.replace("192.0.2.12/24", "192.0.2.12/24\nADDR eth0 192.0.2.250/24"),
            "group",
            "web: 192.0.2.250/24 is on lb1 and lb2, not on exactly one (lb1 MASTER, lb2 BACKUP)",
        ),
        ("DOWN\nADDR eth0 192.0.2.12/24\n", "member", "lb2: keepalived is not running"),
        ("INSTANCE other 1\n", "member", "lb2: keepalived runs without an instance for web"),
    ],
)
def test_a_split_brain_a_stopped_keepalived_or_another_config_fails(
    lb2: str, check: str, said: str
) -> None:
    conn = fake_conn({"lb1": MASTER, "lb2": lb2})
    seen = vv.Keepalived(conn)
    with pytest.raises(pytest.fail.Exception) as failed:
        if check == "group":
            vv.test_vrrp_address_on_one_member("web", conn, seen)
        else:
            vv.test_keepalived_running("lb2", seen)
    assert str(failed.value).startswith(said)


def test_no_member_holding_the_address_fails() -> None:
    conn = fake_conn({"lb1": BACKUP.replace("12/24", "11/24"), "lb2": BACKUP})
    with pytest.raises(pytest.fail.Exception, match="is on no member, not on exactly one"):
        vv.test_vrrp_address_on_one_member("web", conn, vv.Keepalived(conn))


def test_the_summary_counts_groups_apart_from_hosts() -> None:
    checks = [
        Check("lb1", "haproxy", "test_keepalived_running[lb1]", "passed"),
        Check("web", "vrrp", "test_vrrp_address_on_one_member[web]", "failed", "web: split"),
    ]
    lines = VerifyReport(1, checks).summary()
    assert lines[0].startswith("lb1 ") and lines[1].startswith("web ")  # groups last
    assert lines[-1] == "verify: 1 host and 1 vrrp group checked, 1 failed (2 checks, 1 failed)"
