"""Plan: a pure function from rendered files and gathered facts to what apply will do.

`clusterctl plan` prints it and stops; `clusterctl apply` prints the same plan and executes it.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
from dataclasses import dataclass, field
from typing import Any

from clusterctl.facts import HostFacts, LiveFile
from clusterctl.model.schema import Frontend, Inventory
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
class HostPlan:
    host: str
    kind: str
    files: tuple[FileChange, ...] = ()
    pending_reload: bool = False
    stale_temps: tuple[str, ...] = ()
    version: str | None = None
    error: str | None = None
    rendered: HostFiles = field(default_factory=dict, compare=False, repr=False)

    @property
    def changes(self) -> tuple[FileChange, ...]:
        return tuple(f for f in self.files if f.changed)

    @property
    def needs_work(self) -> bool:
        return bool(self.changes or self.pending_reload or self.stale_temps)

    @property
    def status(self) -> str:
        if self.error:
            return "unreachable"
        if self.changes:
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
        return [h for h in self.hosts if h.needs_work and not h.error]

    @property
    def failed(self) -> list[HostPlan]:
        return [h for h in self.hosts if h.error]

    def summary(self) -> str:
        n_change = len(self.changed)
        n_same = len([h for h in self.hosts if not h.needs_work and not h.error])
        parts = [
            f"{n_change} host{'s' if n_change != 1 else ''} to change",
            f"{n_same} unchanged",
        ]
        if self.failed:
            parts.append(f"{len(self.failed)} unreachable")
        return ", ".join(parts)


def secret_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def effective_frontend(fe: Frontend, facts: HostFacts | None) -> Frontend:
    """Render for the version the host runs when the inventory names none."""
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


def plan_host(inv: Inventory, fe: Frontend, facts: HostFacts) -> HostPlan:
    fe_now = effective_frontend(fe, facts)
    rendered = render_frontend(inv, fe_now)
    changes = tuple(
        file_change(path, f, facts.files.get(path, LiveFile(path, False)))
        for path, f in rendered.items()
    )
    return HostPlan(
        host=fe.name,
        kind=fe.kind,
        files=changes,
        pending_reload=facts.pending is not None,
        stale_temps=facts.temps,
        version=fe_now.version,
        rendered=rendered,
    )


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
                ],
            }
            for h in plan.hosts
        ],
    }
