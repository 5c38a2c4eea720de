"""Plan: a pure function from rendered files and gathered facts to what apply will do.

`clusterctl plan` prints it and stops; `clusterctl apply` prints the same plan and executes it:
each host's plan holds the ordered steps apply runs there and the rollback steps that undo them
(plan_steps.py; built by plan_build.py).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import posixpath
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from clusterctl.drivers import driver_for
from clusterctl.facts import HostFacts, LiveFile, Network, pending_path
from clusterctl.members import summary
from clusterctl.model import vrrp
from clusterctl.model.schema import Frontend, Inventory
from clusterctl.plan_build import host_steps, stage_root
from clusterctl.plan_runtime import member_plan, runtime_steps
from clusterctl.plan_steps import Step, step_json
from clusterctl.preflight import problems
from clusterctl.render import File, HostFiles, render_frontend


@dataclass(frozen=True)
class FileChange:
    path: str
    action: str  # create | update | mode | unchanged
    new: File
    old: LiveFile
    diff: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.action != "unchanged"


@dataclass(frozen=True)
class Deletion:
    """A file an earlier apply installed that the inventory no longer renders: apply removes it
    (backed up first, put back if the reload fails)."""

    path: str
    old: LiveFile

    @property
    def diff(self) -> tuple[str, ...]:
        return (
            f"--- {self.path} (live)",
            "+++ /dev/null",
            f"-(sha256:{self.old.sha256}; installed by clusterctl, no longer rendered)",
        )


PlanStatus = Literal["unreachable", "refused", "change", "reload pending", "clean up", "unchanged"]


@dataclass(frozen=True)
class HostPlan:
    host: str
    kind: str
    files: tuple[FileChange, ...] = ()
    pending_reload: bool = False
    stale_temps: tuple[str, ...] = ()
    version: str | None = None
    error: str | None = None
    rendered: HostFiles = field(default_factory=dict, compare=False, repr=False)
    deletions: tuple[Deletion, ...] = ()
    # Why the new config would not start on this host (bind preflight): nothing is changed.
    refused: tuple[str, ...] = ()
    run_id: str = ""
    # What apply runs on the host, in order, and what undoes it once the files are swapped;
    # both empty when there is nothing to do or it is refused.
    steps: tuple[Step, ...] = field(default=(), compare=False, repr=False)
    rollback: tuple[Step, ...] = field(default=(), compare=False, repr=False)
    # The way a change goes live (issue 12): "runtime, no reload: ..." or "reload (why)".
    takes: str = ""

    @property
    def changes(self) -> tuple[FileChange, ...]:
        return tuple(f for f in self.files if f.changed)

    @property
    def needs_work(self) -> bool:
        return bool(self.changes or self.deletions or self.pending_reload or self.stale_temps)

    @property
    def status(self) -> PlanStatus:
        if self.error:
            return "unreachable"
        if self.refused:
            return "refused"
        if self.changes or self.deletions:
            return "change"
        if self.pending_reload:
            return "reload pending"
        if self.stale_temps:
            return "clean up"
        return "unchanged"


@dataclass(frozen=True)
class Plan:
    hosts: tuple[HostPlan, ...]

    @property
    def changed(self) -> list[HostPlan]:
        return [h for h in self.hosts if h.needs_work and not h.error and not h.refused]

    @property
    def failed(self) -> list[HostPlan]:
        return [h for h in self.hosts if h.error or h.refused]

    def summary(self) -> str:
        n_change = len(self.changed)
        n_same = len([h for h in self.hosts if not h.needs_work and not h.error])
        parts = [
            f"{n_change} host{'s' if n_change != 1 else ''} to change",
            f"{n_same} unchanged",
        ]
        unreachable = [h for h in self.hosts if h.error]
        refused = [h for h in self.hosts if h.refused and not h.error]
        if unreachable:
            parts.append(f"{len(unreachable)} unreachable")
        if refused:
            parts.append(f"{len(refused)} refused")
        return ", ".join(parts)


def secret_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def effective_frontend(fe: Frontend, facts: HostFacts | None) -> Frontend:
    """Render for the version the host runs when the inventory names none."""
    if facts is not None and facts.present is not None:
        # And for the modules the host has (nginx's Lua balancer, when it is installed).
        fe = dataclasses.replace(fe, present=facts.present)
    if fe.version is None and facts is not None and facts.version:
        return dataclasses.replace(fe, version=facts.version)
    return fe


def _diff(path: str, new: File, old: LiveFile) -> tuple[str, ...]:
    if new.secret:
        before = f"(secret, {(old.sha256 and 'sha256:' + old.sha256) or 'absent'})"
        return (
            f"--- {path}",
            f"+++ {path}",
            f"-{before}",
            f"+(secret, {secret_digest(new.content)})",
        )
    old_text = (old.content or b"").decode("utf-8", "replace").splitlines()
    new_text = new.content.decode("utf-8", "replace").splitlines()
    return tuple(
        difflib.unified_diff(
            old_text,
            new_text,
            fromfile=f"{path} (live)" if old.exists else "/dev/null",
            tofile=f"{path} (clusterctl)",
            lineterm="",
        )
    )


def file_change(path: str, new: File, old: LiveFile) -> FileChange:
    if not old.exists:
        return FileChange(path, "create", new, old, _diff(path, new, old))
    if old.sha256 != new.sha256:
        return FileChange(path, "update", new, old, _diff(path, new, old))
    if old.mode != new.mode or old.owner != new.owner or old.group != new.group:
        note = (
            f"mode/owner {old.mode:o} {old.owner}:{old.group} -> {new.mode:o} {new.owner}:{new.group}",
        )
        return FileChange(path, "mode", new, old, note)
    return FileChange(path, "unchanged", new, old)


def prunable(fe: Frontend, path: str) -> bool:
    """Whether a manifest entry may be deleted: a plain absolute path inside the folders the
    kind's files live in (the manifest is only a record; it never widens what apply touches)."""
    if not path.startswith("/") or posixpath.normpath(path) != path or "\n" in path:
        return False
    p = driver_for(fe.kind).paths(fe)
    roots = {posixpath.dirname(p.config), p.tls_dir}
    return any(path.startswith(r.rstrip("/") + "/") for r in roots if r)


