"""`clusterctl verify`: testinfra checks against the real hosts of an inventory.

Per front end: the server runs and listens on every service port; every file clusterctl
installs is on the host byte for byte as rendered (private keys by checksum only), with its
owner and mode; HAProxy's admin socket is root's alone; the admin port refuses other hosts
(Apache's balancer-manager answers on 127.0.0.1 only). Per backend: the health URL, asked on
the node itself, answers as the inventory expects, with the expected release if one is given.

The checks are a pytest module (checks.py) run in a pytest subprocess over testinfra's ssh
backend with strict host keys (targets.py writes the ssh_config).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from clusterctl.errors import ClusterctlError
from clusterctl.verify.targets import (
    ENV_INVENTORY,
    ENV_LAB,
    ENV_LIMIT,
    ENV_RELEASE,
    Settings,
    make_targets,
)

__all__ = ["ENV_INVENTORY", "ENV_LAB", "ENV_LIMIT", "ENV_RELEASE", "checks_path", "run_verify"]

NEEDS = ("pytest", "testinfra")


def checks_path() -> Path:
    """The packaged pytest module with the checks."""
    return Path(__file__).resolve().parent / "checks.py"


def pytest_argv(extra_pytest_args: list[str]) -> list[str]:
    here = checks_path().parent
    return [
        sys.executable,
        "-m",
        "pytest",
        str(checks_path()),
        "-c",
        os.devnull,  # the project's own pytest settings (testpaths, addopts) do not apply
        "--rootdir",
        str(here),
        "-p",
        "clusterctl.verify.plugin",
        "-p",
        "no:cacheprovider",
        "-rA",
        "--tb=short",
        "--no-header",
        *extra_pytest_args,
    ]


def run_verify(
    inventory: Path,
    limit: list[str] | None,
    extra_pytest_args: list[str],
    *,
    release: str | None = None,
) -> int:
    """Run the checks against `inventory`'s hosts; pytest's exit code (0: every check passed).

    `limit`: only these hosts (front-end or backend names). `release`: every checked backend
    must serve it (default: the CLUSTERCTL_VERIFY_RELEASE environment variable, if set).
    pytest's report goes to this process's stdout, with a summary line per host at the end.
    Raises InventoryError for a bad inventory, ClusterctlError for unknown --limit names or
    missing pytest/pytest-testinfra.
    """
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        raise ClusterctlError(
            "clusterctl verify needs pytest and pytest-testinfra "
            f"(missing: {', '.join(missing)}): pip install pytest pytest-testinfra"
        )
    if release is None:
        release = os.environ.get(ENV_RELEASE, "").strip() or None
    settings = Settings(Path(inventory).expanduser().resolve(), tuple(limit or ()) or None, release)
    make_targets(settings)  # a bad inventory or --limit fails here, in clusterctl's own words
    env = dict(os.environ)
    env.pop(ENV_LAB, None)
    env[ENV_INVENTORY] = str(settings.inventory)
    env[ENV_LIMIT] = ",".join(settings.limit or ())
    env[ENV_RELEASE] = release or ""
    sys.stdout.flush()
    return subprocess.run(pytest_argv(extra_pytest_args), env=env, check=False).returncode
