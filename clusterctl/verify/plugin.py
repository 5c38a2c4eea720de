"""pytest plugin for `clusterctl verify`: a summary line per host after the run.

Loaded by run_verify with `-p clusterctl.verify.plugin`; a molecule scenario's conftest.py can
import its hooks. Tests say which host they check in their user_properties (checks.py does).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

# Where run_verify wants every check's outcome, as JSON, to print its own summary from.
ENV_REPORT = "CLUSTERCTL_VERIFY_REPORT"

HOST_PROPERTY = "clusterctl_host"
ROLE_PROPERTY = "clusterctl_role"
RELEASE_PROPERTY = "clusterctl_release"


@dataclass
class HostTally:
    role: str = ""
    passed: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    release: str = ""

    def line(self, host: str) -> str:
        parts = [f"{self.passed} passed"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed: {', '.join(self.failed)}")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        release = f"; release {self.release}" if self.release else ""
        state = "FAILED" if self.failed else "ok"
        return f"{host:<12} {self.role:<8} {state:<6} {', '.join(parts)}{release}"


def host_order(tallies: dict[str, HostTally]) -> list[str]:
    """Front ends, then backends, then VRRP groups (a group's check is on all its members)."""
    order = {"backend": 1, "vrrp": 2}
    return sorted(tallies, key=lambda h: (order.get(tallies[h].role, 0), h))


@dataclass(frozen=True)
class Check:
    """One check's outcome: its host, its name (pytest's test id) and, failed, why."""

    host: str
    role: str
    check: str
    outcome: str  # passed | failed | skipped
    message: str = ""
    release: str = ""  # the release a backend check found it serving


def _why(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    # checks.py fails with pytest.fail(pytrace=False): the long report is its message alone.
    text = report.longreprtext.strip()
    prefix = "Failed: "
    return text[len(prefix) :] if text.startswith(prefix) else text


class Tally:
    """Outcomes per host, collected as tests report and printed at the end."""

    def __init__(self) -> None:
        self.hosts: dict[str, HostTally] = {}
        self.checks: list[Check] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        host = props.get(HOST_PROPERTY)
        if not host:
            return
        tally = self.hosts.setdefault(str(host), HostTally())
        tally.role = str(props.get(ROLE_PROPERTY, tally.role))
        if RELEASE_PROPERTY in props:
            tally.release = str(props[RELEASE_PROPERTY])
        test = report.nodeid.rsplit("::", 1)[-1]
        if report.when != "call" and report.outcome == "passed":
            return  # setup and teardown that went well say nothing
        if report.outcome == "passed":
            tally.passed += 1
        elif report.outcome == "skipped":
            tally.skipped += 1
        elif test not in tally.failed:
            tally.failed.append(test)
        else:
            return  # a teardown failing after the call failed: one line per check
        message = "" if report.outcome == "passed" else _why(report)
        release = str(props.get(RELEASE_PROPERTY, ""))
        self.checks.append(Check(str(host), tally.role, test, report.outcome, message, release))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        target = os.environ.get(ENV_REPORT)
        if target:
            data = {"checks": [asdict(c) for c in self.checks]}
            Path(target).write_text(json.dumps(data), encoding="utf-8")

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.hosts:
            return
        terminalreporter.section("clusterctl verify: per host")
        for host in host_order(self.hosts):
            terminalreporter.write_line(self.hosts[host].line(host))


PLUGIN_NAME = "clusterctl-verify-tally"


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(Tally(), PLUGIN_NAME)
