"""failover and maintain against a simulated keepalived group (no hosts): who is held, who
takes the address, what is refused, what is handed back. The lab test runs the real thing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from clusterctl.model import load
from clusterctl.model.schema import Inventory
from clusterctl.model.vrrp import Group, priority
from clusterctl.orchestrate import failover as fo

REPO = Path(__file__).resolve().parents[2]


class Result:
    def __init__(self, ok: bool = True, out: str = "") -> None:
        self.ok = ok
        self.rc = 0 if ok else 1
        self.out = out

    def words(self) -> str:
        return "exit status 1"


class FakeRemote:
    def __init__(self, sim: Sim, name: str) -> None:
        self.sim, self.name = sim, name

    def run(self, argv: list[str], **_: Any) -> Result:
        self.sim.ran.append((self.name, list(argv)))
        return Result(argv != ["false"])

    def sh(self, *_: Any, **__: Any) -> Result:  # the probes of `serves again`
        return Result(out="200")


class Sim:
    """One group; a held or faulty member is FAULT; the address is on one healthy member: kept
    while it is healthy (nopreempt) or given to the highest priority present (preempt)."""

    def __init__(self, inv: Inventory, holder: str, down: tuple[str, ...] = ()) -> None:
        self.inv = inv
        self.g: Group = inv.vrrp[0]
        self.held: set[str] = set()
        self.down = set(down)
        self.holder: str | None = holder
        self.ran: list[tuple[str, list[str]]] = []

    def healthy(self, n: str) -> bool:
        return n not in self.held and n not in self.down

    def settle(self) -> None:
        ok = [n for n in self.g.members if self.healthy(n)]
        if self.g.preempt and ok:
            self.holder = max(ok, key=lambda n: priority(self.g, n))
        elif self.holder is None or not self.healthy(self.holder):
            self.holder = ok[0] if ok else None

    # Members' interface
    def read(self, name: str) -> fo.Member:
        self.settle()
        state = "FAULT" if not self.healthy(name) else "MASTER" if name == self.holder else "BACKUP"
        addrs = [("eth0", "192.0.2.11/24")]
        if name == self.holder:
            addrs.append(("eth0", self.g.address))
        return fo.Member(name, {self.g.name: state}, tuple(addrs))

    def hold(self, name: str, g: Group, on: bool) -> None:
        (self.held.add if on else self.held.discard)(name)

    def answers(self, name: str, g: Group) -> bool:
        return name == self.holder

    def remote(self, name: str) -> FakeRemote:
        return FakeRemote(self, name)

    @property
    def remotes(self) -> dict[str, Any]:
        return {}


@pytest.fixture
def inv() -> Inventory:
    return load(REPO / "inventories" / "pair.yaml")


def use(monkeypatch: pytest.MonkeyPatch, sim: Sim) -> None:
    @contextmanager
    def members(_: Inventory) -> Iterator[Sim]:
        yield sim

    monkeypatch.setattr(fo, "members", members)


def test_failover_moves_to_the_other_member_and_releases_the_old(
    inv: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = Sim(inv, "lb1")
    use(monkeypatch, sim)
    said: list[str] = []
    assert fo.failover(inv, "web", None, said.append) == "lb2"
    assert sim.holder == "lb2" and sim.held == set()  # lb1 released: BACKUP under nopreempt
    assert said[0].startswith("web: 192.0.2.250/24 moved from lb1 to lb2 in ")


def test_failover_to_the_holder_changes_nothing_and_bad_names_are_refused(
    inv: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = Sim(inv, "lb1")
    use(monkeypatch, sim)
    assert fo.failover(inv, "web", "lb1", print) == "lb1"
    with pytest.raises(fo.FailoverError, match="'lb9' is not a member of group web"):
        fo.failover(inv, "web", "lb9", print)
    with pytest.raises(fo.FailoverError, match="no vrrp group named 'api'"):
        fo.failover(inv, "api", None, print)


def test_failover_refuses_when_no_member_or_no_other_healthy_member(
    inv: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = Sim(inv, "lb1", down=("lb2",))
    use(monkeypatch, sim)
    with pytest.raises(fo.FailoverError, match="no other member is healthy"):
        fo.failover(inv, "web", None, print)
    assert sim.holder == "lb1" and sim.held == set()
    nobody = Sim(inv, "lb1", down=("lb1", "lb2"))
    use(monkeypatch, nobody)
    with pytest.raises(fo.FailoverError, match="0 members hold"):
        fo.failover(inv, "web", None, print)


def test_under_preempt_the_higher_member_stays_held(
    inv: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    pre = dataclasses.replace(inv, vrrp=(dataclasses.replace(inv.vrrp[0], preempt=True),))
    sim = Sim(pre, "lb1")
    use(monkeypatch, sim)
    said: list[str] = []
    assert fo.failover(pre, "web", "lb2", said.append) == "lb2"
    assert sim.held == {"lb1"} and sim.holder == "lb2"
    assert said[-1] == "web: preempt is on: lb1 stay held (FAULT)"
    assert fo.failover(pre, "web", "lb1", said.append) == "lb1"  # its hold goes first
    assert sim.held == set()


def test_maintain_moves_away_runs_the_command_and_hands_back(
    inv: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = Sim(inv, "lb1")
    use(monkeypatch, sim)
    said: list[str] = []
    fo.maintain(inv, "lb1", ["apt-get", "install", "-y", "haproxy"], said.append)
    assert sim.ran == [("lb1", ["apt-get", "install", "-y", "haproxy"])]
    assert sim.held == set() and sim.holder == "lb2"  # nopreempt: lb1 back as BACKUP
    assert said[-1].startswith("web: lb1 is BACKUP")


def test_maintain_never_takes_the_last_healthy_member(
    inv: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = Sim(inv, "lb1", down=("lb2",))
    use(monkeypatch, sim)
    with pytest.raises(fo.FailoverError, match="lb1 is the last healthy member of group web"):
        fo.maintain(inv, "lb1", ["true"], print)
    assert sim.ran == [] and sim.held == set()


def test_a_failed_command_leaves_the_addresses_away(
    inv: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = Sim(inv, "lb1")
    use(monkeypatch, sim)
    with pytest.raises(fo.FailoverError, match="its addresses stay away"):
        fo.maintain(inv, "lb1", ["false"], print)
    assert sim.held == {"lb1"} and sim.holder == "lb2"


def test_status_lines_name_the_holder_and_a_split_brain(inv: Inventory) -> None:
    sim = Sim(inv, "lb1")
    assert fo.status_lines(inv, sim) == [  # type: ignore[arg-type]
        "vrrp web 192.0.2.250/24: held by lb1; lb1 MASTER (holds it), lb2 BACKUP"
    ]
    down = fo.Member("lb2", None, ())
    assert down.state(inv.vrrp[0]) == "DOWN"
    assert fo.Member("lb2", None, (), "no route").state(inv.vrrp[0]) == "UNREACHABLE"


def test_status_lines_say_when_no_member_holds_the_address(inv: Inventory) -> None:
    # Every member down: one line that says so, never a traceback.
    sim = Sim(inv, "lb1", down=("lb1", "lb2"))
    (line,) = fo.status_lines(inv, sim)  # type: ignore[arg-type]
    assert line.startswith("vrrp web 192.0.2.250/24: held by no member; "), line
