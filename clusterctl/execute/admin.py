"""Runtime control of a node on a front end: drain, restore, and what the front end sees.

Each kind by its own mechanism: HAProxy's runtime API on the admin socket; Apache's
balancer-manager (POST with the balancer's nonce and a matching Referer); nginx open source has
no runtime API, so its drain is a re-render with the node out and a graceful reload (the same
apply path as `clusterctl apply`).
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import re
import urllib.parse
from dataclasses import dataclass

from clusterctl.drivers import driver_for
from clusterctl.errors import ClusterctlError
from clusterctl.execute.apply import apply_host
from clusterctl.execute.ssh import Remote
from clusterctl.facts import gather
from clusterctl.model.schema import Frontend, Inventory, Pool
from clusterctl.model.semantics import frontend_services, service_pools
from clusterctl.plan import plan_host
from clusterctl.render import render_frontend


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
                int(row.get("scur") or 0),
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


def apache_workers(remote: Remote, fe: Frontend) -> list[ApacheWorker]:
    res = remote.sh('curl -sS --max-time 5 -- "$1"', _manager_url(fe))
    if not res.ok:
        raise AdminError(f"{fe.name}: balancer-manager at {_manager_url(fe)}: {res.words()}")
    return parse_balancer_manager(res.out)


def apache_set(remote: Remote, fe: Frontend, node: str, drain: bool) -> None:
    url = _manager_url(fe)
    workers = [w for w in apache_workers(remote, fe) if w.route == node]
    if not workers:
        raise AdminError(f"{fe.name}: balancer-manager lists no member with route {node}")
    for w in workers:
        form = urllib.parse.urlencode(
            {"b": w.balancer, "w": w.url, "w_status_N": "1" if drain else "0", "nonce": w.nonce}
        )
        # Since 2.4.41 the manager refuses POSTs whose Referer is not itself.
        res = remote.sh(
            'curl -sS --max-time 5 -o /dev/null -w "%{http_code}" -H "Referer: $1" --data "$2" -- "$1"',
            url,
            form,
        )
        if not res.ok or res.out.strip() not in ("200", "302"):
            raise AdminError(
                f"{fe.name}: balancer-manager refused {w.balancer}/{node}: {res.words()}"
            )


# ---------------------------------------------------------------------------- nginx


def with_states(inv: Inventory, states: dict[str, str]) -> Inventory:
    """The inventory with some nodes' admin states changed in every pool: a pure override."""
    pools = tuple(
        dataclasses.replace(
            p,
            servers=tuple(
                dataclasses.replace(s, state=states[s.name]) if s.name in states else s
                for s in p.servers
            ),
        )
        for p in inv.pools
    )
    return dataclasses.replace(inv, pools=pools)


def nginx_apply(remote: Remote, inv: Inventory, fe: Frontend) -> None:
    secret = {p: f.secret for p, f in render_frontend(inv, fe).items()}
    hp = plan_host(inv, fe, gather(remote, fe, secret))
    result = apply_host(remote, inv, fe, hp)
    if result.status not in ("changed", "unchanged"):
        raise AdminError(
            f"{fe.name}: nginx reload with the new server state failed: {result.message}"
        )


_NODE_CONNS = 'ss -Htn state established dst "$1" | awk -v p=":$2" \'$4 ~ p"$"\' | wc -l'


def nginx_sessions(remote: Remote, address: str, port: int) -> int:
    """Connections from this nginx to the node that are still open (in-flight requests).

    nginx open source has no per-server statistics; after a reload without the node, the old
    workers finish their requests and close their connections, so zero means drained.
    """
    res = remote.sh(_NODE_CONNS, address, str(port))
    try:
        return int(res.out.strip() or 0)
    except ValueError:
        return 0


# ---------------------------------------------------------------------------- per kind


def set_state(
    remote: Remote,
    inv: Inventory,
    fe: Frontend,
    node: str,
    state: str,
    others: dict[str, str] | None = None,
) -> None:
    """Put `node` in `state` (ready | drain | maint) on one front end.

    `others` are runtime states of other nodes that must hold too (nginx renders all at once).
    """
    pools = node_pools(inv, fe, node)
    if not pools:
        return
    if fe.kind == "haproxy":
        for pool in pools:
            out = haproxy_command(remote, fe, f"set server {pool.name}/{node} state {state}")
            if out.strip():
                raise AdminError(f"{fe.name}: HAProxy refused {pool.name}/{node}: {out.strip()}")
        # Keep the runtime state across reloads (load-server-state-from-file reads this).
        state_file = driver_for("haproxy").paths(fe).state_file
        dump = haproxy_command(remote, fe, "show servers state")
        remote.sh('mkdir -p -- "$(dirname -- "$1")" && cat > "$1"', state_file, stdin=dump.encode())
    elif fe.kind == "apache":
        if state == "maint":
            raise AdminError(f"{fe.name}: maint is set through the inventory on apache front ends")
        apache_set(remote, fe, node, drain=state == "drain")
    else:
        nginx_apply(remote, with_states(inv, {**(others or {}), node: state}), fe)


def views(remote: Remote, inv: Inventory, fe: Frontend) -> list[ServerView]:
    """Every server of this front end's pools as it sees them now."""
    if fe.kind == "haproxy":
        return parse_haproxy_stat(fe.name, haproxy_command(remote, fe, "show stat"))
    if fe.kind == "apache":
        return apache_view(fe.name, apache_workers(remote, fe))
    live = render_frontend(inv, fe)
    conf = next(iter(f for p, f in live.items() if p.endswith("nginx.conf")), None)
    out = []
    for pool in pools_of(inv, fe):
        for s in pool.servers:
            marker = f"server {s.address}:{s.port} "
            state = s.state
            if conf is not None and marker.encode() in conf.content:
                line = conf.content.split(marker.encode(), 1)[1].split(b";", 1)[0]
                state = "drain" if b" down" in line or b" drain" in line else "ready"
            out.append(
                ServerView(
                    fe.name,
                    pool.name,
                    s.name,
                    state,
                    "unknown",
                    nginx_sessions(remote, s.address, s.port),
                )
            )
    return out


def node_sessions(remote: Remote, inv: Inventory, fe: Frontend, node: str) -> int:
    return sum(v.sessions or 0 for v in views(remote, inv, fe) if v.server == node)


def node_up(remote: Remote, inv: Inventory, fe: Frontend, node: str) -> bool:
    """The front end would send new sessions to the node (ready and healthy)."""
    mine = [v for v in views(remote, inv, fe) if v.server == node]
    return all(v.state == "ready" and v.health in ("up", "unknown") for v in mine)
