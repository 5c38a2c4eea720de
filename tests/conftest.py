"""Every test, and every clusterctl it starts, reads an empty SSH client config.

A developer's own ~/.ssh/config (a ProxyJump, another User, an IdentityFile) would otherwise
change what the tests connect to, as fabric's tests guard against. Set before any test runs,
so subprocesses inherit it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from clusterctl.execute.endpoints import SSH_CONFIG_ENV

_EMPTY = Path(tempfile.mkdtemp(prefix="clusterctl-tests-")) / "ssh_config"
_EMPTY.write_text("")
os.environ[SSH_CONFIG_ENV] = str(_EMPTY)
