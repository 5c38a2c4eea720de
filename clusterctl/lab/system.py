"""Small helpers that talk to the machine: commands, files, namespaces, processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from clusterctl.drivers import DRIVERS, driver_for
from clusterctl.lab.types import LabError

# With the packages a kind's lab hosts also load (nginx: its Lua module, for the Lua balancer).
PACKAGES = " ".join(
    p for d in DRIVERS.values() for p in (d.package, *getattr(d, "lab_packages", ()))
)
INSTALL_HINT = f"apt-get install -y {PACKAGES} openssh-server iproute2 util-linux"
SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run(argv: list[str], *, input_text: str | None = None, check: bool = True) -> str:
    try:
        proc = subprocess.run(
            argv, input=input_text, capture_output=True, text=True, check=False, timeout=60
        )
    except FileNotFoundError as exc:
        raise LabError(f"missing {argv[0]}: {INSTALL_HINT}") from exc
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().replace("\n", "; ")
        raise LabError(f"{' '.join(argv)} failed: {msg}")
    return proc.stdout


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def netns_names() -> list[str]:
    out = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def link_names() -> list[str]:
    out = run(["ip", "-j", "link", "show"], check=False)
    try:
        return [str(link["ifname"]) for link in json.loads(out or "[]")]
    except (ValueError, KeyError, TypeError):
        return []


def disable_ipv6(ifname: str) -> None:
    # Keep the lab silent: no IPv6 router solicitations / DAD on the lab links.
    with contextlib.suppress(OSError):
        Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6").write_text("1\n")


def proc_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "clusterctl lab needs root (network namespaces, bridges, mounts): run it with sudo"
        )


def python_path() -> str:
    return "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def require_binaries(kinds: list[str]) -> None:
    needed = {
        "ip": "iproute2",
        "unshare": "util-linux",
        "mount": "mount",
        "hostname": "hostname",
        "ssh-keygen": "openssh-client",
        "cp": "coreutils",
    }
    for kind in kinds:
        driver = driver_for(kind)
        for binary in (driver.binary, *driver.lab_tools):
            needed[binary] = driver.package
    missing = sorted(binary for binary in needed if shutil.which(binary, path=SYS_PATH) is None)
    for kind in kinds:  # files a kind's lab hosts load (a lab without them tests less)
        missing += [f for f in getattr(driver_for(kind), "probe_files", ()) if not Path(f).exists()]
    if not Path("/usr/sbin/sshd").exists():
        missing.append("/usr/sbin/sshd")
    if missing:
        raise LabError(f"missing {', '.join(missing)}: {INSTALL_HINT}")


def ns_inode(ns: str) -> int | None:
    try:
        return Path(f"/run/netns/{ns}").stat().st_ino
    except OSError:
        return None
