"""A host's steps when its change only touches pool members: runtime, no reload (issue 12).

Pure. members.py decides; here the reload path's steps become: the member changes through the
runtime interface (one Runtime step, which carries the reload path as its fallback), then the
new files written and renamed into place with no reload, then the usual confirm. The files on
disk are what the front end runs, so a restart comes up the same and the next plan is empty.
"""

from __future__ import annotations

from collections.abc import Sequence

from clusterctl.drivers import driver_for
from clusterctl.drivers.control import ControlRefused, Live
from clusterctl.facts import LiveFile
from clusterctl.members import MemberPlan, decide
from clusterctl.model.schema import Frontend
from clusterctl.plan_build import confirm, put, temp_path
from clusterctl.plan_steps import RunScript, Runtime, Step
from clusterctl.render import File, HostFiles


def member_plan(
    fe: Frontend,
    changes: Sequence[tuple[str, File, LiveFile]],
    deletions: Sequence[str],
    pending: bool,
) -> MemberPlan:
    """The path a host's change takes: `changes` (path, new file, live file) it writes."""
    if deletions:
        return MemberPlan(reload=f"{deletions[0]} is no longer rendered")
    if pending:
        return MemberPlan(reload="an earlier apply left its reload pending")
    files = {
        path: (old.content if old.exists else None, new.content)
        for path, new, old in changes
        if not old.exists or old.sha256 != new.sha256
    }
    if not files:  # modes and owners only: the reload path, as before
        return MemberPlan(reload="only file modes or owners change")
    return decide(fe, files)


def runtime_steps(
    fe: Frontend,
    member: MemberPlan,
    *,
    run_id: str,
    pending_marker: str,
    changes: Sequence[tuple[str, File]],
    temps: Sequence[str],
    live: HostFiles,
    fallback: tuple[Step, ...],
    fallback_rollback: tuple[Step, ...],
) -> tuple[Step, ...]:
    driver = driver_for(fe.kind)
    try:  # what can be told without the live view (HAProxy's socket commands)
        commands = tuple(driver.change_commands(fe, Live(()), list(member.changes)))
    except ControlRefused:
        commands = ()
    steps: list[Step] = []
    if temps:
        steps.append(RunScript(phase="clean up", script="rm-files", args=tuple(temps)))
    if member.changes:
        steps.append(
            Runtime(
                changes=member.changes,
                read=tuple(driver.read_commands(fe)),
                commands=commands,
                fallback=fallback,
                fallback_rollback=fallback_rollback,
            )
        )
    temps_new = tuple(temp_path(p) for p, _ in changes)
    steps += [put("upload", temp_path(p), f) for p, f in changes]
    if temps_new:
        steps.append(RunScript(phase="upload", script="rm-files", args=temps_new, when="failed"))
    swap = tuple(f"N:{p}" for p, _ in changes)
    steps.append(
        RunScript(
            phase="rename", script="swap", args=(pending_marker, run_id, *swap), fails_as="rename"
        )
    )
    steps.append(confirm(fe, live))
    return tuple(steps)
