"""The cluster lock's copy on one host, and the pure rules that judge what a host reports.

Each host keeps at most one lock: a directory made by an atomic `mkdir`, holding a JSON record
(holder, time, command, id, the holder's machine and process, its lease). Every change to it
runs under `flock` on a guard file next to it, so "look, decide, replace" is one step on that
host and a record is never seen half written. The quorum over many hosts is in quorum.py.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import math
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from clusterctl.errors import ClusterctlError
from clusterctl.errors import LockError as LockError
from clusterctl.errors import LockHeld as LockHeld
from clusterctl.execute.ssh import Remote
from clusterctl.remote_paths import LOCK_DIR as LOCK_DIR

DEFAULT_LEASE = 60.0

# $1 lock dir. Every script that changes the lock runs `main` with fd 9 on the guard; a guard
# that cannot be opened (read-only or broken state dir) is reported, never taken for success.
_GUARDED = r"""d=$1
view() {
  if [ -f "$d/info" ]; then
    echo "HELD $(( $(date +%s) - $(stat -c %Y -- "$d/info") ))"; cat -- "$d/info"
  elif [ -e "$d" ]; then echo UNRECORDED; cat -- "$d/info" 2>/dev/null
  else echo FREE; fi
}
ours() { [ -f "$d/info" ] && grep -qF -- "\"id\": \"$1\"" "$d/info"; }
age() { echo $(( $(date +%s) - $(stat -c %Y -- "$d/info") )); }
mkdir -p -- "$(dirname -- "$d")" 2>/dev/null
command -v flock >/dev/null || { echo "ERROR flock is not installed (apt-get install -y util-linux)"; exit 0; }
wrapped() { flock -w 5 9 || { echo "ERROR $d.guard stayed busy for 5s"; return 0; }; main "$@"; }
wrapped "$@" 9>>"$d.guard" || echo "ERROR cannot open the lock guard $d.guard"
"""

# $2 record, $3 id of a stale lock to replace (or ""), $4 the age it must still have.
# The record is read back: a full disk lets mkdir succeed and the write fail.
_ACQUIRE = r"""main() {
  if [ -n "$3" ] && ours "$3" && [ "$(age)" -ge "$4" ]; then
    rm -rf -- "$d" || { echo "ERROR cannot remove the stale lock $d"; return 0; }
  fi
  if mkdir -m 700 -- "$d" 2>/dev/null; then
    if err=$( { printf '%s\n' "$2" | cat > "$d/info.tmp"; } 2>&1 ) &&
       [ "$(cat -- "$d/info.tmp")" = "$2" ] && mv -f -- "$d/info.tmp" "$d/info"; then
      echo ACQUIRED
    else
      rm -rf -- "$d"
      if [ -e "$d" ]; then left=" (and $d could not be removed)"; else left=""; fi
      echo "WRITEFAIL cannot write the lock record: ${err:-it reads back different}$left"
    fi
  else view; fi
}
"""
# $2 lock id: keep the lease alive, judged by the host's own clock (the record's mtime).
_RENEW = r"""main() { if ours "$2"; then touch -c -- "$d/info" && echo RENEWED || echo "ERROR cannot renew"
  else view; fi; }
"""
# $2 lock id: remove only the lock with that id.
_RELEASE = r"""main() { if ours "$2"; then rm -rf -- "$d" && echo RELEASED || echo "ERROR cannot remove $d"
  else view; fi; }
"""
# $2 the unreadable record exactly as `lock show` saw it: remove only that one.
_BREAK_UNRECORDED = r"""main() {
  cur=$(cat -- "$d/info" 2>/dev/null)
  if [ -e "$d" ] && [ "$cur" = "$2" ]; then rm -rf -- "$d" && echo RELEASED || echo "ERROR cannot remove $d"
  else view; fi
}
"""
_SHOW = r"""d=$1
if [ -f "$d/info" ]; then
  echo "HELD $(( $(date +%s) - $(stat -c %Y -- "$d/info") ))"; cat -- "$d/info"
elif [ -e "$d" ]; then echo UNRECORDED; cat -- "$d/info" 2>/dev/null
else echo FREE; fi
"""


@dataclass(frozen=True)
class Machine:
    """What makes "the same machine" provable: a pid only means something on the same boot of
    the same host in the same pid namespace (two containers share a hostname and a boot id)."""

    hostname: str
    boot_id: str
    pidns: str

    def same(self, info: LockInfo) -> bool:
        return bool(self.boot_id and info.pid) and (
            (info.machine, info.boot_id, info.pidns) == (self.hostname, self.boot_id, self.pidns)
        )


@dataclass(frozen=True)
class LockInfo:
    id: str
    holder: str
    since: float
    command: str
    machine: str = ""
    boot_id: str = ""
    pidns: str = ""
    pid: int = 0
    pid_start: int = 0
    lease: float = 0.0  # 0: no lease (a record of an older clusterctl); never expires by time

    def describe(self) -> str:
        age = int(time.time() - self.since)
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        return f"held by {self.holder} since {when} ({age}s ago) for {self.command!r}, lock id {self.id}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def key(self) -> tuple[float, str]:
        """The order contenders agree on: older first, then the id. Both sides read the same
        records, so they reach the same verdict whatever their clocks say."""
        return (self.since, self.id)


State = Literal["ours", "free", "held", "unrecorded", "writefail", "error", "released", "renewed"]


@dataclass(frozen=True)
class HostView:
    """What one host said about its lock."""

    host: str
    state: State
    info: LockInfo | None = None
    age: float = 0.0  # seconds since the record was written or renewed, by the host's clock
    raw: str = ""  # the record's text as the host has it (for an unreadable one)
    detail: str = ""


def parse_record(text: str) -> LockInfo | None:
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            return None
        return LockInfo(
            id=str(data["id"]),
            holder=str(data["holder"]),
            since=float(data["since"]),
            command=str(data["command"]),
            machine=str(data.get("machine", "")),
            boot_id=str(data.get("boot_id", "")),
            pidns=str(data.get("pidns", "")),
            pid=int(data.get("pid", 0)),
            pid_start=int(data.get("pid_start", 0)),
            lease=max(0.0, float(data.get("lease", 0.0))),
        )
    except (ValueError, KeyError, TypeError):
        return None


def parse_reply(host: str, text: str, mine: str = "") -> HostView:
    """Turn a script's answer into a view; a record that does not parse is `unrecorded`."""
    first, _, rest = text.partition("\n")
    word, _, arg = first.strip().partition(" ")
    rest = rest.rstrip("\n")
    if word == "ACQUIRED":
        return HostView(host, "ours")
    if word in ("RELEASED", "RENEWED", "FREE"):
        return HostView(host, "free" if word == "FREE" else word.lower())  # type: ignore[arg-type]
    if word == "WRITEFAIL":
        return HostView(host, "writefail", detail=arg)
    if word == "HELD":
        info = parse_record(rest)
        try:
            age = float(arg)
        except ValueError:
            age = 0.0
        if info is None:
            return HostView(host, "unrecorded", raw=rest, age=age)
        return HostView(host, "ours" if mine and info.id == mine else "held", info, age, rest)
    if word == "UNRECORDED":
        return HostView(host, "unrecorded", raw=rest)
    detail = arg if word == "ERROR" else (text.strip()[:300] or "no answer")
    return HostView(host, "error", detail=detail)