def deletions(fe: Frontend, rendered: HostFiles, facts: HostFacts) -> tuple[Deletion, ...]:
    """Files the last apply installed, still on the host, that are no longer rendered."""
    out = []
    for path in facts.managed or ():
        live = facts.files.get(path)
        if path in rendered or live is None or not live.exists or not prunable(fe, path):
            continue
        out.append(Deletion(path, live))
    return tuple(sorted(out, key=lambda d: d.path))


def new_run_id() -> str:
    """This run's name on the hosts: its staging folder and the pending marker's content."""
    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)


@dataclass(frozen=True)
class Rendered:
    """A host's files rendered once per command, for both places they go.

    The templates are rendered a single time, with every path under the run's staging root
    (what the validators check on the host), and the live files are that text with the root
    taken out: the root only ever prefixes paths (drivers' `view`), so the result is byte for
    byte what a render without a root gives (tests/unit/test_plan_cases.py proves it for every
    example inventory). The root is a safe sentinel: it ends in the run id, whose random part
    no inventory can hold in advance. Secret files are never edited: they come from the local
    TLS files, which a root never enters.
    """

    fe: Frontend
    run_id: str
    root: str
    staged: HostFiles
    live: HostFiles


def render_host(inv: Inventory, fe: Frontend, run_id: str | None = None) -> Rendered:
    run_id = run_id or new_run_id()
    root = stage_root(fe.name, run_id)
    staged = render_frontend(inv, fe, root=root)
    sentinel = root.encode()
    live = {
        path: f if f.secret else dataclasses.replace(f, content=f.content.replace(sentinel, b""))
        for path, f in staged.items()
    }
    return Rendered(fe, run_id, root, staged, live)


def nonlocal_planned(inv: Inventory, fe: Frontend, network: Network) -> Network:
    """The network the new config meets: for a virtual address of its groups that the
    member's services bind, the plan turns non-local binding on first (plan_build)."""
    families = vrrp.nonlocal_families(inv, fe.name)
    v4, v6 = network.nonlocal_bind
    wanted = (v4 or "ipv4" in families, v6 or "ipv6" in families)
    return (
        network
        if wanted == network.nonlocal_bind
        else dataclasses.replace(network, nonlocal_bind=wanted)
    )


