"""Rolling upgrade: for each batch of nodes, drain -> wait -> maint -> deploy -> check -> restore.

Every front end is told at once; a pool never drops below the floor; any failure stops the
rollout where it is with every other node serving, and the report names the node, the step and
the reason. Progress is recorded on a majority of the cluster's hosts (the lock's quorum) so
`--resume` continues where it stopped, even with one host lost.

Drain stops new sessions but HAProxy and Apache still send a drained node the clients pinned to
it by their sticky cookie; once its requests are done the node goes to maint (no request at all,
pinned clients move to another node), so the new release is checked before any user sees it.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field, replace
from typing import Any

from clusterctl.errors import ClusterctlError, RolloutFailed, SSHError
from clusterctl.execute import records
from clusterctl.execute.apply import StepFailed
from clusterctl.execute.deploy import check_version, private_check, probe_node, run_deploy
from clusterctl.execute.group import run_group
from clusterctl.model.queries import base_dir
from clusterctl.model.schema import Inventory, Server
from clusterctl.orchestrate.batches import (
    FloorError,
    Options,
    batch_size,
    check_floor,
    declared_out,
    find_server,
    plan_batches,
    rollout_pools,
)
from clusterctl.orchestrate.cluster import (
    Cluster,
    Emit,
    Event,
    drain,
    event_json,
    live_out,
    maint,
    open_cluster,
    preflight,
    restore,
    wait_idle,
)
from clusterctl.orchestrate.preview import (
    already_there,
    dry_run_lines,
    serving_releases,
    skip_events,
    summary_event,
)
from clusterctl.remote_paths import rollout_record

__all__ = [
    "Cluster",
    "Event",
    "FloorError",
    "NodeTimes",
    "Options",
    "Report",
    "RolloutFailed",
    "batch_size",
    "check_floor",
    "declared_out",
    "drain",
    "event_json",
    "find_server",
    "interrupted",
    "live_out",
    "maint",
    "open_cluster",
    "plan_batches",
    "preflight",
    "preview",
    "restore",
    "rollout_pools",
    "run",
    "summary_event",
    "wait_idle",
]


@dataclass
class NodeTimes:
    node: str
    total: float = 0.0
    deploy: float = 0.0
    drain_wait: float = 0.0


@dataclass
class Report:
    version: str
    upgraded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    times: list[NodeTimes] = field(default_factory=list)
    out: dict[str, str] = field(default_factory=dict)


def _save_state(cluster: Cluster, state: dict[str, Any]) -> None:
    # On a quorum of the cluster's hosts, like the lock: any one host may be lost.
    hosts = records.sources(cluster.inv, cluster.frontends, cluster.node)
    record = {"cluster": cluster.inv.cluster, **state}
    records.save_record(
        hosts, cluster.inv.frontends[0].name, rollout_record(cluster.inv.cluster), record
    )


def load_state(cluster: Cluster) -> dict[str, Any] | None:
    hosts = records.sources(cluster.inv, cluster.frontends, cluster.node)
    return records.load_record(
        hosts, cluster.inv.frontends[0].name, rollout_record(cluster.inv.cluster)
    )


def interrupted(inv: Inventory, record: dict[str, Any] | None) -> str:
    """One line for `status` when the last rollout did not finish, with the command to go on."""
    if not record or record.get("status") == "complete":
        return ""
    version = str(record.get("version", "?"))
    done = ", ".join(str(n) for n in record.get("done", [])) or "no node"
    src = shlex.quote(inv.source) if inv.source else "INVENTORY.yaml"
    resume = f"clusterctl rollout -i {src} --version {shlex.quote(version)} --resume"
    failed = record.get("failed")
    if record.get("status") == "failed" and isinstance(failed, dict):
        return (
            f"rollout of {version} stopped at {failed.get('node')}, step {failed.get('step')} "
            f"({failed.get('node')} left {failed.get('held')}); done: {done}; continue: {resume}"
        )
    return (
        f"rollout of {version} is running or was interrupted (done: {done}); "
        f"if no rollout runs (clusterctl lock show -i {src}), continue: {resume}"
    )


def _reason(exc: ClusterctlError) -> str:
    text = str(exc)
    return text.removeprefix(f"{exc.step}: ") if isinstance(exc, StepFailed) else text


def _lost(exc: ClusterctlError) -> bool:
    return isinstance(exc, SSHError)


def upgrade_node(cluster: Cluster, server: Server, opts: Options, emit: Emit) -> NodeTimes:
    """Drain, wait, maint, deploy, check, restore one node; RolloutFailed names where it stopped.

    The node ends in the state the inventory gives it (ready, or a declared drain or maint).
    """
    inv = cluster.inv
    name = server.name
    times = NodeTimes(name)
    t0 = time.monotonic()
    timeout = (
        opts.drain_timeout if opts.drain_timeout is not None else inv.deploy.drain_timeout / 1000
    )
    try:
        node = cluster.node(name)
        _, previous = probe_node(node, inv.deploy, server)
    except ClusterctlError as exc:
        raise RolloutFailed(name, "probe", str(exc), drained=False) from None

    step = "drain"
    try:
        times.drain_wait = drain(cluster, name, timeout, opts.cut, emit)
        step = "maint"
        times.drain_wait += maint(cluster, name, timeout, opts.cut, emit)
    except ClusterctlError as exc:
        step = exc.step if isinstance(exc, StepFailed) else step
        emit(Event(name, step, "failed", time.monotonic() - t0, _reason(exc)))
        # Nothing was deployed: put the node back so it keeps serving, then stop.
        try:
            restore(cluster, name, emit, state=server.state)
        except ClusterctlError as again:
            raise RolloutFailed(
                name, step, f"{_reason(exc)}; putting it back failed too: {again}", drained=True
            ) from None
        raise RolloutFailed(name, step, _reason(exc), drained=False) from None

    step = "deploy"
    try:
        emit(Event(name, "deploy", "start", 0.0))
        times.deploy = run_deploy(node, inv.deploy, opts.version, server, base_dir(inv))
        emit(Event(name, "deploy", "ok", times.deploy))
        step = "check"
        t_check = time.monotonic()
        private_check(node, inv.deploy, opts.version, server)
        emit(Event(name, "check", "ok", time.monotonic() - t_check))
    except ClusterctlError as exc:
        step = exc.step if isinstance(exc, StepFailed) else step
        emit(Event(name, step, "failed", time.monotonic() - t0, _reason(exc)))
        held = "maint"
        if previous and previous != opts.version:
            emit(Event(name, "rollback", "start", 0.0, f"back to {previous}"))
            try:
                # A lost session is not retried blindly: the rollback starts on a new one.
                if _lost(exc):
                    node = cluster.reconnect(name)
                run_deploy(node, inv.deploy, previous, server, base_dir(inv))
                private_check(node, inv.deploy, previous, server)
                # The old release answers again: the clients pinned to it may come back.
                cluster.set_state(name, "drain")
                held = "drain"
                emit(Event(name, "rollback", "ok", 0.0, f"back on {previous}, drained"))
            except ClusterctlError as again:
                emit(Event(name, "rollback", "failed", 0.0, f"{again}; {name} stays in maint"))
        raise RolloutFailed(name, step, _reason(exc), drained=True, held=held) from None

    try:
        restore(cluster, name, emit, state=server.state)
    except ClusterctlError as exc:
        raise RolloutFailed(name, "restore", _reason(exc), drained=True) from None
    times.total = time.monotonic() - t0
    emit(Event(name, "done", "ok", times.total))
    return times


def _gate(cluster: Cluster, opts: Options, batch: list[Server]) -> None:
    """Just before a batch: the floor holds against what the front ends report now."""
    names = [s.name for s in batch]
    try:
        out = {**declared_out(cluster.inv), **live_out(cluster)}
        check_floor(cluster.inv, names, out, fix="", batch=len(names))
    except ClusterctlError as exc:
        raise RolloutFailed(names[0], "floor", str(exc), drained=False) from None


def _skip_done(cluster: Cluster, opts: Options, live: dict[str, str]) -> tuple[Options, Any]:
    """Options that leave out the nodes serving the version already (none with --force), and
    every candidate node's answer (for --dry-run)."""
    inv = cluster.inv
    candidates = [s for b in plan_batches(inv, opts, {**declared_out(inv), **live}) for s in b]
    releases = serving_releases(cluster, candidates, probe_node)
    done = {} if opts.force else already_there(inv, opts.version, releases, live)
    return replace(opts, skip=frozenset(done)), (releases, done)


