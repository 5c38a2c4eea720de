"""Validators for paths: files on the hosts, and local files clusterctl reads or ships.

A path on a host must be absolute, normal, of plain characters, short enough for the file
system, and never a system file or anything that runs code or grants access there; a front end's
paths are further held to its kind's own folders (semantics.py, with each driver's list). A
local file that clusterctl ships (TLS files, release artifacts) must not come from where private
keys live.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Any

from clusterctl.model.checks import CheckFailed, _describe, _plain_text, show
from clusterctl.remote_paths import STATE_DIR

# Files clusterctl must never write to or read from, whatever an inventory says.
_SYSTEM_PREFIXES = (
    "/bin",
    "/boot",
    "/dev",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/sbin",
    "/sys",
    "/usr",
    "/root/.ssh",
    "/etc/ssh",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/pam.d",
    "/etc/cron.d",
    "/etc/systemd",
    "/etc/init.d",
    "/etc/ld.so.preload",
)
_SYSTEM_FILES = frozenset(
    {
        "/",
        "/etc",
        "/etc/passwd",
        "/etc/shadow",
        "/etc/group",
        "/etc/gshadow",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/fstab",
        "/etc/crontab",
        "/etc/profile",
        "/etc/environment",
        "/etc/ld.so.conf",
        "/root",
        "/var",
        "/run",
        "/tmp",  # noqa: S108 - refused, not used
        "/home",
    }
)


def under(path: str, folders: tuple[str, ...] | frozenset[str]) -> bool:
    """Whether `path` is one of `folders` or lies inside one (no `..` games: paths are normal)."""
    norm = posixpath.normpath(path)
    return any(norm == f or norm.startswith(f.rstrip("/") + "/") for f in folders)


def is_system_path(path: str) -> bool:
    norm = posixpath.normpath(path)
    return norm in _SYSTEM_FILES or under(norm, _SYSTEM_PREFIXES)


# On a host, beyond the system files: what runs code or grants access at login, at boot or on
# a timer, and clusterctl's own state (its cluster lock). Never a place for a front end's file,
# not even one the user names under outside_paths.
_HOST_PREFIXES = (
    "/root",
    "/etc/cron.hourly",
    "/etc/cron.daily",
    "/etc/cron.weekly",
    "/etc/cron.monthly",
    "/etc/cron.yearly",
    "/etc/anacrontab",
    "/var/spool",
    "/etc/profile.d",
    "/etc/bash.bashrc",
    "/etc/shadow-",
    "/etc/passwd-",
    "/etc/group-",
    "/etc/gshadow-",
    "/etc/nsswitch.conf",
    "/etc/security",
    "/etc/login.defs",
    "/etc/ld.so.conf.d",
    "/etc/modprobe.d",
    "/etc/modules-load.d",
    "/etc/sysctl.conf",
    "/etc/sysctl.d",
    "/etc/tmpfiles.d",
    "/etc/udev",
    "/etc/apt",
    "/etc/logrotate.d",
    "/etc/rc.local",
    "/etc/network",
    "/etc/default",
    "/etc/polkit-1",
    "/etc/xdg",
    "/run/systemd",
    "/var/lib/systemd",
    "/var/lib/dpkg",
    STATE_DIR,
    "/var/lib/clusterctl-labs",
)
_REMOTE_PATH = re.compile(r"/[A-Za-z0-9._+@-]+(/[A-Za-z0-9._+@-]+)*")
MAX_NAME_BYTES = 255  # a file name (one path component) on Linux file systems
MAX_REMOTE_PATH = 1024  # well under PATH_MAX (4096), with room for a staging root before it
MAX_LOCAL_PATH = 4095


def is_host_sensitive(path: str) -> bool:
    """A system file, or a file on a host that runs code or grants access (cron, profile,
    dotfiles) or holds clusterctl's own state."""
    norm = posixpath.normpath(path)
    if norm.startswith("/var/run/"):  # a link to /run on every current distribution
        norm = norm[len("/var") :]
    hidden = any(part.startswith(".") for part in norm.split("/"))
    return hidden or is_system_path(norm) or under(norm, _HOST_PREFIXES)


