"""What HAProxy's runtime API and Apache's balancer-manager report, and how they are told.

The shared view of one server (ServerView), the HAProxy `show stat` parser and socket call, and
the balancer-manager page parser and its POSTs (the balancer's nonce, a matching Referer and the
host's token). nginx has no runtime API: its side is in admin.py.
"""

from __future__ import annotations

import csv
import html
import io
import re
import urllib.parse
from dataclasses import dataclass

from clusterctl.drivers import driver_for
from clusterctl.drivers.apache import ApacheDriver
from clusterctl.errors import ClusterctlError
from clusterctl.execute.ssh import Remote
from clusterctl.model.schema import Frontend, Inventory, Pool
from clusterctl.model.semantics import frontend_services, service_pools


class AdminError(ClusterctlError):
    pass


@dataclass(frozen=True)
class ServerView:
    """One server in one pool as one front end sees it."""

    frontend: str
    pool: str
    server: str
    state: str  # ready | drain | maint | down
    health: str  # up | down | unknown
    sessions: int | None  # active requests/sessions; None when the kind cannot tell


def pools_of(inv: Inventory, fe: Frontend) -> list[Pool]:
    seen: dict[str, Pool] = {}
    for svc in frontend_services(inv, fe):
        for pool in service_pools(inv, svc):
            seen.setdefault(pool.name, pool)
    return list(seen.values())


def node_pools(inv: Inventory, fe: Frontend, node: str) -> list[Pool]:
    return [p for p in pools_of(inv, fe) if any(s.name == node for s in p.servers)]


# ---------------------------------------------------------------------------- HAProxy

_SOCKET = 'printf "%s\\n" "$1" | socat -t 5 stdio "UNIX-CONNECT:$2"'


def haproxy_command(remote: Remote, fe: Frontend, command: str) -> str:
    sock = driver_for("haproxy").paths(fe).admin_socket
    res = remote.sh(_SOCKET, command, sock)
    if not res.ok:
        raise AdminError(f"{fe.name}: HAProxy admin socket {sock}: {res.words()}")
    return res.out


def _count(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def parse_haproxy_stat(fe_name: str, text: str) -> list[ServerView]:
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    out = []
    for row in rows:
        if row.get("svname") in ("FRONTEND", "BACKEND", None):
            continue
        status = (row.get("status") or "").upper()
        if status.startswith("MAINT"):
            state = "maint"
        elif status.startswith(("DRAIN", "NOLB")):
            state = "drain"
        else:
            state = "ready"
        if status.startswith("DOWN"):
            health = "down"
        elif state == "maint" or status == "NO CHECK":
            health = "unknown"
        else:
            health = "up"
        out.append(
            ServerView(
                fe_name,
                row["pxname"],
                row["svname"],
                state,
                health,
                _count(row.get("scur")),
            )
        )
    return out


# ---------------------------------------------------------------------------- Apache

_ROW = re.compile(
    r'<td><a href="/balancer-manager\?b=(?P<b>[^&"]+)&amp;w=(?P<w>[^&"]+)&amp;nonce=(?P<n>[^"&]+)">'
    r"[^<]*</a></td><td>(?P<route>[^<]*)</td><td>[^<]*</td><td>[^<]*</td><td>[^<]*</td>"
    r"<td>(?P<status>[^<]*)</td><td>[^<]*</td><td>(?P<busy>\d+)</td>"
)


@dataclass(frozen=True)
class ApacheWorker:
    balancer: str
    url: str
    nonce: str
    route: str
    status: str
    busy: int


def parse_balancer_manager(text: str) -> list[ApacheWorker]:
    return [
        ApacheWorker(
            html.unescape(m["b"]),
            html.unescape(m["w"]),
            m["n"],
            m["route"].strip(),
            m["status"].strip(),
            int(m["busy"]),
        )
        for m in _ROW.finditer(text)
    ]


def apache_view(fe_name: str, workers: list[ApacheWorker]) -> list[ServerView]:
    out = []
    for w in workers:
        flags = w.status.split()
        state = "maint" if "Dis" in flags else "drain" if "Drn" in flags else "ready"
        health = "down" if any(f in flags for f in ("Err", "HcFl")) else "up"
        out.append(ServerView(fe_name, w.balancer, w.route, state, health, w.busy))
    return out


def _manager_url(fe: Frontend) -> str:
    return f"http://127.0.0.1:{fe.admin_port}/balancer-manager"


# The manager answers only requests with the host's token: curl sends it from its root-only
# header file, never from argv; a host without the file yet (no reload since clusterctl's
# config) sends none and is refused.
def _token_header(fe: Frontend) -> str:
    return ApacheDriver().manager_token_paths(fe)[1]


def apache_workers(remote: Remote, fe: Frontend) -> list[ApacheWorker]:
    res = remote.sh(
        # The Referer only keeps Apache from logging every poll as cross-site (AH10187).
        'h=$2; if [ -r "$h" ]; then exec curl -fsS --max-time 5 -H "@$h" -H "Referer: $1" -- "$1"; fi; '
        'exec curl -fsS --max-time 5 -H "Referer: $1" -- "$1"',
        _manager_url(fe),
        _token_header(fe),
    )
    if not res.ok:
        raise AdminError(f"{fe.name}: balancer-manager at {_manager_url(fe)}: {res.words()}")
    return parse_balancer_manager(res.out)


# balancer-manager status flags per admin state: N drain (only sticky sessions of its own),
# D disabled (no request at all; sticky clients go to another member).
_APACHE_FLAGS = {"ready": ("0", "0"), "drain": ("1", "0"), "maint": ("1", "1")}


def apache_set(remote: Remote, fe: Frontend, node: str, state: str) -> None:
    url = _manager_url(fe)
    workers = [w for w in apache_workers(remote, fe) if w.route == node]
    if not workers:
        raise AdminError(f"{fe.name}: balancer-manager lists no member with route {node}")
    drain_flag, disabled_flag = _APACHE_FLAGS[state]
    for w in workers:
        # Both flags every time: restoring a member clears a drain and a disable alike.
        form = urllib.parse.urlencode(
            {
                "b": w.balancer,
                "w": w.url,
                "w_status_N": drain_flag,
                "w_status_D": disabled_flag,
                "nonce": w.nonce,
            }
        )
        # Since 2.4.41 the manager refuses POSTs whose Referer is not itself.
        res = remote.sh(
            'h=; [ -r "$3" ] && h="@$3"; curl -sS --max-time 5 -o /dev/null -w "%{http_code}" '
            '${h:+-H "$h"} -H "Referer: $1" --data "$2" -- "$1"',
            url,
            form,
            _token_header(fe),
        )
        if not res.ok or res.out.strip() not in ("200", "302"):
            raise AdminError(
                f"{fe.name}: balancer-manager refused {w.balancer}/{node}: {res.words()}"
            )
