"""HAProxy's runtime API as data: socket commands, `show stat`, and the member lines it renders.

Every command is one `socat` run on the admin socket with the runtime command on its standard
input (nothing of it in argv). HAProxy 2.6 adds and deletes servers at run time only in a
backend whose balance algorithm is dynamic, and `add server` takes neither `cookie` nor the
backend's `default-server` line (its options are spelled out on the command instead).
"""

from __future__ import annotations

import csv
import io
import re

from clusterctl.drivers.control import (
    ALL_CHANGES,
    AdminState,
    Change,
    ChangeKind,
    Command,
    ControlRefused,
    Health,
    Live,
    Member,
    PoolMembers,
    ServerView,
    ViewState,
)
from clusterctl.model.queries import host_port

# Algorithms whose weights change at run time and whose backends take `add server`
# (`source` hashes into a static map: HAProxy refuses both there).
DYNAMIC = frozenset({"roundrobin", "leastconn", "random", "first"})
# What the API answers when a command worked; anything else is its refusal.
_DONE = ("", "New server registered.", "Server deleted.")
DEL_BUSY = "still has connections"
# How long a removal waits for the member's last connection (after `state maint`).
DEL_WAIT = 30.0

# The state file a restart (and a reload) loads, written from the running process. Under a
# lock: two nodes of a batch change states at once, and the dump taken last (with both
# changes) must be the file that stays, not an older one renamed after it.
DUMP_STATE = (
    'mkdir -p -- "$(dirname -- "$2")" && exec 9>"$2.lock" && flock 9 && '
    'printf "show servers state\\n" | socat -t 5 stdio "UNIX-CONNECT:$1" > "$2.tmp" '
    '&& mv -f -- "$2.tmp" "$2"'
)


def socket_command(
    sock: str, command: str, retry_while: str = "", retry_for: float = 0.0
) -> Command:
    return Command(
        ("socat", "-t", "5", "stdio", f"UNIX-CONNECT:{sock}"),
        stdin=(command + "\n").encode(),
        what=command,
        retry_while=retry_while,
        retry_for=retry_for,
    )


