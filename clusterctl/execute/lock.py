"""The cluster lock, held on a front end itself so every laptop and CI job sees it.

Like Kamal's deploy lock: an atomic `mkdir` on the lock host (the inventory's first front end)
with the holder, time, command and a lock id inside. Breaking a stale lock needs its id.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import time
from dataclasses import dataclass

from clusterctl.errors import ClusterctlError
from clusterctl.execute.ssh import Remote
from clusterctl.facts import STATE_DIR

LOCK_DIR = f"{STATE_DIR}/lock"

# $1 lock dir, $2 info json. mkdir is atomic: exactly one caller creates it.
_ACQUIRE = r"""mkdir -p -- "$(dirname -- "$1")"
if mkdir -m 700 -- "$1" 2>/dev/null; then printf '%s\n' "$2" > "$1/info"; echo ACQUIRED
else echo HELD; cat -- "$1/info" 2>/dev/null; fi
"""
# $1 lock dir, $2 lock id: remove only a lock with that id.
_RELEASE = r"""if grep -qF -- "\"id\": \"$2\"" "$1/info" 2>/dev/null; then rm -rf -- "$1"; echo RELEASED
else echo NOTOURS; cat -- "$1/info" 2>/dev/null; fi
"""


class LockHeld(ClusterctlError):
    pass


@dataclass(frozen=True)
class LockInfo:
    id: str
    holder: str
    since: float
    command: str

    def describe(self) -> str:
        age = int(time.time() - self.since)
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        return f"held by {self.holder} since {when} ({age}s ago) for {self.command!r}, lock id {self.id}"


def _parse(text: str) -> LockInfo | None:
    try:
        data = json.loads(text)
        return LockInfo(
            str(data["id"]), str(data["holder"]), float(data["since"]), str(data["command"])
        )
    except (ValueError, KeyError, TypeError):
        return None


def new_lock(command: str) -> LockInfo:
    holder = (
        os.environ.get("CLUSTERCTL_LOCK_HOLDER") or f"{getpass.getuser()}@{socket.gethostname()}"
    )
    return LockInfo(secrets.token_hex(6), holder, time.time(), command)


def acquire(remote: Remote, lock: LockInfo, wait: float = 0.0) -> None:
    payload = json.dumps(
        {"id": lock.id, "holder": lock.holder, "since": lock.since, "command": lock.command}
    )
    deadline = time.monotonic() + wait
    while True:
        res = remote.sh(_ACQUIRE, LOCK_DIR, payload)
        first, _, rest = res.out.partition("\n")
        if first.strip() == "ACQUIRED":
            return
        other = _parse(rest.strip())
        if time.monotonic() >= deadline:
            who = other.describe() if other else "held (no details recorded)"
            raise LockHeld(
                f"the cluster lock on {remote.ep.name} is {who}; wait with --lock-wait SECONDS, "
                f"or if it is stale: clusterctl lock break -i INVENTORY {other.id if other else 'ID'}"
            )
        time.sleep(1.0)


def release(remote: Remote, lock_id: str) -> bool:
    res = remote.sh(_RELEASE, LOCK_DIR, lock_id)
    return res.out.startswith("RELEASED")


def show(remote: Remote) -> LockInfo | None:
    res = remote.sh('cat -- "$1/info" 2>/dev/null', LOCK_DIR)
    return _parse(res.out.strip()) if res.out.strip() else None
