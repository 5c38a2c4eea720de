"""nginx's Lua balancer: pool members in a shared dict, changed through a control socket.

With Debian's libnginx-mod-http-lua (lua-resty-core's ngx.balancer) each pool's upstream is
one placeholder server and a `balancer_by_lua_block` that picks the peer from the shared dict
`clusterctl`: weighted round robin (or least requests, source hash, random) over the ready
primaries, the backups only when no primary is usable, a sticky cookie that keeps a pinned
client on a draining server, passive health (max_fails within fail_timeout marks a peer down)
and a count of each peer's requests in flight. nginx.conf carries the member list (one line
per member in its init_by_lua_block), so a restart comes up in the state of the file; the
control socket (root-only folder) changes the dict at run time.

Everything here is pure: the view the templates print, the control requests as `Command`s
(curl on the socket, JSON on standard input), and the parsers of their answers and of the
rendered member lines. A host without the module gets today's rendering and reloads.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from clusterctl.drivers.control import (
    ALL_CHANGES,
    AdminState,
    Change,
    Command,
    ControlRefused,
    Health,
    Live,
    Member,
    PoolMembers,
    ServerView,
    ViewState,
)

if TYPE_CHECKING:
    from clusterctl.model.schema import Frontend, Pool

# Debian 12's files, in the order its modules-enabled loads them (the devel kit first), and
# the lua-resty-core module the balancer needs: the Lua path is taken only when all exist.
MODULES = (
    "/usr/lib/nginx/modules/ndk_http_module.so",
    "/usr/lib/nginx/modules/ngx_http_lua_module.so",
)
PROBE_FILES = (*MODULES, "/usr/share/lua/5.1/ngx/balancer.lua")
PACKAGE = "libnginx-mod-http-lua"
# A folder that survives a reboot (Debian's unit runs `nginx -t` before a start, and the
# test binds the socket: a folder under /run would be gone and the start refused). The
# master makes it root-only before it binds; the placeholder makes it exist before the
# first start's test.
SOCKET_DIR = "/var/lib/nginx/clusterctl"
SOCKET = f"{SOCKET_DIR}/control.sock"
PLACEHOLDER = f"{SOCKET_DIR}/README"
# The members' runtime states, saved after each change for the next start (see init).
SAVED = f"{SOCKET_DIR}/states"
PLACEHOLDER_TEXT = (
    b"clusterctl: nginx's control socket lives here (root only; the Lua balancer's members).\n"
)
MODULE_NAME = "clusterctl-balancer.lua"
NO_LUA = (
    f"the host has no {PACKAGE} ({', '.join(PROBE_FILES)}): pool members change by reload; "
    f"install it (apt-get install {PACKAGE}) for runtime changes"
)
# nginx's own defaults for a server without max_fails / fail_timeout.
DEFAULT_MAX_FAILS = 1
DEFAULT_FAIL_TIMEOUT = 10


def lua_available(present: tuple[str, ...] | None) -> bool:
    """From the facts (the probe files present on the host; None: not gathered, as when
    rendering locally: the packaged setup has the module)."""
    return present is None or all(p in present for p in PROBE_FILES)


def module_path(fe_config: str) -> str:
    return fe_config.rsplit("/", 1)[0] + "/" + MODULE_NAME


def pool_view(pool: Pool) -> dict[str, Any]:
    health = pool.health
    max_fails = health.max_fails if health else DEFAULT_MAX_FAILS
    fail_timeout = max(1, -(-health.fail_timeout // 1000)) if health else DEFAULT_FAIL_TIMEOUT
    return {
        "name": pool.name,
        "balance": pool.balance,
        "sticky": pool.sticky.cookie if pool.sticky else "",
        "max_fails": max_fails,
        "fail_timeout": fail_timeout,
        "servers": pool.servers,
    }


def lua_view(pools: list[Pool], config: str, root: str) -> dict[str, Any]:
    """What the templates print for the Lua path."""
    return {
        "modules": MODULES,
        "module": root + module_path(config),
        "socket": root + SOCKET,
        "saved": root + SAVED,
        "pools": [pool_view(p) for p in pools],
        "dict_mb": dict_size_mb(sum(len(p.servers) for p in pools)),
    }


def dict_size_mb(members: int) -> int:
    """The shared dict's size: a member takes about 300 bytes in it (its entry, its counters);
    1 KiB each leaves room for members added at run time.

    The size changes seldom (32 MiB, then doubling): a reload into another size starts an
    empty dict, losing runtime states and the counts of requests old workers still serve.
    Only pages in use take memory."""
    size = 32
    while size * 1024 < members:
        size *= 2
    return size


# ---------------------------------------------------------------------------- commands

_CURL = ("curl", "--unix-socket", SOCKET, "-sS", "--max-time", "5")


def _post(op: str, body: dict[str, Any], what: str) -> Command:
    return Command(
        (
            *_CURL,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
            f"http://localhost/{op}",
        ),
        stdin=json.dumps(body, sort_keys=True).encode(),
        what=what,
    )


def probe_command() -> Command:
    # The socket exists only while an nginx running the Lua config listens on it (nginx
    # removes it when it stops listening; a crashed one's is replaced at the next start).
    return Command(
        ("sh", "-c", 'if [ -S "$1" ]; then echo lua-socket; else echo rerender; fi', "sh", SOCKET),
        what="look for nginx's control socket",
    )


def control_from(output: str) -> str:
    return "lua-socket" if output.strip() == "lua-socket" else "rerender"


def read_commands() -> list[Command]:
    return [Command((*_CURL, "http://localhost/state"), what="read the Lua balancer's state")]


# One saver at a time (a rollout changes several pools at once); a failed read keeps the old file.
_SAVE = (
    'exec 9>"$2.lock" && flock 9 && curl --unix-socket "$1" -fsS --max-time 5 -o "$2.tmp" '
    'http://localhost/states && mv -f -- "$2.tmp" "$2"'
)


def persist_commands() -> list[Command]:
    """Save the members' runtime states where the next start reads them (a restart keeps a
    drain, as HAProxy's state file does)."""
    argv = ("sh", "-c", _SAVE, "clusterctl", SOCKET, SAVED)
    return [Command(argv, what="save the member states")]


