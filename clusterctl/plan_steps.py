"""A host's plan as steps: what apply runs there, in order, and the steps that undo it. Pure data.

`plan` builds them, `plan --output json` prints them, `execute/apply.py` interprets them and
knows nothing of its own about what to run. Every remote command is a fixed script of
clusterctl's own, named here and written in `execute/scripts.py`, with the variable parts as
its arguments ($1, $2, ...): no inventory text is ever spliced into a shell.

Steps run by phase. A phase's steps run in order; a failure stops the phase, then its cleanup
steps run (`when="failed"` only then, `when="always"` whatever happened, as a `finally`) and the
failure goes on up. After the phases in FAULT_POINTS a test can kill apply (`checkpoint`). A
step that fails in a phase of ROLLS_BACK, after the live files were swapped, runs the host's
rollback steps instead: the previous files go back and are loaded again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from clusterctl.drivers.control import Change, Command

Phase = Literal[
    "clean up",
    "preflight",
    "validate",
    "upload",
    "backup",
    "rename",
    "reload",
    "probe",
    "confirm",
    "rollback",
    "runtime",
]
# Where CLUSTERCTL_FAULT_EXIT_AFTER may kill apply: after each phase that leaves a new state.
FAULT_POINTS: tuple[Phase, ...] = ("validate", "upload", "backup", "rename", "reload", "probe")
# A step failing here has the new files live: the rollback puts the previous ones back.
ROLLS_BACK: frozenset[Phase] = frozenset({"reload", "probe"})

# The fixed scripts (execute/scripts.py holds their text; a test checks both lists agree).
ScriptName = Literal[
    "rm-files",  # rm -f every argument
    "rm-tree",  # rm -rf $1
    "write",  # $1 path, $2 mode, $3 owner:group; content on stdin
    "mkdir",  # mkdir -p every argument
    "exec",  # run the argument list as a command (a validator's argv)
    "tls-pair",  # $1 certificate, $2 key: the key is the certificate's
    "backup",  # $1 backup root, then targets
    "swap",  # $1 pending marker, $2 run id, then N:target (renamed in) or D:target (removed)
    "confirm",  # $1 manifest, $2 backup, $3 staging root, $4 pending marker, then installed paths
    "restore",  # $1 backup root, then targets
    "forget",  # $1 pending marker, $2 backup root
    "probe",  # $1 scheme, $2 address, $3 port
    "network",  # $1 pid file, then folders: the bind preflight's facts now
    "nonlocal-bind",  # ipv4|ipv6 each: non-local binding on (a virtual address it may not hold)
]

When = Literal["ok", "failed", "always"]
Scheme = Literal["http", "https", "tcp"]


@dataclass(frozen=True, kw_only=True)
class PutFile:
    """Write one file whole, private until it has its final mode and owner. A secret's content
    is never shown: its repr and JSON carry only the digest."""

    phase: Phase
    path: str
    mode: int
    owner: str
    group: str
    secret: bool
    content: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def script(self) -> ScriptName:
        return "write"

    @property
    def argv(self) -> tuple[str, ...]:
        return (self.path, f"{self.mode:o}", f"{self.owner}:{self.group}")


@dataclass(frozen=True, kw_only=True)
class RunScript:
    """Run one of clusterctl's fixed scripts with these arguments.

    `fails_as`: what the failure is called when the script exits non-zero (None: its exit status
    does not matter, as for a cleanup). `hide`: text taken out of the failure's words (the staging
    root, which means nothing to the operator). `validator`: the words are a validator's, whose
    banner lines are dropped. `when`: see the module's docstring.
    """

    phase: Phase
    script: ScriptName
    args: tuple[str, ...] = ()
    fails_as: str | None = None
    hide: str = ""
    validator: bool = False
    when: When = "ok"

    @property
    def argv(self) -> tuple[str, ...]:
        return self.args


@dataclass(frozen=True, kw_only=True)
class Preflight:
    """The bind preflight once more, on the host as it is this moment (the plan may be minutes
    old), and the folders the new config writes into must exist on the host itself."""

    phase: Phase = "preflight"
    kind: str
    pid_file: str
    dirs: tuple[str, ...]
    config: str = field(repr=False)  # the new config's text: its binds are what is checked

    @property
    def script(self) -> ScriptName:
        return "network"

    @property
    def argv(self) -> tuple[str, ...]:
        return (self.pid_file, *self.dirs)


@dataclass(frozen=True, kw_only=True)
class Reload:
    """Reload gracefully (start when not running) and prove new workers under a live master.
    `ports`: those the new config listens on, whose other holders a failure names."""

    phase: Phase
    ports: tuple[int, ...] = ()
    reload: tuple[str, ...]  # what runs when the server is up (shown; the driver's own argv)
    start: tuple[str, ...]  # what runs when it is not

    @property
    def argv(self) -> tuple[str, ...]:
        return self.reload


@dataclass(frozen=True, kw_only=True)
class Probe:
    """The front end answers on one listener, asked from the host itself."""

    phase: Phase = "probe"
    scheme: Scheme
    address: str  # as the URL writes it: an IPv6 address in brackets
    port: int

    @property
    def script(self) -> ScriptName:
        return "probe"

    @property
    def argv(self) -> tuple[str, ...]:
        return (self.scheme, self.address, str(self.port))

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}:{self.port}/"


@dataclass(frozen=True, kw_only=True)
class Confirm:
    """The apply is done: record what is installed (the manifest prune compares with), drop the
    backup and staging tree (old and new keys among them), and the pending marker last."""

    phase: Phase = "confirm"
    manifest: str
    backup: str
    stage: str
    pending: str
    installed: tuple[str, ...]

    @property
    def script(self) -> ScriptName:
        return "confirm"

    @property
    def argv(self) -> tuple[str, ...]:
        return (self.manifest, self.backup, self.stage, self.pending, *self.installed)


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """Pool member changes made through the front end's runtime interface, with no reload
    (issue 12; drivers/control.py): apply reads the live view (`read`), runs the driver's
    commands for `changes` and checks every answer before the next. `commands`: those the
    driver can tell before the live view is read, for the plan to show. When the interface
    refuses, apply takes `fallback` (and `fallback_rollback`) instead: the reload path."""

    phase: Phase = "runtime"
    changes: tuple[Change, ...]
    read: tuple[Command, ...] = ()
    commands: tuple[Command, ...] = ()
    fallback: tuple[Step, ...] = field(default=(), repr=False)
    fallback_rollback: tuple[Step, ...] = field(default=(), repr=False)

    @property
    def argv(self) -> tuple[str, ...]:
        return tuple(c.describe() for c in self.changes)


# The closed set apply dispatches on (a `match` there; mypy flags a kind it does not handle).
# A new kind of step (a runtime change without a reload, from drivers/control.py's Command)
# is one more dataclass here, one more case in execute/apply.py's `run_step`, and its JSON.
Step = PutFile | RunScript | Preflight | Reload | Probe | Confirm | Runtime


def step_json(step: Step) -> dict[str, Any]:
    """What a step runs, for `plan --output json`: secrets by digest only, never content."""
    out: dict[str, Any] = {"phase": step.phase}
    match step:
        case PutFile():
            out |= {"step": "put", "script": step.script, "argv": list(step.argv)}
            out |= {"stdin": "sha256:" + step.sha256, "secret": step.secret}
        case RunScript():
            out |= {"step": "run", "script": step.script, "argv": list(step.argv)}
            if step.fails_as is None:
                out["checked"] = False
            if step.when != "ok":
                out["when"] = step.when
        case Preflight():
            out |= {"step": "preflight", "script": step.script, "argv": list(step.argv)}
        case Reload():
            out |= {"step": "reload", "argv": list(step.reload), "start": list(step.start)}
            out["ports"] = list(step.ports)
        case Probe():
            out |= {"step": "probe", "script": step.script, "argv": list(step.argv)}
        case Confirm():
            out |= {"step": "confirm", "script": step.script, "argv": list(step.argv)}
        case Runtime():
            out |= {"step": "runtime", "changes": list(step.argv)}
            out["read"] = [{"argv": list(c.argv), "what": c.what} for c in step.read]
            out["commands"] = [{"argv": list(c.argv), "what": c.what} for c in step.commands]
            out["fallback"] = [step_json(s) for s in step.fallback]
    return out


def describe(step: Step) -> str:
    """One line for a text listing (`plan --steps`); a secret is named by its digest."""
    match step:
        case PutFile():
            what = "secret, " if step.secret else ""
            return f"put {step.path} (mode {step.mode:04o}, {what}sha256:{step.sha256[:12]})"
        case Reload():
            return f"reload ({' '.join(step.reload)})"
        case Probe():
            return f"probe {step.url}"
        case Runtime():
            return f"runtime, no reload: {', '.join(step.argv)}"
        case _:
            return f"{step.script} {' '.join(step.argv)}".rstrip()


def listing(host: str, steps: Sequence[Step], rollback: Sequence[Step]) -> list[str]:
    """`plan --steps`: a host's steps and rollback, one line each (secrets by digest)."""
    if not steps:
        return []
    lines = [f"{host}: steps:", *(f"  {s.phase}: {describe(s)}" for s in steps)]
    if rollback:
        lines.append(f"{host}: if the reload or a probe fails:")
        lines += [f"  {s.phase}: {describe(s)}" for s in rollback]
    return lines
