"""Printing plans and results: coloured on a terminal, plain when piped or with NO_COLOR."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from clusterctl.execute.admin import ServerView
from clusterctl.execute.apply import HostResult
from clusterctl.plan import Plan


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    plain = bool(os.environ.get("NO_COLOR")) or not stream.isatty()
    return Console(
        file=stream,
        no_color=plain,
        color_system=None if plain else "auto",
        highlight=False,
        soft_wrap=True,
    )


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
        for c in h.changes:
            out.print(Text(f"  {c.action} {c.path} (mode {c.new.mode:04o})"))
            for line in c.diff:
                out.print(_diff_line(line))
        for d in h.deletions:
            out.print(Text(f"  delete {d.path} (no longer rendered)"))
            for line in d.diff:
                out.print(_diff_line(line))
    out.print(Text(plan.summary(), style="bold"))


def print_results(results: list[HostResult], out: Console) -> None:
    table = Table(title=None, show_edge=False)
    table.add_column("host")
    table.add_column("result")
    table.add_column("time", justify="right")
    table.add_column("detail", overflow="fold")
    styles = {"changed": "green", "unchanged": "", "failed": "red", "rolled back": "red"}
    for r in results:
        # Text, not markup: validators' words hold brackets ("[emerg]", "[haproxy.cfg:44]").
        table.add_row(
            Text(r.host),
            Text(r.status, style=styles.get(r.status, "")),
            f"{r.seconds:.1f}s",
            Text(r.message),
        )
    out.print(table)


def print_views(views: list[ServerView], out: Console) -> None:
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
