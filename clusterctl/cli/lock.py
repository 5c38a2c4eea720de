"""lock show, lock break: the cluster lock."""

from __future__ import annotations

from typing import Annotated

import typer

from clusterctl.cli.base import (
    Inventory,
    _out,
    app,
)
from clusterctl.errors import ClusterctlError

lock_app = typer.Typer(help="Show or break the cluster lock.")
app.add_typer(lock_app, name="lock")


@lock_app.command("show")
def lock_show(inventory: Inventory) -> None:
    """Show every lock on the cluster's hosts: holder, command, id, hosts, lease, staleness.

    A lock dir whose record cannot be read counts as held; the line says how to break it.
    """
    from clusterctl.execute.runner import show_lock
    from clusterctl.model import load

    for line in show_lock(load(inventory)):
        _out(line)


@lock_app.command("break")
def lock_break(
    inventory: Inventory,
    lock_id: Annotated[
        str | None,
        typer.Argument(
            help="The lock's id, as `clusterctl lock show` prints it.", show_default=False
        ),
    ] = None,
    no_record: Annotated[
        bool,
        typer.Option(
            "--no-record",
            help="Break a lock that has no readable record (a lock dir left by a full disk, "
            "say), instead of one named by its id.",
        ),
    ] = False,
) -> None:
    """Remove a stale cluster lock from every host that has it: the one with this id (see
    `clusterctl lock show`), or with --no-record the lock dirs that have no readable record.

    A lock whose holder's process is gone (same machine), or whose lease ran out, needs no
    break: the next command takes it over and says so.
    """
    from clusterctl.execute.runner import break_lock
    from clusterctl.model import load

    if (lock_id is None) == (not no_record):
        raise ClusterctlError(
            "lock break needs the lock's id (see: clusterctl lock show) or --no-record, not both"
            if lock_id
            else "lock break needs the lock's id (see: clusterctl lock show) or --no-record"
        )
    for line in break_lock(load(inventory), lock_id):
        _out(line)
