"""What every command shares: the app, its common options, and how results are printed."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from clusterctl import __version__
from clusterctl.errors import ClusterctlError

app = typer.Typer(
    name="clusterctl",
    help="Declarative HAProxy, nginx and Apache front ends for a web cluster: "
    "validate and render an inventory, push it over SSH, roll out releases with zero failed "
    "requests.",
    epilog="Exit status: 0 success; 1 any error, usage errors included; 2 changes pending "
    "(only plan --detailed-exitcode).",
    no_args_is_help=True,
    # -h as well as --help, on every command and group (click's contexts inherit it).
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

INVENTORY_ENV = "CLUSTERCTL_INVENTORY"

Inventory = Annotated[
    Path,
    typer.Option(
        "--inventory",
        "-i",
        help="Inventory YAML file (given once).",
        envvar=INVENTORY_ENV,
        show_default=False,
        show_envvar=True,
    ),
]


# apply's: with a saved plan, the plan names its inventory.
OptionalInventory = Annotated[
    Path | None,
    typer.Option(
        "--inventory",
        "-i",
        help="Inventory YAML file (given once); with a saved plan, the one it names.",
        envvar=INVENTORY_ENV,
        show_default=False,
        show_envvar=True,
    ),
]


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _version(value: bool) -> None:
    if value:
        _out(f"clusterctl {__version__}")
        raise typer.Exit(0)


def _trace(host: str, what: str, step: str | None, seconds: float, rc: int) -> None:
    # What ran and how long it took; never its arguments nor its stdin (secrets travel there).
    during = f" [{step}]" if step else ""
    status = "" if rc == 0 else f", exit {rc}"
    _err(f"  {host}: {what}{during} ({seconds:.3f}s{status})")


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Show each remote command (not its arguments) and its time."
        ),
    ] = False,
    no_color: Annotated[
        bool,
        typer.Option(
            "--no-color",
            help="No colour, even on a terminal (NO_COLOR does the same; "
            "FORCE_COLOR colours a pipe).",
        ),
    ] = False,
) -> None:
    from clusterctl import ui

    ui.set_no_color(no_color)
    if verbose:  # paramiko is only imported by the commands that connect
        from clusterctl.execute import ssh

        ssh.trace = _trace
    if ui.is_tty(sys.stderr):
        _show_waits()


def _show_waits() -> None:
    """On a terminal, long waits say what they wait for every few seconds (a CI log that
    wants them has --output json's progress events)."""
    from clusterctl import progress

    progress.lock_wait = _err
    progress.reload_wait = lambda host, line: _err(f"{host}: {line}")


Limit = Annotated[
    str | None,
    typer.Option(
        "--limit", help="Only these front ends (comma-separated names).", show_default=False
    ),
]
Forks = Annotated[int, typer.Option("--forks", min=1, max=256, help="Hosts worked on at once.")]
LockWait = Annotated[
    float, typer.Option("--lock-wait", min=0, help="Seconds to wait for the cluster lock.")
]
OutputFormat = Annotated[str, typer.Option("--output", help="text or json.", show_default=True)]


def _limit(text: str | None, known: list[str], flag: str = "--limit") -> list[str] | None:
    """The names of a selection flag; None when it is not given.

    A given but blank selection (`--limit ""`, an unset CI variable) is an error, never "all".
    """
    if text is None:
        return None
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names:
        raise ClusterctlError(
            f"{flag} {text!r} names nothing; name one or more of: {', '.join(sorted(known))}"
        )
    return names


def _frontend_names(inv: Any) -> list[str]:
    return [fe.name for fe in inv.frontends]


def _output(value: str) -> str:
    if value not in ("text", "json"):
        raise ClusterctlError(f"--output must be text or json, not {value!r}")
    return value


def _emitter(fmt: str) -> Callable[[Any], None]:
    from rich.text import Text

    from clusterctl.rollout import event_json
    from clusterctl.ui import console

    err = console(stderr=True)

    def emit(e: Any) -> None:
        if fmt == "json":
            _out(event_json(e))
        elif e.step == "summary":
            return  # text output ends with its own summary lines
        else:
            note = f" ({e.message})" if e.message else ""
            err.print(Text(f"{e.node:<8} {e.step:<8} {e.status:<7} {e.elapsed:6.2f}s{note}"))

    return emit