def plan_host(
    inv: Inventory,
    fe: Frontend,
    facts: HostFacts,
    run_id: str | None = None,
    rendered_as: Rendered | None = None,
) -> HostPlan:
    """`rendered_as`: the render the facts were gathered for (with the run's staging root), the
    plan's own when the facts change nothing it depends on. The host's version (when the
    inventory names none) and the modules it has (nginx's Lua) decide the bytes and are known
    only now: then this one render more, and the first only named the paths to read."""
    fe_now = effective_frontend(fe, facts)
    if rendered_as is None or rendered_as.fe != fe_now:
        rendered_as = render_host(
            inv, fe_now, run_id or (rendered_as.run_id if rendered_as else None)
        )
    rendered = rendered_as.live
    changes = tuple(
        file_change(path, f, facts.files.get(path, LiveFile(path, False)))
        for path, f in rendered.items()
    )
    gone = deletions(fe_now, rendered, facts)
    refused: tuple[str, ...] = ()
    if gone or any(c.changed for c in changes):  # nothing reloads, nothing can fail to start
        config = rendered.get(driver_for(fe.kind).paths(fe_now).config)
        if config is not None:
            text = config.content.decode("utf-8", "replace")
            refused = tuple(problems(fe.kind, text, nonlocal_planned(inv, fe, facts.network)))
        refused += tuple(driver_for(fe.kind).refusals(inv, fe_now, facts.network))
    hp = HostPlan(
        host=fe.name,
        kind=fe.kind,
        files=changes,
        pending_reload=facts.pending is not None,
        stale_temps=facts.temps,
        version=fe_now.version,
        rendered=rendered,
        deletions=gone,
        refused=refused,
        run_id=rendered_as.run_id,
    )
    if refused or not hp.needs_work:
        return hp
    steps, rollback = host_steps(
        inv,
        fe_now,
        run_id=rendered_as.run_id,
        root=rendered_as.root,
        staged=rendered_as.staged,
        live=rendered,
        changes=[(c.path, c.new) for c in hp.changes],
        gone=[d.path for d in gone],
        pending=hp.pending_reload,
        temps=hp.stale_temps,
    )
    if not (hp.changes or gone):
        return dataclasses.replace(hp, steps=steps, rollback=rollback)
    changed = [(c.path, c.new, c.old) for c in hp.changes]
    member = member_plan(fe_now, changed, [d.path for d in gone], hp.pending_reload)
    if not member.runtime:
        return dataclasses.replace(hp, steps=steps, rollback=rollback, takes=summary(member))
    runtime = runtime_steps(
        fe_now,
        member,
        run_id=rendered_as.run_id,
        pending_marker=pending_path(fe.name),
        changes=[(c.path, c.new) for c in hp.changes],
        temps=hp.stale_temps,
        live=rendered,
        fallback=steps,
        fallback_rollback=rollback,
    )
    return dataclasses.replace(hp, steps=runtime, takes=summary(member))


def unreachable(fe: Frontend, reason: str) -> HostPlan:
    return HostPlan(host=fe.name, kind=fe.kind, error=reason)


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "summary": plan.summary(),
        "changed": len(plan.changed),
        "hosts": [
            {
                "host": h.host,
                "kind": h.kind,
                "status": h.status,
                "version": h.version,
                "error": h.error,
                "pending_reload": h.pending_reload,
                "stale_temps": list(h.stale_temps),
                "refused": list(h.refused),
                "files": [
                    {
                        "path": c.path,
                        "action": c.action,
                        "mode": f"{c.new.mode:04o}",
                        "secret": c.new.secret,
                        "sha256": c.new.sha256,
                        "diff": list(c.diff),
                    }
                    for c in h.files
                ]
                + [
                    {
                        "path": d.path,
                        "action": "delete",
                        "mode": f"{d.old.mode:04o}",
                        "secret": None,  # its content was never read
                        "sha256": d.old.sha256,
                        "diff": list(d.diff),
                    }
                    for d in h.deletions
                ],
                "run_id": h.run_id or None,
                "takes": h.takes or None,
                "steps": [step_json(s) for s in h.steps],
                "rollback": [step_json(s) for s in h.rollback],
            }
            for h in plan.hosts
        ],
    }
