"""Deploy a release on a backend node and check it privately, over SSH on the node itself."""

from __future__ import annotations

import re
import time
from pathlib import Path

from clusterctl.errors import ClusterctlError
from clusterctl.execute.apply import StepFailed
from clusterctl.execute.ssh import Remote, Result, SSHError
from clusterctl.model.queries import host_port
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


def _fill(argv: tuple[str, ...], version: str, server: Server) -> list[str]:
    return [a.replace("{version}", version).replace("{server}", server.name) for a in argv]


def deploy_argv(deploy: Deploy, version: str, server: Server) -> list[str]:
    if deploy.command is None:
        raise ClusterctlError(
            "the inventory has neither deploy.command nor deploy.release; rollout cannot deploy"
        )
    return _fill(deploy.command, version, server)


# $1 root, $2 version. Exit 0 if the release is there already, 3 if it is not.
_HAS_RELEASE = 'test -d "$1/releases/$2" || exit 3'

# $1 root, $2 version; the artifact (.tar.gz) on stdin. Unpacked beside, then renamed into
# place, so a release directory is either whole or absent.
_UNPACK = r"""set -e
mkdir -p -- "$1/releases"
tmp="$1/releases/.$2.unpack$$"
rm -rf -- "$tmp"; mkdir -m 755 -- "$tmp"
trap 'rm -rf -- "$tmp"' EXIT
tar -xzf - -C "$tmp" --no-same-owner
mv -T -- "$tmp" "$1/releases/$2"
trap - EXIT
"""

# $1 root, $2 version, $3 releases to keep. Switch `current` atomically, then prune the oldest.
_SWITCH = r"""set -e
touch -- "$1/releases/$2"
ln -sfn "releases/$2" "$1/.current.new$$"
mv -f -T -- "$1/.current.new$$" "$1/current"
"""
_PRUNE = r"""cd -- "$1/releases" || exit 0
ls -1t | grep -v -x -F -- "$2" | tail -n +"$3" | while IFS= read -r d; do rm -rf -- "$d"; done
"""

MAX_ARTIFACT = 512 * 1024 * 1024


def _artifact(deploy: Deploy, version: str, base: Path) -> bytes:
    from clusterctl.model.localfiles import artifact_problem, resolve_local

    assert deploy.release is not None
    path = resolve_local(deploy.release.artifact.replace("{version}", version), base).resolve()
    # Validation saw only the pattern; the version fills it in now (and could hold ../).
    why = artifact_problem(path)
    if why:
        raise StepFailed("deploy", f"artifact {path} {why}")
    try:
        if path.stat().st_size > MAX_ARTIFACT:
            raise StepFailed("deploy", f"artifact {path} is larger than 512 MiB")
        return path.read_bytes()
    except OSError as exc:
        raise StepFailed("deploy", f"artifact {path}: {exc.strerror}") from None


def _alive(res: Result, server: Server, step: str) -> Result:
    """A session that closed without an exit status died under the command: say so, so the
    caller reconnects instead of reading "exit status -1" as the command's own failure."""
    if res.rc == -1:
        raise SSHError(f"connection to {server.name} lost during {step}")
    return res


def deploy_release(
    remote: Remote, deploy: Deploy, version: str, server: Server, base: Path
) -> None:
    """The built-in strategy: upload and unpack the artifact if the release is new, switch
    `current` atomically, restart, keep the last deploy.keep_releases releases (at least 2, so
    the previous release is always there to go back to)."""
    rel = deploy.release
    assert rel is not None
    if remote.sh(_HAS_RELEASE, rel.root, version).rc != 0:
        data = _artifact(deploy, version, base)
        res = remote.sh(_UNPACK, rel.root, version, stdin=data)
        if not res.ok:
            raise StepFailed("deploy", f"unpacking the artifact on {server.name}: {res.words()}")
    res = remote.sh(_SWITCH, rel.root, version)
    if not res.ok:
        raise StepFailed("deploy", f"switching current on {server.name}: {res.words()}")
    res = _alive(
        remote.run(_fill(rel.restart, version, server), sudo=True, timeout=600), server, "restart"
    )
    if not res.ok:
        raise StepFailed("deploy", f"restart: {res.words()}")
    remote.sh(_PRUNE, rel.root, version, str(max(2, deploy.keep_releases)))


def health_url(deploy: Deploy, server: Server) -> str:
    where = host_port(server.address, deploy.health.port or server.port)
    return f"http://{where}{deploy.health.path}"


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


def run_deploy(
    remote: Remote, deploy: Deploy, version: str, server: Server, base: Path | None = None
) -> float:
    """Deploy `version` on the node; seconds taken. `base`: the inventory's folder."""
    started = time.monotonic()
    if deploy.release is not None:
        deploy_release(remote, deploy, version, server, base or Path.cwd())
        return time.monotonic() - started
    argv = deploy_argv(deploy, version, server)
    res = _alive(remote.run(argv, sudo=True, timeout=600), server, "deploy")
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
