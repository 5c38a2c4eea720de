"""Saved plans: `plan --out FILE` writes the plan, `apply FILE` applies exactly that plan.

A plan holds no secret (private keys appear by digest only), so a plan file cannot carry the
bytes apply installs. `apply FILE` therefore plans again, from the same inventory and the hosts
as they are now, and goes on only when that plan is the saved one: every host's recorded facts
are the same (each file's checksum, mode and owner, the pending-reload marker, left-over
temporary files, the server version, the files the host's manifest makes apply delete) and so
is every step, the run's own staging folder aside. Anything else refuses the whole apply before
any host is changed, naming each host and what changed, as `terraform apply PLAN` refuses a
stale plan. The format is documented in README ("Saved plans").
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterctl import __version__
from clusterctl.errors import ClusterctlError
from clusterctl.plan import HostPlan, Plan, plan_json

FORMAT = "clusterctl-plan"
FORMAT_VERSION = 1
MAX_PLAN_BYTES = 64 * 1024 * 1024  # a plan holds diffs; far larger is not a plan


def host_facts(h: HostPlan) -> dict[str, Any]:
    """What the plan of one host was made from, as it was on the host."""
    files = {
        c.path: {
            "exists": c.old.exists,
            "sha256": c.old.sha256 or None,
            "mode": f"{c.old.mode:04o}" if c.old.exists else None,
            "owner": c.old.owner or None,
            "group": c.old.group or None,
        }
        for c in h.files
    }
    return {
        "version": h.version,
        "pending_reload": h.pending_reload,
        "stale_temps": sorted(h.stale_temps),
        "files": files,
        # What the manifest of the last apply makes this one delete, with each file's checksum.
        "manifest_deletes": {d.path: d.old.sha256 or None for d in h.deletions},
    }


def _host_entries(plan: Plan) -> list[dict[str, Any]]:
    whole = plan_json(plan)["hosts"]
    return [
        {"host": h.host, "kind": h.kind, "facts": host_facts(h), "plan": entry}
        for h, entry in zip(plan.hosts, whole, strict=True)
    ]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def saved_plan(
    plan: Plan, inventory: Path, cluster: str, limit: list[str] | None
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "clusterctl": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inventory": str(inventory.resolve()),
        "inventory_sha256": _sha256(inventory),
        "cluster": cluster,
        "limit": limit,
        "summary": plan.summary(),
        "hosts": _host_entries(plan),
    }


def write_plan(
    path: Path, plan: Plan, inventory: Path, cluster: str, limit: list[str] | None
) -> None:
    """Write the plan file atomically, readable by its owner only (it holds live configs)."""
    if plan.failed:
        names = ", ".join(h.host for h in plan.failed)
        raise ClusterctlError(f"no plan saved: {names} could not be planned (see above)")
    data = json.dumps(saved_plan(plan, inventory, cluster, limit), indent=2) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ClusterctlError(f"cannot write the plan to {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class SavedPlan:
    path: Path
    data: dict[str, Any]

    @property
    def inventory(self) -> Path:
        return Path(self.data["inventory"])

    @property
    def limit(self) -> list[str] | None:
        limit = self.data.get("limit")
        return [str(x) for x in limit] if isinstance(limit, list) else None

    @property
    def cluster(self) -> str:
        return str(self.data.get("cluster", ""))

    @property
    def hosts(self) -> dict[str, dict[str, Any]]:
        return {str(h["host"]): h for h in self.data["hosts"]}


def read_plan(path: Path) -> SavedPlan:
    """A plan file, checked to be one this clusterctl writes; a one-line error otherwise."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_PLAN_BYTES + 1)
    except FileNotFoundError:
        raise ClusterctlError(
            f"{path}: no such plan file (make one: clusterctl plan -i INVENTORY --out {path})"
        ) from None
    except OSError as exc:
        raise ClusterctlError(f"{path}: cannot read the plan: {exc.strerror}") from None
    if len(raw) > MAX_PLAN_BYTES:
        raise ClusterctlError(f"{path}: larger than 64 MiB, not a plan file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ClusterctlError(f"{path}:1:1: not a plan file (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise ClusterctlError(
            f"{path}:{exc.lineno}:{exc.colno}: not a plan file ({exc.msg}); an inventory "
            "goes with -i"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ClusterctlError(f'{path}: not a clusterctl plan file (no "format": "{FORMAT}")')
    if data.get("format_version") != FORMAT_VERSION:
        raise ClusterctlError(
            f"{path}: plan format {data.get('format_version')!r}, this clusterctl reads "
            f"{FORMAT_VERSION}: make the plan again with this clusterctl"
        )
    hosts = data.get("hosts")
    if (
        not isinstance(data.get("inventory"), str)
        or not isinstance(hosts, list)
        or not all(isinstance(h, dict) and isinstance(h.get("host"), str) for h in hosts)
    ):
        raise ClusterctlError(f"{path}: a plan file without its inventory or hosts")
    return SavedPlan(path, data)


def _steady(entry: dict[str, Any]) -> str:
    """A host's plan as text, with this run's own id (its staging folder, its marker) taken
    out: two plans of the same change differ in nothing else. A file staged for the validator
    holds the staging folder too, so its digest differs from run to run; its content is the
    live file's (whose digest the plan's files carry) with that folder's name in its paths."""
    run_id = entry.get("run_id") or ""

    def steady(step: dict[str, Any]) -> dict[str, Any]:
        staged = run_id and any(run_id in str(a) for a in step.get("argv", ()))
        return {k: v for k, v in step.items() if not (staged and k == "stdin")}

    entry = {
        **entry,
        "steps": [steady(s) for s in entry.get("steps", ())],
        "rollback": [steady(s) for s in entry.get("rollback", ())],
    }
    text = json.dumps(entry, sort_keys=True)
    return text.replace(run_id, "{run}") if run_id else text


def _file_change(path: str, then: dict[str, Any], now: dict[str, Any] | None) -> str:
    if now is None:
        return f"{path} is no longer in the plan"
    if then.get("exists") != now.get("exists"):
        return f"{path} was {'there' if then.get('exists') else 'absent'}, now it is " + (
            "there" if now.get("exists") else "absent"
        )
    if then.get("sha256") != now.get("sha256"):
        return f"{path} changed on the host (sha256 {then.get('sha256')} -> {now.get('sha256')})"
    return f"{path} changed mode or owner on the host"


def _host_changes(name: str, then: dict[str, Any], now: dict[str, Any]) -> list[str]:
    f0, f1 = then.get("facts", {}), now["facts"]
    out = []
    files0, files1 = f0.get("files", {}), f1["files"]
    for path in sorted(set(files0) | set(files1)):
        if path not in files0:
            out.append(f"{name}: {path} is new in the plan (the inventory renders differently)")
        elif files0[path] != files1.get(path):
            out.append(f"{name}: {_file_change(path, files0[path], files1.get(path))}")
    if f0.get("pending_reload") != f1["pending_reload"]:
        state = "has" if f1["pending_reload"] else "no longer has"
        out.append(f"{name}: the host now {state} a reload pending from an interrupted apply")
    if f0.get("manifest_deletes") != f1["manifest_deletes"]:
        out.append(f"{name}: the files its manifest makes apply delete changed")
    if f0.get("stale_temps") != f1["stale_temps"]:
        out.append(f"{name}: its left-over temporary files changed")
    if f0.get("version") != f1["version"]:
        out.append(f"{name}: it runs version {f1['version']}, the plan was for {f0.get('version')}")
    if not out and _steady(then.get("plan", {})) != _steady(now["plan"]):
        out.append(
            f"{name}: its plan differs now (the inventory or clusterctl renders it differently)"
        )
    return out


def stale_reasons(saved: SavedPlan, fresh: Plan) -> list[str]:
    """Every way the plan made now differs from the saved one; empty: it is the same plan."""
    now = {h["host"]: h for h in _host_entries(fresh)}
    then = saved.hosts
    reasons = []
    for name in sorted(set(then) | set(now)):
        if name not in now:
            reasons.append(f"{name} is in the saved plan but not in the inventory's now")
        elif name not in then:
            reasons.append(f"{name} is in the inventory's plan now but not in the saved one")
        elif now[name]["plan"]["status"] in ("unreachable", "refused"):
            reasons.append(
                f"{name}: {now[name]['plan']['status']} now: {now[name]['plan'].get('error') or '; '.join(now[name]['plan'].get('refused') or [])}"
            )
        else:
            reasons += _host_changes(name, then[name], now[name])
    return reasons


def refuse_if_stale(saved: SavedPlan, fresh: Plan, cluster: str) -> None:
    """Refuse, changing nothing, unless the plan made now is the saved one."""
    if saved.cluster and saved.cluster != cluster:
        raise ClusterctlError(
            f"{saved.path} is a plan for cluster {saved.cluster!r}, the inventory is {cluster!r}"
        )
    reasons = stale_reasons(saved, fresh)
    if reasons:
        again = f"clusterctl plan -i {shlex.quote(str(saved.inventory))} --out {shlex.quote(str(saved.path))}"
        raise ClusterctlError(
            f"{saved.path} is stale, nothing was changed: {'; '.join(reasons)}; review a new "
            f"plan: {again}"
        )
