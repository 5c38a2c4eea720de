"""What a rollout finds before it changes anything: which nodes serve the version already, the
steps it would take node by node (`--dry-run`), and the summary that ends its event stream.

A node that answers its health URL with the expected status and the version asked for, and
that every front end has in service, is done already: it is skipped unless `--force`, as a
second `ansible-playbook` run or `terraform apply` changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from clusterctl.errors import ClusterctlError
from clusterctl.execute.deploy import deploy_argv, health_url, probe_node
from clusterctl.execute.ssh import quote
from clusterctl.model.schema import Deploy, Inventory, Server
from clusterctl.orchestrate.batches import Options
from clusterctl.orchestrate.cluster import Cluster, Event, EventStatus
from clusterctl.ui import plural

# node -> (HTTP status, release header) its health URL answers with, asked on the node
Releases = dict[str, tuple[int, str | None]]


Probe = Callable[[Any, Deploy, Server], tuple[int, str | None]]


def serving_releases(
    cluster: Cluster, servers: Iterable[Server], probe: Probe = probe_node
) -> Releases:
    """Ask every node's health URL at once, on the node itself (as the private check does)."""
    todo = list(servers)
    if not todo:
        return {}
    deploy = cluster.inv.deploy

    def one(server: Server) -> tuple[int, str | None]:
        try:
            return probe(cluster.node(server.name), deploy, server)
        except ClusterctlError:
            return 0, None  # unreachable now: not done; the rollout's own probe says why

    with ThreadPoolExecutor(max_workers=min(16, len(todo))) as pool:
        answers = list(pool.map(one, todo))
    return {s.name: a for s, a in zip(todo, answers, strict=True)}


def already_there(
    inv: Inventory, version: str, releases: Releases, out: dict[str, str]
) -> dict[str, str]:
    """Nodes that serve `version` now and are in service everywhere, with why they count."""
    expect = inv.deploy.health.expect
    return {
        name: f"already serves {version}"
        for name, (status, release) in releases.items()
        if status == expect and release == version and name not in out
    }


def skip_events(done: dict[str, str], emit: Callable[[Event], None]) -> None:
    for name, why in sorted(done.items()):
        emit(Event(name, "skip", "ok", 0.0, f"{why} (--force deploys it again)"))


def _deploy_words(inv: Inventory, version: str, server: Server) -> str:
    rel = inv.deploy.release
    if rel is None:
        return f"run {quote(deploy_argv(inv.deploy, version, server))}"
    return (
        f"unpack {rel.artifact.replace('{version}', version)} into {rel.root}/releases/"
        f"{version} unless it is there, switch {rel.root}/current to it, restart"
    )


def dry_run_lines(
    inv: Inventory,
    opts: Options,
    batches: list[list[Server]],
    releases: Releases,
    done: dict[str, str],
    out: dict[str, str],
) -> list[str]:
    """The rollout's steps, batch by batch and node by node, as `--dry-run` prints them."""
    frontends = ", ".join(fe.name for fe in inv.frontends)
    timeout = (
        opts.drain_timeout if opts.drain_timeout is not None else inv.deploy.drain_timeout / 1000
    )
    after = "deploy anyway (--cut)" if opts.cut else "stop and put it back"
    check = inv.deploy.health
    lines = [f"rollout of {opts.version}, dry run: nothing is changed"]
    for name, why in sorted(done.items()):
        lines.append(f"{name}: skip, {why} (--force deploys it again)")
    for node, why in sorted(out.items()):
        if any(s.name == node for b in batches for s in b):
            lines.append(f"{node}: out of service now ({why}), upgraded first")
    for index, batch in enumerate(batches, 1):
        names = ", ".join(s.name for s in batch)
        lines.append(f"batch {index} of {len(batches)}: {names}")
        for s in batch:
            status, release = releases.get(s.name, (0, None))
            now = release or ("no release header" if status else "no answer")
            back = f"; on failure back to {release}" if release and release != opts.version else ""
            target = "ready" if s.state == "ready" else f"{s.state} (as the inventory says)"
            lines += [
                f"  {s.name}: serves {now} now",
                f"  {s.name}: drain on {frontends}; wait up to {timeout:g}s for its sessions, "
                f"then {after}",
                f"  {s.name}: maint on {frontends}; wait for requests still in flight",
                f"  {s.name}: deploy {opts.version}: {_deploy_words(inv, opts.version, s)}",
                f"  {s.name}: check {health_url(inv.deploy, s)} answers {check.expect} with "
                f"{check.version_header}: {opts.version} within {check.timeout / 1000:g}s{back}",
                f"  {s.name}: restore to {target} on {frontends}; wait until each reports it up",
            ]
    todo = sum(len(b) for b in batches)
    lines.append(
        f"would upgrade {plural(todo, 'node')} in {plural(len(batches), 'batch', 'batches')}, "
        f"skip {len(done)}"
    )
    return lines


def summary_event(
    version: str,
    started: float,
    upgraded: list[str],
    skipped: list[str],
    failure: Any = None,
) -> Event:
    """The last event of a rollout's stream: what it did, in one object CI can read."""
    data: dict[str, Any] = {
        "version": version,
        "upgraded": list(upgraded),
        "skipped": list(skipped),
    }
    message = f"{plural(len(upgraded), 'node')} upgraded to {version}, {len(skipped)} skipped"
    if failure is not None:
        data["failed"] = {
            "node": getattr(failure, "node", ""),
            "step": getattr(failure, "step", ""),
            "reason": getattr(failure, "reason", str(failure)),
        }
        message = f"{message}; stopped: {failure}"
    status: EventStatus = "ok" if failure is None else "failed"
    return Event("", "summary", status, time.monotonic() - started, message, data)
