"""Lab backend deploy script (runs *inside* a lab backend host, stdlib only).

Installed as /srv/app/bin/deploy.  Usage::

    deploy <version> [--broken]   create release (if missing), switch, restart
    deploy --start                start the app for the current release
    deploy --stop                 stop the app (drains in-flight requests)
    deploy --restart              restart the app for the current release
    deploy --status               print "running <release> pid <pid>" or exit 3

Configuration (address, port, interpreter) comes from /srv/app/app.json.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

APP_ROOT = Path(os.environ.get("LAB_APP_ROOT", "/srv/app"))
RUN_DIR = Path(os.environ.get("LAB_APP_RUN", "/run/app"))
KEEP_RELEASES = 5
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
START_TIMEOUT = 10.0


# Stays here, not in errors.py: this file is copied to lab hosts as bin/deploy and runs there
# alone, with the standard library only; main() prints it as one "deploy: error:" line.
class DeployError(Exception):
    pass


def _config() -> dict[str, object]:
    with open(APP_ROOT / "app.json") as fh:
        data: dict[str, object] = json.load(fh)
    return data


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _current_pid() -> int | None:
    try:
        pid = int((RUN_DIR / "app.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _current_release() -> str:
    return (APP_ROOT / "current").resolve().name


def _probe(address: str, port: int) -> tuple[int, str]:
    url = f"http://{address}:{port}/health"
    req = urllib.request.Request(url, headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310 (http only)
            return resp.status, resp.headers.get("X-Release", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("X-Release", "")


def _start_new(cfg: dict[str, object]) -> int:
    """Start a new app process and wait until it is listening; return its pid."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    log_dir = Path("/var/log/app")
    log_dir.mkdir(parents=True, exist_ok=True)
    ready = RUN_DIR / f"ready.{os.getpid()}.{time.monotonic_ns()}"
    argv = [
        str(cfg["python"]),
        str(APP_ROOT / "bin" / "app.py"),
        "--bind",
        str(cfg["address"]),
        "--port",
        str(cfg["port"]),
        "--app-root",
        str(APP_ROOT),
        "--ready-file",
        str(ready),
    ]
    with open(log_dir / "app.log", "ab") as log, open(os.devnull, "rb") as null:
        proc = subprocess.Popen(
            argv, stdin=null, stdout=log, stderr=log, start_new_session=True, close_fds=True
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if ready.exists():
            ready.unlink()
            return proc.pid
        if proc.poll() is not None:
            raise DeployError(f"app exited with status {proc.returncode}; see /var/log/app/app.log")
        time.sleep(0.02)
    proc.kill()
    raise DeployError(f"app did not start listening within {START_TIMEOUT:.0f}s")


def _stop(pid: int | None, wait: float) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.05)
    if wait:
        (RUN_DIR / f"closed.{pid}").unlink(missing_ok=True)


def restart() -> int:
    """Start a new process for the current release, then drain the old one."""
    cfg = _config()
    old = _current_pid()
    new = _start_new(cfg)
    (RUN_DIR / "app.pid.tmp").write_text(f"{new}\n")
    (RUN_DIR / "app.pid.tmp").replace(RUN_DIR / "app.pid")
    # The old process closes its listener at once (then says so) and finishes
    # in-flight requests (up to 60 s for /slow) in the background.
    _stop(old, wait=0.0)
    if old is not None:
        closed = RUN_DIR / f"closed.{old}"
        deadline = time.monotonic() + START_TIMEOUT
        while not closed.exists() and _pid_alive(old) and time.monotonic() < deadline:
            time.sleep(0.01)
        closed.unlink(missing_ok=True)
    want = _current_release()
    deadline = time.monotonic() + START_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, release = _probe(str(cfg["address"]), int(str(cfg["port"])))
            if release == want:
                return new
            last = f"HTTP {status} release {release!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    raise DeployError(f"new app for release {want} is not answering ({last})")


def _prune(keep: int) -> None:
    releases = APP_ROOT / "releases"
    current = os.path.realpath(APP_ROOT / "current")
    dirs = sorted(
        (p for p in releases.iterdir() if p.is_dir() and not p.is_symlink()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in dirs[keep:]:
        if os.path.realpath(old) != current:
            shutil.rmtree(old, ignore_errors=True)


def deploy(version: str, broken: bool) -> None:
    if not VERSION_RE.match(version):
        raise DeployError(f"invalid version {version!r} (letters, digits, '.', '_', '+', '-')")
    rel = APP_ROOT / "releases" / version
    if not rel.is_dir():
        # Stand-in for unpacking a build artifact.
        tmp = APP_ROOT / "releases" / f".{version}.tmp{os.getpid()}"
        tmp.mkdir(parents=True)
        (tmp / "VERSION").write_text(version + "\n")
        tmp.rename(rel)
    broken_flag = rel / "BROKEN"
    if broken:
        broken_flag.write_text("marked broken by deploy --broken\n")
    elif broken_flag.exists():
        broken_flag.unlink()
    os.utime(rel)  # most recently deployed release is newest
    link_tmp = APP_ROOT / f".current.tmp{os.getpid()}"
    if link_tmp.is_symlink():
        link_tmp.unlink()
    link_tmp.symlink_to(f"releases/{version}")
    link_tmp.replace(APP_ROOT / "current")  # atomic rename(2), like mv -T
    restart()
    _prune(KEEP_RELEASES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy", description="lab backend deploy")
    parser.add_argument("version", nargs="?")
    parser.add_argument("--broken", action="store_true", help="mark the release broken")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--start", action="store_true")
    group.add_argument("--stop", action="store_true")
    group.add_argument("--restart", action="store_true")
    group.add_argument("--status", action="store_true")
    args = parser.parse_args(argv)
    try:
        if not args.status:
            RUN_DIR.mkdir(parents=True, exist_ok=True)
            lock = (RUN_DIR / "deploy.lock").open("a")
            fcntl.flock(lock, fcntl.LOCK_EX)  # one deploy/start/stop at a time; freed on exit
        if args.status:
            pid = _current_pid()
            if pid is None:
                print("stopped")
                return 3
            print(f"running {_current_release()} pid {pid}")
            return 0
        if args.stop:
            _stop(_current_pid(), wait=65.0)
            print("stopped")
            return 0
        if args.start:
            pid = _current_pid()
            if pid is None:
                pid = restart()
            print(f"running {_current_release()} pid {pid}")
            return 0
        if args.restart:
            pid = restart()
            print(f"running {_current_release()} pid {pid}")
            return 0
        if not args.version:
            parser.error("a version is required")
        deploy(args.version, args.broken)
        print(f"deployed {args.version} on {os.uname().nodename}")
        return 0
    except (DeployError, OSError) as exc:
        print(f"deploy: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