def process_alive(pid: int, start: int) -> bool:
    """False only when the process is provably gone: no such pid, a zombie, or another process
    that got the pid since (a different start time)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20:
        return True
    if fields[0] in ("Z", "X"):
        return False
    return start == 0 or int(fields[19]) == start


def stale_reason(
    info: LockInfo,
    ages: list[float],
    me: Machine,
    alive: Callable[[int, int], bool] = process_alive,
) -> tuple[str, int] | None:
    """Why a lock may be taken over without asking, and the age (host clock) its record must
    still have at the takeover, or None. Only two proofs count: its holder ran on this machine
    and its process is gone, or every copy seen outlived its lease without a renewal."""
    if me.same(info) and not alive(info.pid, info.pid_start):
        return f"its process {info.pid} on {info.machine} is gone", 0
    if info.lease > 0 and ages and min(ages) > info.lease:
        over = min(ages) - info.lease
        reason = f"its lease of {info.lease:.0f}s ran out {over:.0f}s ago without a renewal"
        return reason, math.ceil(info.lease)
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def this_machine() -> Machine:
    pidns = ""
    with contextlib.suppress(OSError):
        pidns = str(Path("/proc/self/ns/pid").readlink())
    return Machine(socket.gethostname(), _read("/proc/sys/kernel/random/boot_id"), pidns)


def _own_start() -> int:
    fields = _read(f"/proc/{os.getpid()}/stat").rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) >= 20 else 0


def lease_seconds() -> float:
    """CLUSTERCTL_LOCK_LEASE overrides the lease (seconds); bad values fall back, loudly."""
    text = os.environ.get("CLUSTERCTL_LOCK_LEASE", "")
    if not text:
        return DEFAULT_LEASE
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 1 <= value <= 86400:
        raise ClusterctlError(
            f"CLUSTERCTL_LOCK_LEASE must be seconds between 1 and 86400, not {text!r}"
        )
    return value


def new_lock(command: str) -> LockInfo:
    me = this_machine()
    holder = os.environ.get("CLUSTERCTL_LOCK_HOLDER") or f"{getpass.getuser()}@{me.hostname}"
    return LockInfo(
        secrets.token_hex(6),
        holder,
        time.time(),
        command,
        machine=me.hostname,
        boot_id=me.boot_id,
        pidns=me.pidns,
        pid=os.getpid(),
        pid_start=_own_start(),
        lease=lease_seconds(),
    )


# -- one host ---------------------------------------------------------------------------------


def try_acquire(remote: Remote, lock: LockInfo, stale_id: str = "", min_age: int = 0) -> HostView:
    """One attempt on one host; with stale_id, replace that lock if it is still that stale."""
    res = remote.sh(_ACQUIRE + _GUARDED, LOCK_DIR, lock.to_json(), stale_id, str(min_age))
    return parse_reply(remote.ep.name, res.out, lock.id)


def renew(remote: Remote, lock_id: str) -> HostView:
    return parse_reply(remote.ep.name, remote.sh(_RENEW + _GUARDED, LOCK_DIR, lock_id).out, lock_id)


def release_view(remote: Remote, lock_id: str) -> HostView:
    res = remote.sh(_RELEASE + _GUARDED, LOCK_DIR, lock_id)
    return parse_reply(remote.ep.name, res.out)


def break_unrecorded(remote: Remote, raw: str) -> HostView:
    res = remote.sh(_BREAK_UNRECORDED + _GUARDED, LOCK_DIR, raw)
    return parse_reply(remote.ep.name, res.out)


def look(remote: Remote) -> HostView:
    return parse_reply(remote.ep.name, remote.sh(_SHOW, LOCK_DIR).out)


def acquire(remote: Remote, lock: LockInfo) -> None:
    """Take this host's copy or raise (tests plant a holder's copies with it)."""
    view = try_acquire(remote, lock)
    if view.state != "ours":
        raise LockHeld(f"{remote.ep.name}: {view.detail or view.state}")


def release(remote: Remote, lock_id: str) -> bool:
    return release_view(remote, lock_id).state == "released"


def show(remote: Remote) -> LockInfo | None:
    return look(remote).info