def _path_length(s: str, limit: int) -> None:
    raw = s.encode("utf-8")
    if len(raw) > limit:
        raise CheckFailed(f"path is {len(raw)} bytes long; the limit is {limit}")
    for part in raw.split(b"/"):
        if len(part) > MAX_NAME_BYTES:
            raise CheckFailed(
                f"path component {show(part.decode('utf-8')[:20] + '...')} is {len(part)} "
                f"bytes long; file names hold at most {MAX_NAME_BYTES}"
            )


def remote_path(value: Any) -> str:
    """An absolute, normalised path on a host, not a system file or anything that runs code or
    grants access there (front ends' paths are further held to their kind's folders)."""
    s = _plain_text(value)
    _path_length(s, MAX_REMOTE_PATH)
    if not _REMOTE_PATH.fullmatch(s):
        raise CheckFailed(
            f"{show(s)} is not an absolute path of plain characters (e.g. /etc/haproxy/haproxy.cfg)"
        )
    if posixpath.normpath(s) != s or "/../" in s + "/" or "/./" in s + "/":
        raise CheckFailed(f"path {show(s)} is not normalised (use {show(posixpath.normpath(s))})")
    if is_host_sensitive(s):
        raise CheckFailed(f"path {show(s)} points at a system file; clusterctl will not touch it")
    return s


def remote_paths(value: Any) -> tuple[str, ...]:
    """A list of remote paths (each as remote_path)."""
    if not isinstance(value, list) or not value:
        raise CheckFailed(f"expected a non-empty list of absolute paths, got {_describe(value)}")
    return tuple(remote_path(v) for v in value)


# Pseudo-files that never end (/dev/zero) or are not files at all; /dev/null is a known_hosts
# some people use on purpose, and it reads as empty.
_PSEUDO = ("/dev", "/proc", "/sys")


def ssh_path(value: Any) -> str:
    """A path to an SSH file (key, known_hosts) on the machine running clusterctl."""
    s = _plain_text(value)
    if not s or s.strip() != s:
        raise CheckFailed(f"{show(s)} is not a file path")
    _path_length(s, MAX_LOCAL_PATH)
    if s != "/dev/null" and s.startswith("/") and under(s, _PSEUDO):
        raise CheckFailed(f"{show(s)} is a device or kernel file, not a file clusterctl can read")
    return s


def lab_roots() -> tuple[str, ...]:
    """Where `clusterctl lab` keeps its labs' state (their SSH keys); as lab.core.LABS_ROOT."""
    env = os.environ.get("CLUSTERCTL_LAB_ROOT")
    return ("/var/lib/clusterctl-labs", *([env.rstrip("/") or "/"] if env else []))


def secret_place(path: str) -> str | None:
    """Why clusterctl will not ship a local file from `path`, if it lies where private keys live:
    any .ssh folder, or a lab's state folder."""
    parts = path.split("/")
    if ".ssh" in parts:
        return "lies under a .ssh folder (SSH keys); clusterctl will not ship it"
    if path.startswith("/") and under(path, lab_roots()):
        return "lies in a lab's state folder (its SSH keys); clusterctl will not ship it"
    return None


def local_path(value: Any) -> str:
    """A file clusterctl reads and installs (relative to the inventory's folder, or ~).

    Written as an absolute path it is checked here; the loader checks again where a relative
    path really leads once resolved.
    """
    s = ssh_path(value)
    if s.startswith("/") and is_system_path(s):
        raise CheckFailed(f"path {show(s)} points at a system file; clusterctl will not read it")
    why = secret_place(s)
    if why:
        raise CheckFailed(f"{show(s)} {why}")
    return s
