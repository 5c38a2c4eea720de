"""maintenance on|off: a pool, or the whole site, answers its unavailable page on purpose."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from clusterctl.cli.base import Inventory, LockWait, OutputFormat, _out, _output, app
from clusterctl.errors import ClusterctlError


@app.command()
def maintenance(
    switch: Annotated[str, typer.Argument(help="on or off.", metavar="on|off", show_default=False)],
    inventory: Inventory,
    pool: Annotated[
        str | None,
        typer.Argument(
            help="The pool; omitted: every http pool (the whole site).", show_default=False
        ),
    ] = None,
    output: OutputFormat = "text",
    lock_wait: LockWait = 0.0,
) -> None:
    """Switch a pool (or the whole site) to its service's unavailable page, or back.

    on: every member of the pool goes to maint through each front end's runtime interface (no
    reload), so requests get 503 with Retry-After and the page services[].unavailable names.
    off: each member goes back to the state the inventory gives it. A restart may bring
    the inventory's states back: for a switch that outlives one, set pools[].maintenance: true
    and apply.
    """
    from clusterctl.execute.runner import cluster_lock
    from clusterctl.model import load
    from clusterctl.orchestrate import maintenance as mt
    from clusterctl.orchestrate.cluster import open_cluster

    fmt = _output(output)
    if switch not in ("on", "off"):
        raise ClusterctlError(f"maintenance takes on or off, not {switch!r}")
    inv = load(inventory)
    pools = mt.select(inv, pool)
    command = f"maintenance {switch} {pool or 'site'}"
    with cluster_lock(inv, command, lock_wait), open_cluster(inv) as cluster:
        done = mt.switch(cluster, pools, switch == "on")
    if fmt == "json":
        _out(json.dumps([vars(d) for d in done], indent=2))
        return
    for d in done:
        _out(f"{d.frontend}: {d.pool} {'in maintenance' if switch == 'on' else 'serving'}")
    what = f"pool {pool}" if pool else "every http pool"
    n = len({d.frontend for d in done})
    state = "in maintenance" if switch == "on" else "serving again"
    _out(f"{what} {state} on {n} front end{'' if n == 1 else 's'}")
