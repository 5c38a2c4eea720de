"""The entry point: one line per error, and exit codes CI can trust."""

from __future__ import annotations

import sys
from typing import Any

import typer

from clusterctl.cli.base import (
    _err,
    app,
)
from clusterctl.errors import ClusterctlError, InventoryError


def _given_once(param: Any) -> None:
    """-i names one inventory: a second one is an error, never a silent override.

    click keeps the last value of a repeated option; parsed as `multiple` (an "append" action),
    the option hands over all of them and this wrapper refuses more than one before typer
    converts the single value. Only the parser sees it as multiple: the environment variable
    stays one value as it is (a path may hold a `:`), never split.
    """
    from typer._click import exceptions as click

    convert = param.process_value
    add_to_parser = param.add_to_parser

    def add_appending(parser: Any, ctx: Any) -> None:
        param.multiple = True
        try:
            add_to_parser(parser, ctx)
        finally:
            param.multiple = False

    def process_value(ctx: Any, value: Any) -> Any:
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        values = [v for v in values if v is not None]
        if len(values) > 1:
            shown = ", ".join(str(v) for v in values)
            raise click.BadParameter(
                f"given {len(values)} times ({shown}); give one inventory", ctx, param
            )
        return convert(ctx, values[0] if values else None)

    param.process_value = process_value
    param.add_to_parser = add_appending


def command() -> Any:
    """The click command, with every --inventory option refusing a second value."""
    cmd = typer.main.get_command(app)
    todo = [cmd]
    while todo:
        c = todo.pop()
        todo.extend(getattr(c, "commands", {}).values())
        for p in c.params:
            if p.name == "inventory" and not p.multiple:
                _given_once(p)
    return cmd


def main() -> None:
    """Exit 0 on success, 1 on any error (usage errors included), 2 only for "changes pending"
    under `plan --detailed-exitcode`: click's own usage errors exit 2, which CI would read as
    pending changes, so click runs non-standalone and its errors are reported here."""
    # typer vendors its own click; its exception classes are only importable from there.
    from typer._click import exceptions as click

    try:
        code = command().main(standalone_mode=False, prog_name="clusterctl")
    except InventoryError as exc:
        _err(str(exc))  # FILE:LINE:COL: message, one line per problem
        sys.exit(1)
    except ClusterctlError as exc:
        _err(f"error: {exc}")
        sys.exit(1)
    except click.NoArgsIsHelpError as exc:
        _err(exc.format_message())
        sys.exit(1)
    except click.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        _err(f"error: {exc.format_message()}{hint}")
        sys.exit(1)
    except click.ClickException as exc:
        _err(f"error: {exc.format_message()}")
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        _err("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