def preview(inv: Inventory, opts: Options) -> list[str]:
    """--dry-run: the steps a rollout would take now, node by node; reads, changes nothing."""
    check_version(opts.version)
    with open_cluster(inv) as cluster:
        preflight(cluster)
        live = live_out(cluster)
        opts, (releases, done) = _skip_done(cluster, opts, live)
        out = {**declared_out(inv), **live}
        batches = plan_batches(inv, opts, out)
        return dry_run_lines(inv, opts, batches, releases, done, live)


def run(inv: Inventory, opts: Options, emit: Emit) -> Report:
    """The whole rollout; batches come from the states the front ends report now."""
    check_version(opts.version)
    report = Report(opts.version)
    with open_cluster(inv) as cluster:
        preflight(cluster)
        live = live_out(cluster)
        report.out = live
        opts, (_, done_now) = _skip_done(cluster, opts, live)
        skip_events(done_now, emit)
        report.skipped += sorted(done_now)
        batches = plan_batches(inv, opts, {**declared_out(inv), **live})
        covered = {s.name for b in batches for s in b}
        for node, why in sorted(live.items()):
            if node in covered:
                emit(Event(node, "out", "ok", 0.0, f"out of service now ({why}); upgraded first"))
        done: set[str] = set()
        if opts.resume:
            state = load_state(cluster)
            if state and state.get("version") == opts.version:
                done = set(state.get("done", []))
        state = {"version": opts.version, "done": sorted(done), "status": "running"}
        _save_state(cluster, state)
        for index, batch in enumerate(batches):
            todo = [s for s in batch if s.name not in done]
            for s in batch:
                if s.name in done:
                    report.skipped.append(s.name)
                    emit(Event(s.name, "skip", "ok", 0.0, "already upgraded (--resume)"))
            if not todo:
                continue
            failure: RolloutFailed | None = None
            try:
                if index:
                    _gate(cluster, opts, todo)
            except RolloutFailed as exc:
                failure = exc
            if failure is None:
                # Every node of the batch runs to its end; none's failure hides another's.
                group = run_group(
                    todo, lambda s: s.name, lambda s: upgrade_node(cluster, s, opts, emit)
                )
                other: ClusterctlError | None = None
                for outcome in group.outcomes:
                    if isinstance(outcome.error, RolloutFailed):
                        failure = failure or outcome.error
                        continue
                    if outcome.error is not None or outcome.value is None:
                        other = other or outcome.error
                        continue
                    t = outcome.value
                    # Nodes of the batch that made it are recorded even when another did not,
                    # so --resume does not upgrade them twice.
                    report.upgraded.append(t.node)
                    report.times.append(t)
                    done.add(t.node)
                if other is not None and failure is None:
                    raise other
            state["done"] = sorted(done)
            if failure is not None:
                failure.continue_with(inv, opts.version)
                failure.report = report
                state.update(
                    status="failed",
                    failed={
                        "node": failure.node,
                        "step": failure.step,
                        "reason": failure.reason,
                        "drained": failure.drained,
                        "held": failure.held,
                    },
                )
                _save_state(cluster, state)
                emit(
                    Event(
                        failure.node,
                        "failed",
                        "failed",
                        0.0,
                        str(failure),
                        {"step": failure.step, "drained": failure.drained, "held": failure.held},
                    )
                )
                raise failure
            _save_state(cluster, state)
        state["status"] = "complete"
        _save_state(cluster, state)
    return report
