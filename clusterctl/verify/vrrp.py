"""The VRRP checks of `clusterctl verify`: keepalived runs on every member with each of its
groups loaded, and every virtual address is on exactly one member.

That a member's keepalived.conf is installed as rendered is test_installed_file's check: the
targets list a member's keepalived files with its own. The state is keepalived's own report
(its JSON dump, read by the driver's STATE script, the one `clusterctl vrrp` reads) and the
host's addresses, each member read once per run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from clusterctl.drivers import driver_for
from clusterctl.drivers.keepalived import JSON_DUMP, STATE, parse_state
from clusterctl.model.vrrp import Group, groups_of, units
from clusterctl.orchestrate.failover import Member
from clusterctl.verify.probes import fail, reach

if TYPE_CHECKING:
    from clusterctl.verify.targets import Connections, Targets

__all__ = ["keepalived", "test_keepalived_running", "test_vrrp_address_on_one_member"]


def vrrp_members(t: Targets) -> list[str]:
    """The checked front ends that are members of a VRRP group."""
    return [fe.name for fe in t.frontends if groups_of(t.inventory, fe.name)]


def vrrp_groups(t: Targets) -> list[str]:
    """The groups with a checked member (each is checked on all its members)."""
    checked = set(vrrp_members(t))
    return [g.name for g in t.inventory.vrrp if checked & set(g.members)]


class Keepalived:
    """Each member's keepalived as it reports itself."""

    def __init__(self, conn: Connections) -> None:
        self.conn = conn
        self._seen: dict[str, Member] = {}

    def read(self, member: str) -> Member:
        if member not in self._seen:
            (unit,) = units(self.conn.targets.inventory, [member])
            pid_file = driver_for(unit.kind).paths(unit).pid_file
            host = self.conn.frontend(member)
            res = host.run("sh -c %s sh %s %s", STATE, pid_file, JSON_DUMP)
            instances, addresses = parse_state(res.stdout)
            self._seen[member] = Member(member, instances, tuple(addresses))
        return self._seen[member]


@pytest.fixture(scope="session")
def keepalived(conn: Connections) -> Keepalived:
    return Keepalived(conn)


def _group(conn: Connections, name: str) -> Group:
    return next(g for g in conn.targets.inventory.vrrp if g.name == name)


def test_keepalived_running(vrrp_member: str, keepalived: Keepalived) -> None:
    """keepalived runs on the member with an instance of every group the member is in."""
    with reach(vrrp_member):
        seen = keepalived.read(vrrp_member)
    if seen.instances is None:
        fail(f"{vrrp_member}: keepalived is not running")
    inv = keepalived.conn.targets.inventory
    missing = [g.name for g in groups_of(inv, vrrp_member) if g.name not in seen.instances]
    if missing:
        fail(
            f"{vrrp_member}: keepalived runs without an instance for {', '.join(missing)} "
            "(its configuration is not the one clusterctl renders: clusterctl apply)"
        )


def test_vrrp_address_on_one_member(
    vrrp_group: str, conn: Connections, keepalived: Keepalived
) -> None:
    """The group's virtual address is on exactly one member (none: nobody serves it; two: a
    split brain, both answer ARP for it)."""
    g = _group(conn, vrrp_group)
    seen: dict[str, Member] = {}
    for member in g.members:
        with reach(member):
            seen[member] = keepalived.read(member)
    holders = [n for n, m in seen.items() if m.holds(g)]
    if len(holders) != 1:
        where = " and ".join(holders) or "no member"
        states = ", ".join(f"{n} {m.state(g)}" for n, m in seen.items())
        fail(f"{g.name}: {g.address} is on {where}, not on exactly one ({states})")
