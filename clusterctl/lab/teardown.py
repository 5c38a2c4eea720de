"""Process discovery and teardown: by the state file and by the lab's name-derived prefixes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from clusterctl.lab.naming import Naming
from clusterctl.lab.state import State, ref_path
from clusterctl.lab.system import link_names, netns_names, ns_inode, proc_alive, reap
from clusterctl.lab.types import LabError


def lab_pids(naming: Naming, state_dir: Path | None, inodes: set[int]) -> set[int]:
    """Every process belonging to the lab: in one of its netns, or marked, or naming its dir."""
    inodes = set(inodes)
    for ns in netns_names():
        if ns.startswith(naming.netns_prefix):
            ino = ns_inode(ns)
            if ino is not None:
                inodes.add(ino)
    wanted_ns = {f"net:[{ino}]" for ino in inodes}
    marker = f"CLUSTERCTL_LAB_ID={naming.tag}".encode()
    needle = str(state_dir).encode() if state_dir is not None else None
    me = os.getpid()
    pids: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == me:
            continue
        try:
            if str(Path(f"/proc/{pid}/ns/net").readlink()) in wanted_ns:
                pids.add(pid)
                continue
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            if marker in environ.split(b"\0"):
                pids.add(pid)
                continue
            if needle is not None:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                if needle + b"/" in cmdline:
                    pids.add(pid)
        except OSError:
            continue
    return {pid for pid in pids if proc_alive(pid)}


def kill_all(naming: Naming, state_dir: Path | None, inodes: set[int]) -> None:
    deadline = time.monotonic() + 10.0
    sig = signal.SIGTERM
    term_sent_at = time.monotonic()
    while True:
        pids = lab_pids(naming, state_dir, inodes)
        if not pids:
            return
        if time.monotonic() > deadline:
            raise LabError(f"processes of lab {naming.name!r} would not die: {sorted(pids)}")
        if sig == signal.SIGTERM and time.monotonic() - term_sent_at > 2.0:
            sig = signal.SIGKILL
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        for _ in range(10):
            time.sleep(0.05)
            for pid in pids:
                reap(pid)
            if not any(proc_alive(pid) for pid in pids):
                break


def teardown(naming: Naming, state_dir: Path | None, state: State | None) -> None:
    inodes: set[int] = set()
    if state is not None:
        inodes = {int(v) for v in state.data.get("netns", {}).values() if v}
        for pid in state.data.get("pids", {}).values():
            reap(int(pid))
    errors: list[str] = []
    try:
        kill_all(naming, state_dir, inodes)
    except LabError as exc:
        errors.append(str(exc))
    recorded_ns = set(state.data.get("netns", {})) if state else set()
    for ns in sorted(recorded_ns | {n for n in netns_names() if n.startswith(naming.netns_prefix)}):
        if Path(f"/run/netns/{ns}").exists():
            proc = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
            if proc.returncode != 0:
                errors.append(f"ip netns del {ns}: {proc.stderr.strip()}")
    links = link_names()
    for link in links:
        if link.startswith(naming.veth_prefix):
            subprocess.run(["ip", "link", "del", link], capture_output=True)
    if naming.bridge in links:
        proc = subprocess.run(["ip", "link", "del", naming.bridge], capture_output=True, text=True)
        if proc.returncode != 0:
            errors.append(f"ip link del {naming.bridge}: {proc.stderr.strip()}")
    if state_dir is not None and owned_state_dir(state_dir, naming):
        shutil.rmtree(state_dir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        ref_path(naming.name).unlink()
    if errors:
        raise LabError(f"lab {naming.name!r} not fully removed: {'; '.join(errors)}")


def owned_state_dir(state_dir: Path, naming: Naming) -> bool:
    """Only ever delete a directory the lab made (guards against a bad state_dir)."""
    marker = state_dir / ".clusterctl-lab"
    try:
        return marker.read_text().strip() == naming.name
    except OSError:
        return False
