"""A kind's runtime control as data: what to run on the host, and what its answers mean.

Nothing here does I/O. A driver builds `Command`s (an argv run without a shell, with an
optional stdin that never appears in argv) and parses their output into the one `ServerView`
type every kind shares. `execute/admin.py` is the only place that runs them:

    read = driver.read_commands(fe)              # the servers' live view (and any token)
    live = driver.parse_live(fe, outputs)        # -> Live: views + what later commands need
    cmds = driver.change_commands(fe, live, changes)   # set state / weight, add / remove
    driver.check_change(fe, changes, outputs)    # raises ControlRefused with the server's words

A kind whose members can only change by re-rendering its config has no change commands
(`Driver.runtime_changes` is empty) and is changed by plan-and-apply instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from clusterctl.errors import ControlRefused as ControlRefused

AdminState = Literal["ready", "drain", "maint"]
ViewState = Literal["ready", "drain", "maint", "down"]
Health = Literal["up", "down", "unknown"]
# What a change to pool members can be, by the runtime path each kind offers.
ChangeKind = Literal["state", "weight", "add", "remove"]
ALL_CHANGES: frozenset[ChangeKind] = frozenset({"state", "weight", "add", "remove"})


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    # Sent on standard input: request bodies, tokens, anything that must not be in argv.
    stdin: bytes = b""
    # What it does, for plan output and errors ("set server web/app1 state drain").
    what: str = ""
    # Run again (every half second, for at most retry_for seconds) while its output contains
    # this: a removal the server refuses until the member's last connection has closed.
    retry_while: str = ""
    retry_for: float = 0.0


@dataclass(frozen=True)
class ServerView:
    """One server in one pool as one front end sees it."""

    frontend: str
    pool: str
    server: str
    state: ViewState
    health: Health
    sessions: int | None  # active requests/sessions; None when the kind cannot tell
    weight: int | None = None


@dataclass(frozen=True)
class Live:
    """A parsed live view, with whatever the kind's change commands need from it (a nonce)."""

    views: tuple[ServerView, ...]
    tokens: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """One member change in one pool: its admin state, its weight, or its presence."""

    kind: ChangeKind
    pool: str
    server: str
    state: AdminState | None = None
    weight: int | None = None
    address: str = ""
    port: int = 0
    # An added member's options as its kind's config line renders them.
    options: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "state":
            return f"{self.pool}/{self.server} state {self.state}"
        if self.kind == "weight":
            return f"{self.pool}/{self.server} weight {self.weight}"
        if self.kind == "add":
            return f"add {self.pool}/{self.server}"
        return f"remove {self.pool}/{self.server}"


@dataclass(frozen=True)
class Member:
    """One pool member as a kind's own config file renders it (drivers parse their files)."""

    pool: str
    name: str
    address: str
    port: int
    state: AdminState
    weight: int
    # Everything else the member line says, in order: a difference here is no runtime change.
    options: tuple[str, ...] = ()
    line: str = ""


@dataclass(frozen=True)
class PoolMembers:
    """A pool's members in a config file, and which member changes the pool takes at run time."""

    pool: str
    members: tuple[Member, ...]
    runtime: frozenset[ChangeKind] = frozenset()
    # Why a change kind missing from `runtime` needs a reload, for plan output.
    why: str = ""

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)
