"""Probes of a lab's hosts: readiness while ``up`` waits, liveness and health for ``status``."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from clusterctl.drivers import driver_for
from clusterctl.lab.hosts import APP_PORT, host_dir
from clusterctl.lab.naming import Naming
from clusterctl.lab.state import State
from clusterctl.lab.system import ns_inode, proc_alive, reap, run
from clusterctl.lab.types import LabError, LabHost
from clusterctl.model.queries import host_port

READY_TIMEOUT = 30.0


def ssh_banner(address: str, port: int = 22, timeout: float = 1.0) -> str | None:
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = sock.recv(256)
    except OSError:
        return None
    text = data.decode("ascii", "replace").strip()
    return text if text.startswith("SSH-") else None


def http_health(address: str, port: int, timeout: float = 1.0) -> tuple[int, str]:
    url = f"http://{host_port(address, port)}/health"
    req = urllib.request.Request(url, headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (http only)
            return int(resp.status), resp.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace").strip()
    except OSError as exc:
        return 0, str(exc)


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def wait_ready(state_dir: Path, hosts: list[LabHost], state: State) -> None:
    pending = {h.name: h for h in hosts}
    deadline = time.monotonic() + READY_TIMEOUT
    while pending:
        for name, host in list(pending.items()):
            hdir = host_dir(state_dir, host)
            try:
                ready = (hdir / "ready").read_text().strip()
            except OSError:
                ready = ""
            pid = int(state.data["pids"][name])
            if ready.startswith("fail") or (not ready and not proc_alive(pid)):
                reap(pid)
                detail = ready or "init exited"
                raise LabError(
                    f"host {name} failed to start ({detail}): {log_tail(hdir / 'init.log')}"
                )
            if ready != "ok" or ssh_banner(host.address, timeout=0.5) is None:
                continue
            if host.role == "backend" and http_health(host.address, APP_PORT)[0] != 200:
                continue
            del pending[name]
        if not pending:
            break
        if time.monotonic() > deadline:
            raise LabError(
                f"hosts {', '.join(sorted(pending))} not ready after {READY_TIMEOUT:.0f}s; "
                f"see {state_dir}/hosts/*/init.log"
            )
        time.sleep(0.05)


def subnet_conflict(naming: Naming) -> str | None:
    out = run(["ip", "-j", "-4", "addr", "show"], check=False)
    try:
        links = json.loads(out or "[]")
    except ValueError:
        return None
    for link in links:
        for addr in link.get("addr_info", []):
            try:
                ip = ipaddress.ip_address(addr.get("local", ""))
            except ValueError:
                continue
            if ip in naming.subnet:
                return f"{ip} on {link.get('ifname')}"
    return None


def liveness_problems(state: State) -> str:
    problems = []
    for host, pid in state.data.get("pids", {}).items():
        if not proc_alive(int(pid)):
            problems.append(f"{host} is down")
    return ", ".join(problems)


def frontend_service(host: LabHost, init_pid: int) -> tuple[bool, str]:
    driver = driver_for(host.kind)
    comm = driver.processes[0]
    ino = ns_inode(host.netns)
    running = False
    if ino is not None:
        want = f"net:[{ino}]"
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if (
                    Path(f"/proc/{entry.name}/comm").read_text().strip() == comm
                    and str(Path(f"/proc/{entry.name}/ns/net").readlink()) == want
                ):
                    running = True
                    break
            except OSError:
                continue
    if not running:
        return False, f"{comm} not running"
    return driver.lab_health(Path(f"/proc/{init_pid}/root"))
