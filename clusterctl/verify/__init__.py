"""`clusterctl verify`: testinfra checks against the real hosts of an inventory.

Per front end: the server runs and listens on every service port; every file clusterctl
installs is on the host byte for byte as rendered (private keys by checksum only), with its
owner and mode; HAProxy's admin socket is root's alone; the admin port refuses other hosts
(Apache's balancer-manager answers on 127.0.0.1 only). Per backend: the health URL, asked on
the node itself, answers as the inventory expects, with the expected release if one is given.
Per VRRP member: keepalived runs with every group it is in (its files are checked as the
front end's); per VRRP group: the virtual address is on exactly one member (vrrp.py).

The checks are a pytest module (checks.py) run in a pytest subprocess over testinfra's ssh
backend with strict host keys (targets.py writes the ssh_config). pytest's own report is not
shown (`--raw` shows it): the plugin hands every check's outcome back as JSON and clusterctl
prints a line per host, each failure in its own words, and the totals.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from clusterctl.errors import ClusterctlError
from clusterctl.ui import plural
from clusterctl.verify.plugin import ENV_REPORT, Check, HostTally, host_order
from clusterctl.verify.targets import (
    ENV_INVENTORY,
    ENV_LAB,
    ENV_LIMIT,
    ENV_RELEASE,
    Settings,
    make_targets,
)

__all__ = [
    "ENV_INVENTORY",
    "ENV_LAB",
    "ENV_LIMIT",
    "ENV_RELEASE",
    "VerifyReport",
    "checks_path",
    "run_verify",
    "verify_checks",
]

NEEDS = ("pytest", "testinfra")


def checks_path() -> Path:
    """The packaged pytest module with the checks."""
    return Path(__file__).resolve().parent / "checks.py"


def pytest_argv(extra_pytest_args: list[str], raw: bool = True) -> list[str]:
    """pytest's command line; without `raw`, with no report of its own (the terminal plugin
    off: clusterctl prints the summary)."""
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
        *(["-rA", "--tb=short", "--no-header"] if raw else ["-p", "no:terminal"]),
        *extra_pytest_args,
    ]


@dataclass
class VerifyReport:
    """Every check's outcome, and pytest's exit status."""

    rc: int
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == "failed"]

    def summary(self) -> list[str]:
        """A line per host, then each failure in its own words, then one line of totals."""
        tallies: dict[str, HostTally] = {}
        for c in self.checks:
            t = tallies.setdefault(c.host, HostTally(role=c.role))
            t.release = c.release or t.release
            if c.outcome == "passed":
                t.passed += 1
            elif c.outcome == "skipped":
                t.skipped += 1
            else:
                t.failed.append(c.check)
        hosts = host_order(tallies)
        lines = [tallies[h].line(h) for h in hosts]
        groups = [h for h in hosts if tallies[h].role == "vrrp"]
        for c in self.failed:
            first, *rest = c.message.splitlines() or [""]
            lines.append(f"FAILED {c.host} {c.check}: {first}")
            lines.extend(f"    {ln}" for ln in rest)
        bad = {c.host for c in self.failed}
        checked = plural(len(hosts) - len(groups), "host")
        checked += f" and {plural(len(groups), 'vrrp group')}" if groups else ""
        lines.append(
            f"verify: {checked} checked, {len(bad)} failed "
            f"({plural(len(self.checks), 'check')}, {len(self.failed)} failed)"
        )
        return lines


def verify_checks(
    inventory: Path,
    limit: list[str] | None,
    extra_pytest_args: list[str],
    *,
    release: str | None = None,
    raw: bool = False,
) -> VerifyReport:
    """Run the checks against `inventory`'s hosts and collect every check's outcome.

    `limit`: only these hosts (front-end or backend names). `release`: every checked backend
    must serve it (default: the CLUSTERCTL_VERIFY_RELEASE environment variable, if set).
    `raw`: pytest's own report goes to this process's stdout as well. Raises InventoryError for
    a bad inventory, ClusterctlError for unknown --limit names, missing pytest/pytest-testinfra
    or a run that ended before any check reported.
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
    with tempfile.TemporaryDirectory(prefix="clusterctl-verify-") as tmp:
        report_file = Path(tmp) / "report.json"
        env[ENV_REPORT] = str(report_file)
        argv = pytest_argv(extra_pytest_args, raw)
        proc = subprocess.run(argv, env=env, check=False, capture_output=not raw, text=True)
        if not report_file.exists():
            said = "" if raw else (proc.stderr or proc.stdout).strip().splitlines()
            last = said[-1] if said else f"pytest exited with status {proc.returncode}"
            raise ClusterctlError(f"verify stopped before any check ran: {last}")
        data = json.loads(report_file.read_text(encoding="utf-8"))
    checks = [Check(**c) for c in data.get("checks", [])]
    return VerifyReport(proc.returncode, checks)


def run_verify(
    inventory: Path,
    limit: list[str] | None,
    extra_pytest_args: list[str],
    *,
    release: str | None = None,
    raw: bool = False,
) -> int:
    """Run the checks and print their summary; 0 when every check passed, else 1.

    The summary is a line per host, then every failure with its message, then the totals.
    """
    report = verify_checks(inventory, limit, extra_pytest_args, release=release, raw=raw)
    for line in report.summary():
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    return 0 if report.rc == 0 and not report.failed else 1
