"""Execute a host's plan: run its steps (plan_steps) in order, or its rollback steps.

This module decides nothing about what to run: `plan` did (plan_build.py), and the steps are
what `plan --output json` shows. Every remote command is a fixed script of clusterctl's own
(execute/scripts.py) with the variable parts passed as arguments ($1, $2, ...), so no inventory
value is ever spliced into a remote shell. On any failure after files were swapped, the
rollback steps put the backups back and reload again, and the host is reported failed with the
validator's or the probe's own words. A host ends with the old or the new config, valid and
loaded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from clusterctl.drivers.control import ControlRefused
from clusterctl.errors import ClusterctlError
from clusterctl.execute.admin_views import run_changes
from clusterctl.execute.chain import Part, sh_parts
from clusterctl.execute.gather import network_now
from clusterctl.execute.reload import reload_and_confirm, server_pids
from clusterctl.execute.scripts import SCRIPTS
from clusterctl.execute.ssh import Remote, Result
from clusterctl.execute.steps import StepFailed, checkpoint
from clusterctl.execute.steps import check as _check
from clusterctl.model.schema import Frontend, Inventory
from clusterctl.plan import HostPlan
from clusterctl.plan_build import backup_dir
from clusterctl.plan_steps import (
    FAULT_POINTS,
    ROLLS_BACK,
    Confirm,
    Phase,
    Preflight,
    Probe,
    PutFile,
    Reload,
    RunScript,
    Runtime,
    Step,
    When,
)
from clusterctl.preflight import problems
from clusterctl.render import File

__all__ = ["HostResult", "StepFailed", "apply_host", "checkpoint", "reload_and_confirm"]
__all__ += ["run_step", "server_pids", "write_file"]

Status = Literal["changed", "unchanged", "failed", "rolled back"]


@dataclass(frozen=True)
class HostResult:
    host: str
    status: Status
    message: str
    seconds: float


def write_file(remote: Remote, path: str, f: File) -> None:
    _put(remote, path, f.mode, f"{f.owner}:{f.group}", f.content)


def _put(remote: Remote, path: str, mode: int, owner: str, content: bytes) -> None:
    res = remote.sh(SCRIPTS["write"], path, f"{mode:o}", owner, stdin=content, step="upload")
    _check(res, f"upload {path}")


def _validator_words(result: Result) -> str:
    """A validator's words without its banner lines (haproxy -c prints two [NOTICE]s, its
    version and path, before the alerts that matter; they would push those out of the report)."""
    text = result.err.strip() or result.out.strip()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("[NOTICE]")]
    return " | ".join(lines)[:1000] or result.words()


def run_step(remote: Remote, fe: Frontend, step: Step) -> None:
    """Run one step on the host; a StepFailed (or another ClusterctlError) when it fails.

    Remote commands are labelled with their phase (a lost connection names it), as before.
    """
    match step:
        case PutFile():
            _put(remote, step.path, step.mode, f"{step.owner}:{step.group}", step.content)
        case RunScript():
            _judge(step, remote.sh(SCRIPTS[step.script], *step.argv, step=step.phase))
        case Preflight():
            net, missing = network_now(remote, fe, list(step.dirs))
            found = problems(step.kind, step.config, net)
            found += [
                f"{d} does not exist on the host (the config writes into it)" for d in missing
            ]
            if found:
                raise StepFailed("preflight", "; ".join(found))
        case Reload():
            reload_and_confirm(remote, fe, ports=frozenset(step.ports))
        case Probe():
            res = remote.sh(SCRIPTS["probe"], *step.argv, step="probe")
            if not res.ok or res.out.strip() in ("", "000"):
                raise StepFailed("probe", f"{step.url} does not answer: {res.words()}")
        case Confirm():
            _check(remote.sh(SCRIPTS["confirm"], *step.argv, step="confirm"), "confirm")
        case Runtime():
            run_changes(remote, fe, list(step.changes))


def _judge(step: PutFile | RunScript, res: Result) -> None:
    """What a file's write or a script's exit status means for the step: raise if it failed."""
    if isinstance(step, PutFile):
        _check(res, f"upload {step.path}")
    elif step.fails_as is not None and not res.ok:
        words = _validator_words(res) if step.validator else res.words()
        raise StepFailed(step.fails_as, words.replace(step.hide, "") if step.hide else words)


def _chains(steps: Sequence[Step]) -> list[list[Step]]:
    """Consecutive writes and scripts together (one remote command each group, execute/chain.py);
    every other step alone. Only a phase's own steps: fault points lie between phases."""
    out: list[list[Step]] = []
    for step in steps:
        if (
            isinstance(step, PutFile | RunScript)
            and out
            and isinstance(out[-1][-1], PutFile | RunScript)
        ):
            out[-1].append(step)
        else:
            out.append([step])
    return out


def _run_chain(
    remote: Remote,
    group: Sequence[Step],
    cleanups: Sequence[Step] = (),
    ran: list[Step] | None = None,
) -> None:
    """The group in one remote command, then the phase's `always` cleanups in the same one
    (they run whatever the group did); those that ran are added to `ran`."""
    steps = [s for s in group if isinstance(s, PutFile | RunScript)]
    parts = [
        Part(SCRIPTS[s.script], s.argv, stdin=s.content, stop=True)
        if isinstance(s, PutFile)
        else Part(SCRIPTS[s.script], s.argv, stop=s.fails_as is not None)
        for s in steps
    ]
    tail = [s for s in cleanups if isinstance(s, RunScript)]
    parts += [Part(SCRIPTS[s.script], s.argv, stop=False, always=True) for s in tail]
    label = "upload" if isinstance(steps[0], PutFile) else steps[0].phase
    got, broken = sh_parts(remote, parts, step=label)
    everything = [*steps, *tail]
    if ran is not None and not broken:
        ran += [s for i, s in enumerate(everything) if i >= len(steps) and i in got]
    for i, step in enumerate(everything):
        if i in got:
            _judge(step, got[i])
    if broken:  # the chain's shell itself ended, in a step that may fail
        last = got[max(got)]
        raise StepFailed(steps[0].phase, f"the remote commands ended early: {last.words()}")


