"""paramiko, imported without invoke: every command that connects starts faster.

paramiko.config imports invoke (a task runner, unittest.mock among its imports) only to run an
ssh_config `Match exec` line; that import is a good part of a command's start-up on a small
machine. So paramiko is imported with invoke hidden, and `ssh_config` hands it over for a
config that has a `Match` line (endpoints.py), the only place paramiko would use it.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from typing import Any

_hidden = "invoke" not in sys.modules
if _hidden:
    sys.modules["invoke"] = None  # type: ignore[assignment]  # `import invoke` fails at once
try:
    import paramiko
    import paramiko.config
finally:
    if _hidden:
        del sys.modules["invoke"]  # anyone else imports the real one

__all__ = ["paramiko", "ssh_config"]


def ssh_config(path: str) -> paramiko.SSHConfig:
    """The file parsed by paramiko; with a `Match` line, invoke given to it for `Match exec`."""
    config = paramiko.SSHConfig.from_path(path)
    module: Any = paramiko.config  # its `invoke` is untyped
    if module.invoke is None and any(
        line.strip().lower().startswith("match") for line in _lines(path)
    ):
        # Without invoke, paramiko says why `Match exec` cannot run, as it would have.
        with contextlib.suppress(ImportError):
            module.invoke = importlib.import_module("invoke")
    return config


def _lines(path: str) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.readlines()
