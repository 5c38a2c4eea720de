"""The command line: parse flags, call the core, print results. No logic lives here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from clusterctl import __version__
from clusterctl.errors import ClusterctlError

app = typer.Typer(
    name="clusterctl",
    help="Declarative HAProxy, nginx and Apache front ends for a web cluster: "
    "validate and render an inventory, push it over SSH, roll out releases with zero failed "
    "requests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
lab_app = typer.Typer(help="A local cluster of network-namespace hosts to rehearse on.")
app.add_typer(lab_app, name="lab")

Inventory = Annotated[
    Path, typer.Option("--inventory", "-i", help="Inventory YAML file.", show_default=False)
]


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _not_built(command: str, issue: int) -> NoReturn:
    _err(f"clusterctl {command} is not built yet (issue #{issue}); nothing was done.")
    raise typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        _out(f"clusterctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    pass


@app.command()
def validate(inventory: Inventory) -> None:
    """Check an inventory; print every problem as FILE:LINE:COL: message."""
    from clusterctl.model import load

    inv = load(inventory)
    _out(
        f"{inventory}: valid ({len(inv.frontends)} front ends, {len(inv.pools)} pools, "
        f"{len(inv.services)} services)"
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
def plan(inventory: Inventory) -> None:
    """Show what apply would change on each front end (a diff per file)."""
    _not_built("plan", 4)


@app.command()
def apply(inventory: Inventory) -> None:
    """Push configs over SSH: validate on the host, swap atomically, reload, probe."""
    _not_built("apply", 4)


@app.command()
def rollout(inventory: Inventory) -> None:
    """Upgrade backend nodes one by one: drain, deploy, check, restore."""
    _not_built("rollout", 5)


@app.command()
def drain(inventory: Inventory, node: str) -> None:
    """Take a backend node out of service on every front end."""
    _not_built("drain", 5)


@app.command()
def restore(inventory: Inventory, node: str) -> None:
    """Put a drained backend node back into service on every front end."""
    _not_built("restore", 5)


@app.command()
def status(inventory: Inventory) -> None:
    """Every server's state and sessions as each front end sees it."""
    _not_built("status", 5)


@app.command()
def verify(inventory: Inventory) -> None:
    """Run testinfra checks against the real hosts of an inventory."""
    _not_built("verify", 6)


@lab_app.command("up")
def lab_up() -> None:
    """Build the local lab."""
    _not_built("lab up", 3)


@lab_app.command("down")
def lab_down() -> None:
    """Remove the local lab."""
    _not_built("lab down", 3)


@lab_app.command("status")
def lab_status() -> None:
    """Show the local lab's hosts."""
    _not_built("lab status", 3)


def main() -> None:
    # click handles usage errors itself (exit 2); errors a user can cause are one line, exit 1.
    try:
        app()
    except ClusterctlError as exc:
        _err(f"error: {exc}" if "\n" not in str(exc) else str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)
