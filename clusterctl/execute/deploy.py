"""Deploy a release on a backend node and check it privately, over SSH on the node itself."""

from __future__ import annotations

import re
import time

from clusterctl.errors import ClusterctlError
from clusterctl.execute.apply import StepFailed
from clusterctl.execute.ssh import Remote
from clusterctl.model.schema import Deploy, Server

VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")

# $1 URL. Prints the status line and headers only.
_GET = 'curl -sS --max-time 5 -o /dev/null -D - -- "$1"'


def check_version(version: str) -> str:
    if not VERSION.fullmatch(version):
        raise ClusterctlError(
            f"--version {version!r} is not a release name (letters, digits, . _ + -; e.g. 2.1.0)"
        )
    return version


def deploy_argv(deploy: Deploy, version: str, server: Server) -> list[str]:
    if deploy.command is None:
        raise ClusterctlError("the inventory has no deploy.command; rollout cannot deploy")
    return [
        a.replace("{version}", version).replace("{server}", server.name) for a in deploy.command
    ]


def health_url(deploy: Deploy, server: Server) -> str:
    host = f"[{server.address}]" if ":" in server.address else server.address
    return f"http://{host}:{deploy.health.port or server.port}{deploy.health.path}"


def probe_node(remote: Remote, deploy: Deploy, server: Server) -> tuple[int, str | None]:
    """(status, release) the node's health URL answers with, asked on the node itself."""
    res = remote.sh(_GET, health_url(deploy, server), sudo=False)
    status = 0
    release = None
    header = deploy.health.version_header.lower() + ":"
    for line in res.out.splitlines():
        if line.startswith("HTTP/"):
            parts = line.split()
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        elif line.lower().startswith(header):
            release = line.split(":", 1)[1].strip()
    return status, release


def run_deploy(remote: Remote, deploy: Deploy, version: str, server: Server) -> float:
    argv = deploy_argv(deploy, version, server)
    started = time.monotonic()
    res = remote.run(argv, sudo=True, timeout=600)
    if not res.ok:
        raise StepFailed("deploy", res.words())
    return time.monotonic() - started


def private_check(remote: Remote, deploy: Deploy, version: str, server: Server) -> None:
    """Before users see it: the health URL answers as expected and reports the new version."""
    deadline = time.monotonic() + deploy.health.timeout / 1000
    last = "no answer"
    while True:
        status, release = probe_node(remote, deploy, server)
        if status == deploy.health.expect and release == version:
            return
        said = (
            f" with release {release}"
            if release
            else f" without a {deploy.health.version_header} header"
            if status
            else ""
        )
        last = f"{health_url(deploy, server)} answered {status or 'nothing'}{said}"
        if time.monotonic() > deadline:
            raise StepFailed("check", f"{last}; expected {deploy.health.expect} and {version}")
        time.sleep(0.5)