def _when(step: Step) -> When:
    return step.when if isinstance(step, RunScript) else "ok"


def run_phase(remote: Remote, fe: Frontend, steps: Sequence[Step]) -> None:
    """A phase's steps in order; then, on failure, its `failed` cleanups, and `always` ones
    whatever happened. A cleanup that fails never hides the failure that called it.

    A phase without `failed` cleanups sends its `always` scripts with its last writes and
    scripts (validate's staging folder goes in validate's own command): one round trip less.
    """
    groups = _chains([s for s in steps if _when(s) == "ok"])
    always = [s for s in steps if _when(s) == "always"]
    fold = (
        bool(groups and always)
        and isinstance(groups[-1][-1], PutFile | RunScript)
        and all(isinstance(s, RunScript) for s in always)
        and not any(_when(s) == "failed" for s in steps)
    )
    cleaned: list[Step] = []  # the `always` cleanups that ran in the last group's command
    try:
        for n, group in enumerate(groups):
            last = fold and n == len(groups) - 1
            if len(group) == 1 and not last:
                run_step(remote, fe, group[0])
            else:
                _run_chain(remote, group, always if last else (), cleaned)
    except BaseException as exc:
        for step in steps:
            w = _when(step)
            again = w == "always" and step not in cleaned
            if again or (w == "failed" and isinstance(exc, ClusterctlError)):
                with contextlib.suppress(ClusterctlError):
                    run_step(remote, fe, step)
        raise
    for step in always:
        if step not in cleaned:
            run_step(remote, fe, step)


def phases(steps: Sequence[Step]) -> list[tuple[Phase, list[Step]]]:
    """Consecutive steps of one phase, together, in order."""
    out: list[tuple[Phase, list[Step]]] = []
    for step in steps:
        if out and out[-1][0] == step.phase:
            out[-1][1].append(step)
        else:
            out.append((step.phase, [step]))
    return out


def apply_host(remote: Remote, inv: Inventory, fe: Frontend, plan: HostPlan) -> HostResult:
    """Bring one front end to its planned state; never leaves it half-done.

    `inv` is what the plan was made from; the plan's steps carry everything that is run.
    """
    started = time.monotonic()
    if plan.refused:  # the new config would not start here: touch nothing
        return HostResult(fe.name, "failed", "preflight: " + "; ".join(plan.refused), 0.0)
    if not plan.needs_work:
        return HostResult(fe.name, "unchanged", "", 0.0)
    fe_now = replace(fe, version=plan.version) if fe.version is None and plan.version else fe
    for phase, steps in phases(plan.steps):
        try:
            run_phase(remote, fe_now, steps)
        except ControlRefused as refused:
            if not isinstance(steps[0], Runtime):
                raise
            # The runtime interface would not (or could not) make the change: reload instead.
            back = replace(plan, steps=steps[0].fallback, rollback=steps[0].fallback_rollback)
            res = apply_host(remote, inv, fe, back)
            why = f"runtime change refused ({refused}); reloaded instead"
            return replace(res, message=f"{why}: {res.message}" if res.message else why)
        except StepFailed as failure:
            if phase not in ROLLS_BACK or not plan.rollback:
                raise
            return _roll_back(remote, fe_now, plan, failure, started)
        if phase in FAULT_POINTS:
            checkpoint(phase)
    return HostResult(fe.name, "changed", _done(plan), _since(started))


def _done(plan: HostPlan) -> str:
    runtime = [s for s in plan.steps if isinstance(s, Runtime)]
    if plan.takes.startswith("runtime"):
        what = ", ".join(runtime[0].argv) if runtime else "files only"
        return f"{len(plan.changes)} file(s) updated, no reload (runtime: {what})"
    if plan.changes or plan.deletions:
        parts = [f"{len(plan.changes)} file(s) updated"] if plan.changes else []
        parts += [f"{len(plan.deletions)} removed"] if plan.deletions else []
        return f"{', '.join(parts)}, reloaded"
    if plan.pending_reload:
        return "finished a pending reload"
    return f"removed {len(plan.stale_temps)} left-over temporary file(s)"


def _roll_back(
    remote: Remote, fe: Frontend, plan: HostPlan, failure: StepFailed, started: float
) -> HostResult:
    failed_at = time.monotonic()
    try:
        run_phase(remote, fe, plan.rollback)
    except ClusterctlError as undo:
        # Never hide the first failure behind the second one; the backup stays for a human.
        return HostResult(
            fe.name,
            "failed",
            f"{failure}; then the rollback failed too: {undo} (the previous files are in "
            f"{backup_dir(fe.name)} on the host)",
            _since(started),
        )
    back = time.monotonic() - failed_at
    return HostResult(
        fe.name,
        "rolled back",
        f"{failure}; the previous config was back and serving {back:.1f} s later",
        _since(started),
    )


def _since(t: float) -> float:
    return round(time.monotonic() - t, 2)
