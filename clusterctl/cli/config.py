"""validate, render, plan, apply, verify: the inventory and the files it puts on the front ends."""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath
from typing import Annotated

import typer

from clusterctl.cli.base import (
    Forks,
    Inventory,
    Limit,
    LockWait,
    OptionalInventory,
    OutputFormat,
    _err,
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


def _q(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


RENDER_MANIFEST = ".clusterctl-render"


def _safe_relative(line: str) -> PurePosixPath | None:
    rel = PurePosixPath(line)
    if not line or rel.is_absolute() or any(p in ("", ".", "..") for p in line.split("/")):
        return None
    return rel


def prune_render(root: Path, written: list[str]) -> list[str]:
    """Remove what an earlier render into `root` wrote and this one did not; record this one.

    Only files named in the manifest an earlier render left in `root` are removed (never a file
    clusterctl did not write, never outside `root`, never through a symlink), then folders that
    became empty.
    """
    manifest = root / RENDER_MANIFEST
    try:
        before = manifest.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        before = []
    keep = set(written)
    removed = []
    for line in before:
        rel = _safe_relative(line)
        if rel is None or line in keep:
            continue
        target = root / rel
        inside = all(not (root / part).is_symlink() for part in _prefixes(rel))
        if inside and target.is_file() and not target.is_symlink():
            target.unlink()
            removed.append(line)
            for folder in list(_prefixes(rel))[:-1][::-1]:
                try:
                    (root / folder).rmdir()  # only when empty
                except OSError:
                    break
    root.mkdir(parents=True, exist_ok=True)
    manifest.write_text("".join(f"{w}\n" for w in sorted(keep)), encoding="utf-8")
    return removed


def _prefixes(rel: PurePosixPath) -> list[PurePosixPath]:
    parts = rel.parts
    return [PurePosixPath(*parts[: i + 1]) for i in range(len(parts))]


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
    """Write every file each front end would get, as DIR/<host>/<absolute path>.

    Files an earlier render into DIR wrote and this one does not are removed (DIR keeps a list
    of what it wrote in .clusterctl-render); nothing else in DIR is touched.
    """
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
    written = [f"{host}{path}" for host, files in rendered.items() for path in files]
    for gone in prune_render(output, written):
        _out(f"removed {output / gone} (no longer rendered)")
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
    forks: Forks = 50,
    detailed_exitcode: Annotated[
        bool,
        typer.Option("--detailed-exitcode", help="Exit 0 no changes, 2 changes pending, 1 error."),
    ] = False,
    output: OutputFormat = "text",
    steps: Annotated[
        bool, typer.Option("--steps", help="Also list each host's steps: what apply runs there.")
    ] = False,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Save the plan to this file; `clusterctl apply FILE` applies exactly it.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show what apply would change on each front end (a diff per file); changes nothing.

    With --out FILE the plan is also saved (no secret in it, private keys by digest), for
    `clusterctl apply FILE`, which refuses it if any host or the inventory changed since.
    """
    import json

    from clusterctl.execute.runner import make_plan
    from clusterctl.model import load
    from clusterctl.plan import plan_json
    from clusterctl.plan_steps import listing
    from clusterctl.ui import console, print_plan

    fmt = _output(output)
    inv = load(inventory)
    the_plan = make_plan(inv, _limit(limit, _frontend_names(inv)), forks)
    if fmt == "json":
        _out(json.dumps(plan_json(the_plan), indent=2))
    else:
        print_plan(the_plan, console())
        for h in the_plan.hosts if steps else ():
            for line in listing(h.host, h.steps, h.rollback):
                _out(line)
    if out_file is not None:
        from clusterctl.saved_plan import write_plan

        targets = _limit(limit, _frontend_names(inv))
        write_plan(out_file, the_plan, inventory, inv.cluster, targets)
        _err(f"plan saved to {out_file}; apply exactly it: clusterctl apply {_q(out_file)}")
    if the_plan.failed:
        raise typer.Exit(1)
    if detailed_exitcode and the_plan.changed:
        raise typer.Exit(2)


@app.command()
def apply(
    plan_file: Annotated[
        Path | None,
        typer.Argument(
            help="A plan saved by `clusterctl plan --out FILE`: applied as it is, without a "
            "question, or refused if anything changed since.",
            show_default=False,
        ),
    ] = None,
    inventory: OptionalInventory = None,
    limit: Limit = None,
    forks: Forks = 50,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    lock_wait: LockWait = 0.0,
) -> None:
    """Push configs over SSH: validate on the host, swap atomically, reload, probe, or roll back.

    `apply -i INV` plans, shows the plan and asks; `apply FILE` applies a saved plan (its
    inventory is the one it names, or -i), refusing it when a host or the inventory changed.
    """
    from clusterctl.execute.quorum import named
    from clusterctl.execute.runner import cluster_lock, execute_plan, make_plan, select
    from clusterctl.model import load
    from clusterctl.ui import console, plural, print_plan, print_results

    saved = None
    if plan_file is not None:
        from clusterctl.saved_plan import read_plan

        saved = read_plan(plan_file)
        if limit is not None:
            raise ClusterctlError(f"--limit does not go with a saved plan: {plan_file} has its own")
        inventory = inventory or saved.inventory
    elif inventory is None:
        raise ClusterctlError(
            "apply needs -i INVENTORY, or a saved plan: clusterctl apply FILE (see: --help)"
        )
    inv = load(inventory)
    targets = saved.limit if saved is not None else _limit(limit, _frontend_names(inv))
    select(inv, targets)  # unknown names are refused before the lock is taken
    out = console()
    if saved is None and not yes and not sys.stdin.isatty():
        raise ClusterctlError("apply needs confirmation: run it on a terminal or pass --yes")
    with cluster_lock(inv, "apply", lock_wait):
        the_plan = make_plan(inv, targets, forks)
        if saved is not None:
            from clusterctl.saved_plan import refuse_if_stale

            refuse_if_stale(saved, the_plan, inv.cluster)  # before anything is printed or done
        print_plan(the_plan, out)
        if not the_plan.changed and not the_plan.failed:
            out.print("nothing to do")
            return
        ask = saved is None and the_plan.changed and not yes
        if ask and not typer.confirm("Apply these changes?"):
            raise ClusterctlError("apply cancelled; nothing was changed")

        def progress(host: str, step: str) -> None:
            console(stderr=True).print(f"{host}: {step}")

        results = execute_plan(inv, the_plan, forks, progress)
    print_results(results, out)
    bad = [r for r in results if r.status in ("failed", "rolled back")]
    if bad:
        raise ClusterctlError(
            f"{len(bad)} of {plural(len(results), 'front end')} not applied: "
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
    raw: Annotated[
        bool, typer.Option("--raw", help="Show pytest's own report as well as the summary.")
    ] = False,
) -> None:
    """Check the real hosts with testinfra: services, ports, installed files, modes, admin access.

    Prints a line per host, each failed check with its reason, and the totals; exit 1 when any
    check failed. Extra arguments after `--` go to pytest (e.g. -- -x -k haproxy).
    """
    from clusterctl.model import load
    from clusterctl.verify import run_verify

    inv = load(inventory)
    hosts = _frontend_names(inv) + sorted({s.name for p in inv.pools for s in p.servers})
    rc = run_verify(inventory, _limit(limit, hosts), list(ctx.args), release=release, raw=raw)
    if rc:
        raise typer.Exit(rc)
