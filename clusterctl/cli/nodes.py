"""rollout, drain, restore, status: the backend nodes as the front ends see them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from clusterctl.cli.base import (
    Inventory,
    LockWait,
    OutputFormat,
    _emitter,
    _out,
    _output,
    app,
)
from clusterctl.errors import ClusterctlError


@app.command()
def rollout(
    inventory: Inventory,
    version: Annotated[str, typer.Option("--version", help="Release to roll out.")],
    batch: Annotated[
        str | None,
        typer.Option(
            "--batch",
            help="Nodes at once: a count (2) or a percentage (25%); default deploy.batch.",
            show_default=False,
        ),
    ] = None,
    pool: Annotated[
        list[str] | None, typer.Option("--pool", help="Only nodes of this pool (repeatable).")
    ] = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option("--drain-timeout", help="Seconds to wait for sessions (default: inventory)."),
    ] = None,
    cut: Annotated[
        bool, typer.Option("--cut", help="Deploy anyway when sessions outlast the drain timeout.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip nodes a stopped rollout already upgraded.")
    ] = False,
    limit: Annotated[
        str | None,
        typer.Option(
            "--limit",
            help="Only these nodes (comma-separated server names) of the pools rolled out.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Deploy also on nodes that serve the version already."),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the steps node by node, as the cluster is now; take no lock, change "
            "nothing.",
        ),
    ] = False,
    output: OutputFormat = "text",
    lock_wait: LockWait = 0.0,
) -> None:
    """Upgrade backend nodes one batch at a time: drain, deploy, check privately, restore.

    A node whose health URL already reports the version, and that every front end has in
    service, is skipped (--force deploys it again). With --output json, one event per line,
    each with its time; the last is the summary.
    """
    import time

    from clusterctl import rollout as ro
    from clusterctl.execute.deploy import check_version
    from clusterctl.execute.runner import cluster_lock
    from clusterctl.model import load

    fmt = _output(output)
    inv = load(inventory)
    nodes = None if limit is None else limit.split(",")
    opts = ro.Options(version, pool, batch, drain_timeout, cut, resume, nodes=nodes, force=force)
    # Every argument is checked before the lock is taken: a refused command leaves no trace.
    check_version(version)
    ro.plan_batches(inv, opts)  # a batch that breaks the floor is refused before anything
    if dry_run:
        for line in ro.preview(inv, opts):
            _out(line)
        return
    emit = _emitter(fmt)
    started = time.monotonic()
    try:
        with cluster_lock(inv, f"rollout {version}", lock_wait):
            report = ro.run(inv, opts, emit)
    except ClusterctlError as exc:  # the stream ends with its summary however it stopped
        done = getattr(exc, "report", None) or ro.Report(version)
        emit(ro.summary_event(version, started, done.upgraded, done.skipped, exc))
        raise
    emit(ro.summary_event(version, started, report.upgraded, report.skipped))
    if fmt == "text":
        _out(f"rolled out {version} to {', '.join(report.upgraded) or 'no node'}")
        if report.skipped:
            _out(f"skipped (already on {version}): {', '.join(report.skipped)}")
        for t in report.times:
            overhead = t.total - t.deploy - t.drain_wait
            _out(
                f"  {t.node}: {t.total:.2f}s (deploy {t.deploy:.2f}s, drain wait "
                f"{t.drain_wait:.2f}s, overhead {overhead:.2f}s)"
            )


def _by_hand(
    inventory: Path, node: str, what: str, lock_wait: float, step: Callable[[Any], object]
) -> None:
    """Drain or restore one node under the cluster lock: rollout's own steps, run by hand."""
    from clusterctl import rollout as ro
    from clusterctl.execute.runner import cluster_lock
    from clusterctl.model import load

    inv = load(inventory)
    ro.find_server(inv, node)
    with cluster_lock(inv, f"{what} {node}", lock_wait), ro.open_cluster(inv) as cluster:
        ro.preflight(cluster)
        step(cluster)


DRAIN_TIMEOUT = 60.0


def _again(command: str, inventory: Path, node: str, *flags: str) -> str:
    """The command to run next, with this run's own inventory and node, quoted for a shell."""
    import shlex

    words = ["clusterctl", command, "-i", str(inventory), node, *flags]
    return " ".join(shlex.quote(w) for w in words)


def _restore_hint(inventory: Path, node: str, lock_wait: float = 0.0) -> str:
    wait = ["--lock-wait", f"{lock_wait:g}"] if lock_wait else []
    return _again("restore", inventory, node, *wait)


@app.command()
def drain(
    inventory: Inventory,
    node: Annotated[str, typer.Argument(help="Backend server name.")],
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for sessions.")
    ] = DRAIN_TIMEOUT,
    force: Annotated[
        bool,
        typer.Option("--force", help="Drain even if a pool drops below deploy.min_available."),
    ] = False,
    output: OutputFormat = "text",
    lock_wait: LockWait = 0.0,
) -> None:
    """Take a node out on every front end and wait until its sessions are gone.

    Refused when a pool of the node would keep fewer serving nodes than deploy.min_available
    (counted from what the front ends report now), unless --force.
    """
    from clusterctl import rollout as ro

    emit = _emitter(_output(output))

    def run(cluster: Any) -> None:
        if not force:
            out = {**ro.declared_out(cluster.inv), **ro.live_out(cluster)}
            waits = ["--timeout", f"{timeout:g}"] if timeout != DRAIN_TIMEOUT else []
            again = _again("drain", inventory, node, *waits, "--force")
            ro.check_floor(cluster.inv, [node], out, fix=again)
        ro.drain(cluster, node, timeout, False, emit)

    _by_hand(inventory, node, "drain", lock_wait, run)
    if output == "text":
        _out(
            f"{node} is drained on every front end; test it privately, then: "
            f"{_restore_hint(inventory, node, lock_wait)}"
        )


@app.command()
def restore(
    inventory: Inventory,
    node: Annotated[str, typer.Argument(help="Backend server name.")],
    output: OutputFormat = "text",
    lock_wait: LockWait = 0.0,
) -> None:
    """Put a node back on every front end and wait until each reports it up."""
    from clusterctl import rollout as ro

    emit = _emitter(_output(output))
    _by_hand(inventory, node, "restore", lock_wait, lambda c: ro.restore(c, node, emit))
    if output == "text":
        _out(f"{node} is back in service on every front end")


@app.command()
def status(inventory: Inventory, output: OutputFormat = "text") -> None:
    """Every server's state and current sessions as each front end sees it."""
    import json
    from dataclasses import asdict

    from clusterctl import rollout as ro
    from clusterctl.execute import admin
    from clusterctl.model import load
    from clusterctl.ui import console, print_views

    fmt = _output(output)
    inv = load(inventory)
    with ro.open_cluster(inv) as cluster:
        views = [
            v
            for chunk in cluster.each_frontend(lambda fe, r: admin.views(r, inv, fe))
            for v in chunk
        ]
        try:
            note = ro.interrupted(inv, ro.load_state(cluster))
        except ClusterctlError as exc:  # the views above are still worth showing
            note = f"the rollout record cannot be read: {exc}"
    if fmt == "json":
        _out(json.dumps([asdict(v) for v in views], indent=2))
    else:
        print_views(views, console())
        if note:
            _out(note)
        if inv.vrrp:  # who holds each virtual address, as the members report it
            from clusterctl.orchestrate import failover as fo

            with fo.members(inv) as ms:
                for line in fo.status_lines(inv, ms):
                    _out(line)