def _count(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def parse_haproxy_stat(fe_name: str, text: str) -> list[ServerView]:
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    out = []
    for row in rows:
        if row.get("svname") in ("FRONTEND", "BACKEND", None):
            continue
        status = (row.get("status") or "").upper()
        state: ViewState
        if status.startswith("MAINT"):
            state = "maint"
        elif status.startswith(("DRAIN", "NOLB")):
            state = "drain"
        else:
            state = "ready"
        health: Health
        if status.startswith("DOWN"):
            health = "down"
        elif state == "maint" or status == "NO CHECK":
            health = "unknown"
        else:
            health = "up"
        out.append(
            ServerView(
                fe_name, row["pxname"], row["svname"], state, health, _count(row.get("scur"))
            )
        )
    return out


def refusal(fe_name: str, outputs: list[str]) -> str | None:
    """The first answer that is not one of the API's "done" answers."""
    for out in outputs:
        text = out.strip()
        if text not in _DONE:
            return f"{fe_name}: HAProxy refused: {text.replace(chr(10), ' | ')[:300]}"
    return None


def change_commands(sock: str, changes: list[Change]) -> list[Command]:
    out: list[Command] = []
    for ch in changes:
        ps = f"{ch.pool}/{ch.server}"
        if ch.kind == "state":
            out.append(socket_command(sock, f"set server {ps} state {ch.state}"))
        elif ch.kind == "weight":
            out.append(socket_command(sock, f"set server {ps} weight {ch.weight}"))
        elif ch.kind == "add":
            opts = " ".join((*ch.options, "weight", str(ch.weight or 0)))
            where = host_port(ch.address, ch.port)
            out.append(socket_command(sock, f"add server {ps} {where} {opts}"))
            # A new server starts in maintenance with its check off.
            if "check" in ch.options:
                out.append(socket_command(sock, f"enable health {ps}"))
            if ch.state != "maint":
                out.append(socket_command(sock, f"set server {ps} state {ch.state}"))
        else:
            # New sessions stop at once; the deletion waits for the ones in flight to end.
            out.append(socket_command(sock, f"set server {ps} state maint"))
            out.append(
                socket_command(sock, f"del server {ps}", retry_while=DEL_BUSY, retry_for=DEL_WAIT)
            )
    return out


# ---------------------------------------------------------------------------- the config file

_BACKEND = re.compile(r"^backend (\S+)$")
_SERVER = re.compile(r"^    server (\S+) (\[[^\]]+\]|[^\s:]+):(\d+)((?: \S+)*)$")
_DEFAULT = re.compile(r"^    default-server ((?:\S+ ?)*)$")


def _member(pool: str, m: re.Match[str]) -> Member:
    words = m[4].split()
    weight, state, opts = 1, "ready", []
    i = 0
    while i < len(words):
        if words[i] == "weight" and i + 1 < len(words):
            weight = int(words[i + 1])
            i += 2
            continue
        if words[i] == "disabled":
            state = "maint"
        else:
            opts.append(words[i])
        i += 1
    admin: AdminState = "maint" if state == "maint" else "drain" if weight == 0 else "ready"
    return Member(pool, m[1], m[2].strip("[]"), int(m[3]), admin, weight, tuple(opts), m.group(0))


def parse_members(text: str) -> tuple[dict[str, PoolMembers], str]:
    """Each backend's servers in a haproxy.cfg clusterctl rendered, and the text without them.

    The text keeps one marker line per backend where its servers were, so two configs that
    differ only in their servers have the same masked text.
    """
    pools: dict[str, PoolMembers] = {}
    masked: list[str] = []
    pool = ""
    members: list[Member] = []
    block: list[str] = []
    defaults: tuple[str, ...] = ()

    def close() -> None:
        if pool:
            pools[pool] = _pool(pool, members, block, defaults)

    for line in text.split("\n"):
        head = _BACKEND.match(line)
        if head or (line and not line.startswith(" ")):
            close()
            pool, members, block, defaults = (head[1] if head else ""), [], [], ()
        server = _SERVER.match(line) if pool else None
        if server:
            if not members:
                masked.append(f"    # servers of {pool}")
            members.append(_member(pool, server))
            continue
        default = _DEFAULT.match(line) if pool else None
        if default:
            defaults = tuple(default[1].split())
        if pool:
            block.append(line)
        masked.append(line)
    close()
    return pools, "\n".join(masked)


def _pool(
    name: str, members: list[Member], block: list[str], defaults: tuple[str, ...]
) -> PoolMembers:
    balance = next((ln.split()[1] for ln in block if ln.startswith("    balance ")), "roundrobin")
    runtime: set[ChangeKind] = set(ALL_CHANGES) if balance in DYNAMIC else {"state"}
    why = "" if balance in DYNAMIC else f"balance {balance} is static in HAProxy"
    if any(ln.startswith("    cookie ") for ln in block):
        runtime.discard("add")
        why = why or "HAProxy 2.6 cannot add a server with a cookie at run time"
    if any(ln.startswith("    stick-table ") for ln in block):
        runtime -= {"add", "remove"}
        why = why or "a pool pinned by a stick table changes its servers by reload"
    # `add server` ignores default-server: each member carries its options spelled out.
    members = [
        Member(m.pool, m.name, m.address, m.port, m.state, m.weight, defaults + m.options, m.line)
        for m in members
    ]
    return PoolMembers(name, tuple(members), frozenset(runtime), why)


def check_refusal(fe_name: str, outputs: list[str]) -> None:
    words = refusal(fe_name, outputs)
    if words:
        raise ControlRefused(words)


def live_view(fe_name: str, outputs: list[str]) -> Live:
    if not outputs:
        raise ControlRefused(f"{fe_name}: no answer from HAProxy's admin socket")
    return Live(tuple(parse_haproxy_stat(fe_name, outputs[0])))
