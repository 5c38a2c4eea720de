"""Printing plans and results: coloured on a terminal, plain when piped or with NO_COLOR.

Colour follows the usual conventions, strongest first: `--no-color`, then `NO_COLOR` (any
non-empty value), then `FORCE_COLOR` (any non-empty value, even when piped), then whether the
stream is a terminal. Tables are for terminals: piped, each row is one plain line that grep and
awk can read.
"""

from __future__ import annotations

import os
import sys
from typing import IO, TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from clusterctl.execute.admin import ServerView
    from clusterctl.execute.apply import HostResult
    from clusterctl.plan import Plan

# Set once by the command line's --no-color; stronger than any environment variable.
_no_color_flag = False


def set_no_color(value: bool) -> None:
    global _no_color_flag
    _no_color_flag = value


def colour_wanted(stream: IO[str]) -> bool:
    if _no_color_flag or os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return _isatty(stream)


def is_tty(stream: IO[str]) -> bool:
    return _isatty(stream)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream is not a terminal
        return False


def plural(n: int, one: str, many: str | None = None) -> str:
    """ "1 front end", "2 front ends": a count with its noun agreeing."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    colour = colour_wanted(stream)
    return Console(
        file=stream,
        no_color=not colour,
        color_system="auto" if colour else None,
        force_terminal=colour,
        highlight=False,
        soft_wrap=True,
    )


def is_terminal(out: Console) -> bool:
    """Whether `out` writes to a real terminal (FORCE_COLOR colours a pipe, it is still a pipe)."""
    return _isatty(out.file)


def _diff_line(line: str) -> Text:
    if line.startswith(("+++", "---")):
        return Text(line, style="bold")
    if line.startswith("+"):
        return Text(line, style="green")
    if line.startswith("-"):
        return Text(line, style="red")
    if line.startswith("@@"):
        return Text(line, style="cyan")
    return Text(line)


def print_plan(plan: Plan, out: Console) -> None:
    for h in plan.hosts:
        out.print(Text(f"{h.host} ({h.kind}): {h.status}", style="bold"))
        if h.error:
            out.print(Text(f"  {h.error}", style="red"))
            continue
        if h.pending_reload:
            out.print(Text("  reload pending: an earlier apply swapped files but did not reload"))
        for t in h.stale_temps:
            out.print(Text(f"  left-over temporary file to remove: {t}"))
        for reason in h.refused:
            out.print(Text(f"  refused, would not start: {reason}", style="red"))
        if h.takes and not h.refused:
            out.print(Text(f"  {h.takes}"))
        for c in h.changes:
            out.print(Text(f"  {c.action} {c.path} (mode {c.new.mode:04o})"))
            for line in c.diff:
                out.print(_diff_line(line))
        for d in h.deletions:
            out.print(Text(f"  delete {d.path} (no longer rendered)"))
            for line in d.diff:
                out.print(_diff_line(line))
    out.print(Text(plan.summary(), style="bold"))


_RESULT_STYLES = {"changed": "green", "unchanged": "", "failed": "red", "rolled back": "red"}


def print_results(results: list[HostResult], out: Console) -> None:
    if not is_terminal(out):
        for r in results:
            detail = f": {r.message}" if r.message else ""
            out.print(Text(f"{r.host}: {r.status} in {r.seconds:.1f}s{detail}"))
        return
    table = Table(title=None, show_edge=False)
    table.add_column("host")
    table.add_column("result")
    table.add_column("time", justify="right")
    table.add_column("detail", overflow="fold")
    for r in results:
        # Text, not markup: validators' words hold brackets ("[emerg]", "[haproxy.cfg:44]").
        table.add_row(
            Text(r.host),
            Text(r.status, style=_RESULT_STYLES.get(r.status, "")),
            f"{r.seconds:.1f}s",
            Text(r.message),
        )
    out.print(table)


def print_views(views: list[ServerView], out: Console) -> None:
    if not is_terminal(out):
        for v in views:
            sessions = "sessions unknown" if v.sessions is None else plural(v.sessions, "session")
            out.print(
                Text(f"{v.frontend} {v.pool}/{v.server}: {v.state}, health {v.health}, {sessions}")
            )
        return
    table = Table(show_edge=False)
    for col in ("front end", "pool", "server", "state", "health", "sessions"):
        table.add_column(col)
    for v in views:
        style = "" if v.state == "ready" and v.health != "down" else "yellow"
        table.add_row(
            v.frontend,
            v.pool,
            v.server,
            Text(v.state, style=style),
            v.health,
            "-" if v.sessions is None else str(v.sessions),
        )
    out.print(table)