def change_commands(changes: list[Change]) -> list[Command]:
    out: list[Command] = []
    for ch in changes:
        base = {"pool": ch.pool, "server": ch.server}
        if ch.kind == "state":
            out.append(_post("set", {**base, "state": ch.state}, ch.describe()))
        elif ch.kind == "weight":
            out.append(_post("set", {**base, "weight": ch.weight}, ch.describe()))
        elif ch.kind == "add":
            body = {
                **base,
                "address": ch.address,
                "port": ch.port,
                "weight": 1 if ch.weight is None else ch.weight,
                "state": ch.state or "ready",
                "backup": "backup" in getattr(ch, "options", ()),
            }
            out.append(_post("add", body, ch.describe()))
        else:
            # Gone at once from the picks; its requests in flight finish on their connections.
            out.append(_post("remove", base, ch.describe()))
    return out


def _answer(text: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def refusal(fe_name: str, outputs: list[str]) -> str | None:
    """The first answer that is not the endpoint's `{"ok":true}`, in the server's words."""
    for out in outputs:
        doc = _answer(out.strip())
        if doc is not None and doc.get("ok") is True:
            continue
        words = str(doc.get("error")) if doc and "error" in doc else out.strip()[:300]
        return f"{fe_name}: nginx's Lua balancer refused: {words or 'no answer'}"
    return None


def check_refusal(fe_name: str, outputs: list[str]) -> None:
    words = refusal(fe_name, outputs)
    if words:
        raise ControlRefused(words)


_STATES: dict[str, ViewState] = {"ready": "ready", "drain": "drain", "maint": "maint"}


def parse_state(fe_name: str, text: str) -> list[ServerView]:
    """The endpoint's GET /state as ServerViews: admin state, health, requests in flight."""
    doc = _answer(text.strip())
    if doc is None or not isinstance(doc.get("pools"), list):
        raise ControlRefused(
            f"{fe_name}: nginx's Lua balancer did not answer with its state: "
            f"{text.strip()[:200] or 'nothing'}"
        )
    out: list[ServerView] = []
    for pool in doc["pools"]:
        for s in pool.get("servers") or []:
            state = _STATES.get(str(s.get("state")))
            active = s.get("active")
            if state is None or not isinstance(active, int):
                raise ControlRefused(f"{fe_name}: unreadable server in nginx's state: {s!r}")
            health: Health = "down" if s.get("health") == "down" else "up"
            weight = s.get("weight")
            out.append(
                ServerView(
                    fe_name,
                    str(pool.get("name")),
                    str(s.get("name")),
                    state,
                    health,
                    active,
                    weight if isinstance(weight, int) else None,
                )
            )
    return out


def live_view(fe_name: str, outputs: list[str]) -> Live:
    if not outputs:
        raise ControlRefused(f"{fe_name}: no answer from nginx's control socket")
    return Live(tuple(parse_state(fe_name, outputs[0])))


# ---------------------------------------------------------------------------- the config file

_POOL = re.compile(
    r'^            \{ name = "([^"]+)", balance = "[^"]*", sticky = "[^"]*", '
    r"max_fails = \d+, fail_timeout = \d+, servers = \{$"
)
_MEMBER = re.compile(
    r'^                \{ name = "([^"]+)", address = "([^"]+)", port = (\d+), '
    r'weight = (\d+), state = "(ready|drain|maint)", backup = (true|false) \},$'
)


def parse_members(text: str) -> tuple[dict[str, PoolMembers], str] | None:
    """Each pool's members in the init_by_lua_block of an nginx.conf clusterctl rendered for
    the Lua balancer, and the text with one marker line per pool in their place; None for a
    config without the balancer (members are in upstream blocks: a change reloads)."""
    if "balancer_by_lua_block" not in text:
        return None
    pools: dict[str, PoolMembers] = {}
    masked: list[str] = []
    pool = ""
    members: list[Member] = []
    for line in text.split("\n"):
        head = _POOL.match(line)
        m = _MEMBER.match(line) if pool else None
        if m:
            state: AdminState = m[5]  # type: ignore[assignment]
            opts = ("backup",) if m[6] == "true" else ()
            members.append(Member(pool, m[1], m[2], int(m[3]), state, int(m[4]), opts, line))
            continue
        if pool and not m:
            pools[pool] = PoolMembers(pool, tuple(members), ALL_CHANGES)
            pool, members = "", []
        if head:
            pool = head[1]
            masked.append(line)
            masked.append(f"                -- servers of {pool}")
            continue
        masked.append(line)
    return pools, "\n".join(masked)


def lua_frontend(fe: Frontend) -> bool:
    return lua_available(getattr(fe, "present", None))
