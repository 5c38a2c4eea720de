"""The command line: parse flags, call the core, print results. No logic lives here.

Commands register on `app` in the order `--help` lists them.
"""

from __future__ import annotations

from clusterctl.cli import config, lab, lock, maintenance, nodes, pair  # noqa: F401  (registers the commands)  # noqa: F401
from clusterctl.cli.base import app
from clusterctl.cli.main import main

__all__ = ["app", "main"]
