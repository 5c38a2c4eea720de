"""validate, render, plan, apply, verify: the inventory and the files it puts on the front ends."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from clusterctl.cli.base import (
    Forks,
    Inventory,
    Limit,
    LockWait,
    OutputFormat,
    _frontend_names,
    _limit,
    _out,
    _output,
    app,
)
from clusterctl.errors import ClusterctlError


@app.command()
def validate(inventory: Inventory) -> None:
    """Check an inventory; print every problem as FILE:LINE:COL: message."""
    from clusterctl.model import load
    from clusterctl.ui import plural

    inv = load(inventory)
    _out(
        f"{inventory}: valid ({plural(len(inv.frontends), 'front end')}, "
        f"{plural(len(inv.pools), 'pool')}, {plural(len(inv.services), 'service')})"
    )


@app.command()
def render(
    inventory: Inventory,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder to write DIR/<host>/<path> into.")
    ] = Path("out"),
    check: Annotated[
        bool, typer.Option("--check", help="Run haproxy -c / nginx -t / apache2 -t on the result.")
    ] = False,
) -> None:
    """Write every file each front end would get, as DIR/<host>/<absolute path>."""
    from clusterctl.localcheck import check_all, write_tree
    from clusterctl.model import load
    from clusterctl.render import render as render_all

    inv = load(inventory)
    rendered = render_all(inv)
    results = check_all(inv) if check else []
    for host, files in rendered.items():
        write_tree(files, output / host)
        for path in files:
            _out(f"{output / host}{path}")
    failed = [r for r in results if not r.ok]
    for r in results:
        _out(f"{r.host}: {r.kind} config {'valid' if r.ok else 'INVALID'}")
    if failed:
        raise ClusterctlError(
            "\n".join(f"{r.host}: {r.kind} rejected the config: {r.output}" for r in failed)
        )


@app.command()
def plan(
    inventory: Inventory,
    limit: Limit = None,
    forks: Forks = 10,
    detailed_exitcode: Annotated[
        bool,
        typer.Option("--detailed-exitcode", help="Exit 0 no changes, 2 changes pending, 1 error."),
    ] = False,
    output: OutputFormat = "text",
) -> None:
    """Show what apply would change on each front end (a diff per file); changes nothing."""
    import json

    from clusterctl.execute.runner import make_plan
    from clusterctl.model import load
    from clusterctl.plan import plan_json
    from clusterctl.ui import console, print_plan

    fmt = _output(output)
    inv = load(inventory)
    the_plan = make_plan(inv, _limit(limit, _frontend_names(inv)), forks)
    if fmt == "json":
        _out(json.dumps(plan_json(the_plan), indent=2))
    else:
        print_plan(the_plan, console())
    if the_plan.failed:
        raise typer.Exit(1)
    if detailed_exitcode and the_plan.changed:
        raise typer.Exit(2)


@app.command()
def apply(
    inventory: Inventory,
    limit: Limit = None,
    forks: Forks = 10,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    lock_wait: LockWait = 0.0,
) -> None:
    """Push configs over SSH: validate on the host, swap atomically, reload, probe, or roll back."""
    from clusterctl.execute.quorum import named
    from clusterctl.execute.runner import cluster_lock, execute_plan, make_plan, select
    from clusterctl.model import load
    from clusterctl.ui import console, print_plan, print_results

    inv = load(inventory)
    targets = _limit(limit, _frontend_names(inv))
    select(inv, targets)  # unknown names are refused before the lock is taken
    out = console()
    if not yes and not sys.stdin.isatty():
        raise ClusterctlError("apply needs confirmation: run it on a terminal or pass --yes")
    with cluster_lock(inv, "apply", lock_wait):
        the_plan = make_plan(inv, targets, forks)
        print_plan(the_plan, out)
        if not the_plan.changed and not the_plan.failed:
            out.print("nothing to do")
            return
        if the_plan.changed and not yes and not typer.confirm("Apply these changes?"):
            raise ClusterctlError("apply cancelled; nothing was changed")

        def progress(host: str, step: str) -> None:
            console(stderr=True).print(f"{host}: {step}")

        results = execute_plan(inv, the_plan, forks, progress)
    print_results(results, out)
    bad = [r for r in results if r.status in ("failed", "rolled back")]
    if bad:
        raise ClusterctlError(
            f"{len(bad)} of {len(results)} front end(s) not applied: "
            + "; ".join(named(r.host, r.message) for r in bad)  # "lb2: lb2: ..." never
        )


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def verify(
    ctx: typer.Context,
    inventory: Inventory,
    limit: Limit = None,
    release: Annotated[
        str | None, typer.Option("--release", help="Release every backend must serve.")
    ] = None,
) -> None:
    """Check the real hosts with testinfra: services, ports, installed files, modes, admin access.

    Extra arguments after `--` go to pytest (e.g. -- -x -k haproxy).
    """
    from clusterctl.model import load
    from clusterctl.verify import run_verify

    inv = load(inventory)
    hosts = _frontend_names(inv) + sorted({s.name for p in inv.pools for s in p.servers})
    rc = run_verify(inventory, _limit(limit, hosts), list(ctx.args), release=release)
    if rc:
        raise typer.Exit(rc)
