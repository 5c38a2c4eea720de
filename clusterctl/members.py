"""Whether a change only touches pool members, and which member changes it is (issue 12).

Pure: from the config a host runs and the one just rendered for it. The driver reads the
member lines of its own config (it knows its template) and gives the text back with each
pool's members replaced by one marker line. When the two masked texts are byte-identical and
no other file changes, the change is members only: the kind's runtime interface makes it
(`Change`s) and the files are written without a reload. Anything else, or a member change the
pool cannot take at run time (HAProxy: `add server` in a pool with cookies; a static balance
algorithm), is a reload, with the reason for `plan` to print.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from clusterctl.drivers import driver_for
from clusterctl.drivers.control import Change, ChangeKind, Member, PoolMembers
from clusterctl.model.schema import Frontend


@dataclass(frozen=True)
class MemberPlan:
    """The runtime path of a host's change: its member changes, or why it must reload."""

    changes: tuple[Change, ...] = ()
    reload: str = ""  # why the change needs a reload; "" when it goes at run time

    @property
    def runtime(self) -> bool:
        return not self.reload


def decide(fe: Frontend, files: Mapping[str, tuple[bytes | None, bytes]]) -> MemberPlan:
    """`files`: each file the change writes, as (the host's content or None, the new content)."""
    driver = driver_for(fe.kind)
    if not files:
        return MemberPlan()
    if not driver.runtime_changes:
        return MemberPlan(reload=f"a {fe.kind} front end changes its members by reload")
    # A host that lacks what the kind's runtime interface needs (nginx: its Lua module).
    lacking = getattr(driver, "no_runtime", None)
    why = lacking(fe) if lacking is not None else ""
    if why:
        return MemberPlan(reload=why)
    config = driver.paths(fe).config
    others = sorted(p for p in files if p != config)
    if others:
        return MemberPlan(reload=f"{others[0]} changes")
    old, new = files[config]
    if old is None:
        return MemberPlan(reload=f"{config} is not on the host yet")
    before = driver.parse_members(old.decode("utf-8", "replace"))
    after = driver.parse_members(new.decode("utf-8", "replace"))
    if before is None or after is None:
        return MemberPlan(reload=f"a {fe.kind} front end changes its members by reload")
    if before[1] != after[1]:
        return MemberPlan(reload="the config changes beyond pool members")
    changes: list[Change] = []
    for name, pool in after[0].items():
        found = _pool_changes(before[0].get(name, PoolMembers(name, ())), pool)
        if isinstance(found, str):
            return MemberPlan(reload=found)
        changes += found
    return MemberPlan(tuple(changes))


def _needs(pool: PoolMembers, kind: ChangeKind, what: str) -> str:
    if kind in pool.runtime:
        return ""
    why = f": {pool.why}" if pool.why else ""
    return f"{what} in pool {pool.pool} needs a reload{why}"


def _pool_changes(old: PoolMembers, new: PoolMembers) -> list[Change] | str:
    """One pool's member changes, in the order to make them, or why it needs a reload."""
    before = {m.name: m for m in old.members}
    after = {m.name: m for m in new.members}
    kept_old = [m.name for m in old.members if m.name in after]
    kept_new = [m.name for m in new.members if m.name in before]
    if kept_old != kept_new:
        return f"the members of pool {new.pool} change order"
    adds: list[Change] = []
    weights: list[Change] = []
    states: list[Change] = []
    removes: list[Change] = []
    for m in new.members:
        was = before.get(m.name)
        if was is None:
            adds.append(_add(new.pool, m))
            continue
        if (was.address, was.port, was.options) != (m.address, m.port, m.options):
            return f"{new.pool}/{m.name} changes beyond its state and weight"
        # A weight of 0 is how a kind may render a drain: the drain is the state change.
        if m.weight != was.weight and m.weight != 0:
            weights.append(Change("weight", new.pool, m.name, weight=m.weight))
        if m.state != was.state:
            states.append(Change("state", new.pool, m.name, state=m.state))
    for m in old.members:
        if m.name not in after:
            removes.append(Change("remove", old.pool, m.name, address=m.address, port=m.port))
    checks: tuple[tuple[PoolMembers, ChangeKind, list[Change], str], ...] = (
        (new, "add", adds, "adding a server"),
        (new, "weight", weights, "a weight change"),
        (new, "state", states, "a state change"),
        (old, "remove", removes, "removing a server"),
    )
    for pool, change, found, what in checks:
        why = _needs(pool, change, what) if found else ""
        if why:
            return why
    return adds + weights + states + removes


def _add(pool: str, m: Member) -> Change:
    return Change(
        "add", pool, m.name, state=m.state, weight=m.weight, address=m.address, port=m.port,
        options=m.options,
    )  # fmt: skip


def summary(plan: MemberPlan) -> str:
    """One line for `plan`: the path the change takes."""
    if plan.reload:
        return f"reload ({plan.reload})"
    if not plan.changes:
        return "runtime, no reload (files only)"
    return "runtime, no reload: " + ", ".join(c.describe() for c in plan.changes)
