"""failover, maintain, vrrp: front ends that share virtual addresses (keepalived)."""

from __future__ import annotations

from typing import Annotated

import typer

from clusterctl.cli.base import Inventory, LockWait, _err, _out, app


@app.command()
def failover(
    inventory: Inventory,
    group: Annotated[str, typer.Argument(help="The vrrp group whose address moves.")],
    to: Annotated[
        str | None, typer.Option("--to", help="Member to move it to (default: the next healthy).")
    ] = None,
    lock_wait: LockWait = 0.0,
) -> None:
    """Move a group's virtual address to another member; waits until it answers there."""
    from clusterctl.execute.runner import cluster_lock
    from clusterctl.model import load
    from clusterctl.orchestrate import failover as fo

    inv = load(inventory)
    fo.group_named(inv, group)  # an unknown group is refused before the lock is taken
    with cluster_lock(inv, "failover", lock_wait):
        fo.failover(inv, group, to, _out)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def maintain(
    ctx: typer.Context,
    inventory: Inventory,
    frontend: Annotated[str, typer.Argument(help="The front end to work on.")],
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, max=3600, help="Seconds for the command.")
    ] = 600.0,
    lock_wait: LockWait = 0.0,
) -> None:
    """Move every virtual address away from a front end, run the command after `--` there
    (argv, never a shell line), check it serves again, hand the addresses back."""
    from clusterctl.errors import ClusterctlError
    from clusterctl.execute.runner import cluster_lock
    from clusterctl.model import load
    from clusterctl.orchestrate import failover as fo

    argv = list(ctx.args)
    if not argv:
        raise ClusterctlError(
            "maintain needs a command after --, e.g. -- apt-get install -y haproxy"
        )
    inv = load(inventory)
    with cluster_lock(inv, "maintain", lock_wait):
        fo.maintain(inv, frontend, argv, _out, timeout=timeout)


@app.command("vrrp")
def vrrp_status(inventory: Inventory) -> None:
    """Per virtual address: which member holds it, each member's state as its host reports."""
    from clusterctl.model import load
    from clusterctl.orchestrate import failover as fo

    inv = load(inventory)
    if not inv.vrrp:
        _err("the inventory has no vrrp groups")
        raise typer.Exit(1)
    with fo.members(inv) as ms:
        lines = fo.status_lines(inv, ms)
    for line in lines:
        _out(line)
    # Exit 1 when an address is on no member, or on several (a split brain).
    if any(": held by no member" in ln or " members at once" in ln for ln in lines):
        raise typer.Exit(1)
