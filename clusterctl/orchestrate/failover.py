"""Moving virtual addresses on purpose: `failover` (a group's address to another member) and
`maintain` (every address away from a front end, a command run there, the addresses back).

The one lever is keepalived's tracked hold file (drivers/keepalived.py): clusterctl writes 1
into a member's file for a group and keepalived puts that member's instance in FAULT at once,
giving the address up to the best other member, without a reload; 0 makes it eligible again
(BACKUP under nopreempt; with preempt, the highest priority present takes the address back).
What a member holds is read from the host itself: its interfaces' addresses, and keepalived's
own state from its JSON dump.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from clusterctl.drivers.keepalived import JSON_DUMP, STATE, hold_file, parse_state
from clusterctl.errors import ClusterctlError
from clusterctl.errors import FailoverError as FailoverError
from clusterctl.execute.endpoints import frontend_endpoints
from clusterctl.execute.ssh import Remote, quote
from clusterctl.model.queries import host_port
from clusterctl.model.schema import Inventory
from clusterctl.model.vrrp import Group, groups_of, priority

Say = Callable[[str], None]

# $1 hold file, $2 value: written in place (keepalived watches the file with inotify).
_HOLD = 'mkdir -p -- "$(dirname -- "$1")" && printf \'%s\\n\' "$2" > "$1"'
# $1 URL: the HTTP status the address answers with, asked on the host that holds it.
_ASK = 'curl -s -k -o /dev/null -w "%{http_code}" --max-time 3 -- "$1"'


@dataclass(frozen=True)
class Member:
    name: str
    instances: dict[str, str] | None  # group -> MASTER | BACKUP | FAULT; None: keepalived down
    addresses: tuple[tuple[str, str], ...]
    error: str = ""

    def state(self, g: Group) -> str:
        if self.error:
            return "UNREACHABLE"
        if self.instances is None:
            return "DOWN"
        return self.instances.get(g.name, "ABSENT")

    def holds(self, g: Group) -> bool:
        vip = ipaddress.ip_interface(g.address).ip
        return any(
            ifname == g.interface and ipaddress.ip_interface(cidr).ip == vip
            for ifname, cidr in self.addresses
        )


class Members:
    """One SSH session per member for the whole command."""

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self.eps = frontend_endpoints(inv)
        self.remotes: dict[str, Remote] = {}

    def remote(self, name: str) -> Remote:
        if name not in self.remotes:
            self.remotes[name] = Remote.connect(self.eps[name])
        return self.remotes[name]

    def close(self) -> None:
        for r in self.remotes.values():
            r.close()

    def read(self, name: str) -> Member:
        try:
            res = self.remote(name).sh(STATE, "/run/keepalived.pid", JSON_DUMP, step="vrrp state")
        except ClusterctlError as exc:
            self.remotes.pop(name, None)
            return Member(name, None, (), str(exc))
        instances, addrs = parse_state(res.out)
        return Member(name, instances, tuple(addrs))

    def hold(self, name: str, g: Group, on: bool) -> None:
        res = self.remote(name).sh(_HOLD, hold_file(g.name), "1" if on else "0", step="hold")
        if not res.ok:
            raise FailoverError(f"{name}: cannot write {hold_file(g.name)}: {res.words()}")

    def answers(self, name: str, g: Group) -> bool:
        """The address answers HTTP on the member that holds it (any status: it is served)."""
        port = g.probe.port if g.probe else 80
        scheme = g.probe.scheme if g.probe and g.probe.scheme != "tcp" else "http"
        vip = ipaddress.ip_interface(g.address).ip
        url = f"{scheme}://{host_port(str(vip), port)}/"
        res = self.remote(name).sh(_ASK, url, sudo=False, step="ask")
        return res.out.strip() not in ("", "000")


@contextmanager
def members(inv: Inventory) -> Iterator[Members]:
    m = Members(inv)
    try:
        yield m
    finally:
        m.close()


def group_named(inv: Inventory, name: str) -> Group:
    for g in inv.vrrp:
        if g.name == name:
            return g
    known = ", ".join(g.name for g in inv.vrrp) or "none"
    raise FailoverError(f"no vrrp group named {name!r} (groups: {known})")


def survey(ms: Members, g: Group) -> dict[str, Member]:
    return {name: ms.read(name) for name in g.members}


def status_lines(inv: Inventory, ms: Members) -> list[str]:
    """Per virtual address: which member holds it, and each member's state as it reports it."""
    lines = []
    for g in inv.vrrp:
        seen = survey(ms, g)
        holders = [n for n, m in seen.items() if m.holds(g)]
        parts = [f"{n} {m.state(g)}{' (holds it)' if m.holds(g) else ''}" for n, m in seen.items()]
        if not holders:
            where = "held by no member"
        elif len(holders) == 1:
            where = f"held by {holders[0]}"
        else:
            where = f"held by {len(holders)} members at once: {', '.join(holders)}"
        lines.append(f"vrrp {g.name} {g.address}: {where}; " + ", ".join(parts))
    return lines


