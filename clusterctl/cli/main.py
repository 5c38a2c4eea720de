"""The entry point: one line per error, and exit codes CI can trust."""

from __future__ import annotations

import sys

import typer

from clusterctl.cli.base import (
    _err,
    app,
)
from clusterctl.errors import ClusterctlError, InventoryError


def main() -> None:
    """Exit 0 on success, 1 on any error (usage errors included), 2 only for "changes pending"
    under `plan --detailed-exitcode`: click's own usage errors exit 2, which CI would read as
    pending changes, so click runs non-standalone and its errors are reported here."""
    # typer vendors its own click; its exception classes are only importable from there.
    from typer._click import exceptions as click

    try:
        code = app(standalone_mode=False)
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