def _wait(what: str, test: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not test():
        if time.monotonic() - started > timeout:
            raise FailoverError(f"timed out after {timeout:.0f} s waiting until {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def _healthy(m: Member, g: Group) -> bool:
    return m.state(g) in ("MASTER", "BACKUP")


def _takeover_timeout(g: Group) -> float:
    # keepalived's master-down time is about 3 adverts and skew; probes add their fall count.
    # A sub-second probe still reports once a second (one keepalived run asks several times).
    probe = max(g.probe.interval, 1000) / 1000 * (g.probe.fall + g.probe.rise) if g.probe else 0
    return 10 + 4 * g.advert / 1000 + probe


def failover(inv: Inventory, name: str, to: str | None, say: Say) -> str:
    """Move group `name`'s address to `to` (default: the best healthy other member); returns
    the new holder once the address answers there."""
    g = group_named(inv, name)
    if to is not None and to not in g.members:
        raise FailoverError(f"{to!r} is not a member of group {g.name} ({', '.join(g.members)})")
    with members(inv) as ms:
        seen = survey(ms, g)
        holders = [n for n, m in seen.items() if m.holds(g)]
        if len(holders) != 1:
            raise FailoverError(f"group {g.name}: {status_lines_one(g, seen)}; move nothing")
        holder = holders[0]
        target = to or _best_other(g, seen, holder)
        if target == holder:
            say(f"{g.name}: {holder} holds {g.address} already")
            return holder
        ms.hold(target, g, False)  # an earlier failover's hold on the target goes first
        if not _healthy(ms.read(target), g):
            raise FailoverError(
                f"{target} is {ms.read(target).state(g)} for group {g.name}: it cannot take "
                f"{g.address}; nothing moved"
            )
        others = [n for n in g.members if n != target and _healthy(seen[n], g)]
        for n in others:
            ms.hold(n, g, True)
        try:
            took = _wait(
                f"{target} holds {g.address} and answers through it",
                lambda: ms.read(target).holds(g) and ms.answers(target, g),
                _takeover_timeout(g),
            )
        finally:
            # Under preempt a member of higher priority than the target takes the address back
            # when released: its hold stays until a failover to it or a maintain ends.
            keep = {n for n in others if g.preempt and priority(g, n) > priority(g, target)}
            for n in others:
                if n not in keep:
                    ms.hold(n, g, False)
        say(f"{g.name}: {g.address} moved from {holder} to {target} in {took:.1f} s")
        if keep:
            say(f"{g.name}: preempt is on: {', '.join(sorted(keep))} stay held (FAULT)")
        return target


def status_lines_one(g: Group, seen: dict[str, Member]) -> str:
    holders = [n for n, m in seen.items() if m.holds(g)]
    states = ", ".join(f"{n} {m.state(g)}" for n, m in seen.items())
    return f"{len(holders)} members hold {g.address} ({states})"


def _best_other(g: Group, seen: dict[str, Member], holder: str) -> str:
    for n in g.members:  # priority order
        if n != holder and _healthy(seen[n], g):
            return n
    raise FailoverError(
        f"group {g.name}: no other member is healthy ({status_lines_one(g, seen)}); "
        f"{holder} keeps {g.address}"
    )


def maintain(
    inv: Inventory, frontend: str, argv: list[str], say: Say, timeout: float = 600.0
) -> None:
    """Every address away from `frontend`, `argv` run there, its service checked, the
    addresses handed back as preemption says. Never when it is a group's last healthy member."""
    from clusterctl.execute.apply import StepFailed, run_step
    from clusterctl.plan_build import probes

    fe = next((f for f in inv.frontends if f.name == frontend), None)
    if fe is None:
        raise FailoverError(f"no front end named {frontend!r}")
    gs = groups_of(inv, frontend)
    if not gs:
        raise FailoverError(f"{frontend} is in no vrrp group: nothing can take over its traffic")
    with members(inv) as ms:
        for g in gs:
            seen = survey(ms, g)
            if not any(_healthy(seen[n], g) for n in g.members if n != frontend):
                raise FailoverError(
                    f"{frontend} is the last healthy member of group {g.name} "
                    f"({status_lines_one(g, seen)}); nothing was changed"
                )
        for g in gs:
            ms.hold(frontend, g, True)
        for g in gs:
            took = _wait(
                f"{frontend} holds no {g.address} and another member answers through it",
                partial(_moved_away, ms, g, frontend),
                _takeover_timeout(g),
            )
            say(f"{g.name}: {g.address} moved away from {frontend} in {took:.1f} s")
        say(f"{frontend}: running {quote(argv)}")
        res = ms.remote(frontend).run(argv, sudo=True, timeout=timeout, step="maintain")
        if not res.ok:
            raise FailoverError(
                f"{frontend}: {quote(argv)} failed ({res.words()}); its addresses stay away "
                f"(held); run maintain again once it is fixed"
            )
        ms.remotes.pop(frontend, None)  # a reboot drops the session: ask on a fresh one

        def serves() -> bool:
            try:
                for step in probes(inv, fe):
                    run_step(ms.remote(frontend), fe, step)
            except (StepFailed, ClusterctlError):
                ms.remotes.pop(frontend, None)
                return False
            return True

        _wait(f"{frontend} serves again", serves, timeout)
        say(f"{frontend}: serves again")
        for g in gs:
            ms.hold(frontend, g, False)
            took = _wait(
                f"{frontend} is back in group {g.name}",
                partial(_back, ms, g, frontend),
                _takeover_timeout(g),
            )
            state = "holds it again" if ms.read(frontend).holds(g) else "is BACKUP"
            say(f"{g.name}: {frontend} {state} ({took:.1f} s)")


def _moved_away(ms: Members, g: Group, frontend: str) -> bool:
    if ms.read(frontend).holds(g):
        return False
    return any(ms.read(n).holds(g) and ms.answers(n, g) for n in g.members if n != frontend)


def _back(ms: Members, g: Group, frontend: str) -> bool:
    me = ms.read(frontend)
    if g.preempt and all(
        priority(g, frontend) > priority(g, n) or not _healthy(ms.read(n), g)
        for n in g.members
        if n != frontend
    ):
        return me.holds(g) and ms.answers(frontend, g)
    return _healthy(me, g)
