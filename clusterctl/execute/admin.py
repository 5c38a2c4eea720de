"""Runtime control of a node on a front end: drain, restore, and what the front end sees.

Each kind by its own mechanism, which its driver describes as data (the Commands to run and
how to read their answers; admin_views.py runs them): HAProxy's runtime API on the admin
socket, Apache's balancer-manager, nginx's Lua balancer socket. nginx without the Lua module has
no runtime API: its drain is a re-render with the node out and a graceful reload, a whole apply
that orchestrate/rerender.py makes; this module only reads what such a front end runs now.
"""

from __future__ import annotations

from typing import cast

from clusterctl.drivers import driver_for
from clusterctl.drivers.control import ViewState
from clusterctl.execute.admin_views import (
    AdminError,
    ApacheWorker,
    ServerView,
    apache_set,
    apache_view,
    apache_workers,
    node_pools,
    parse_balancer_manager,
    parse_haproxy_stat,
    pools_of,
    read_live,
    run_changes,
    run_command,
)
from clusterctl.execute.ssh import Remote
from clusterctl.model.queries import host_port
from clusterctl.model.schema import Frontend, Inventory

__all__ = [
    "AdminError",
    "ApacheWorker",
    "ServerView",
    "apache_set",
    "apache_view",
    "apache_workers",
    "node_pools",
    "parse_balancer_manager",
    "parse_haproxy_stat",
    "pools_of",
    "read_live",
    "run_changes",
]

# ---------------------------------------------------------------------------- nginx


def _nginx_marker(address: str, port: int) -> bytes:
    return f"server {host_port(address, port)} ".encode()


def nginx_live_states(inv: Inventory, fe: Frontend, conf: bytes | None) -> dict[str, str]:
    """Admin state of each server of this front end's pools in nginx's live config.

    nginx has no runtime API: a drained node is a node rendered `down` (or `drain`) in the
    config it runs, so the live config is the runtime state. Servers the config does not list
    keep their inventory state.
    """
    out: dict[str, str] = {}
    for pool in pools_of(inv, fe):
        block = _nginx_upstream(conf, pool.name)
        for s in pool.servers:
            marker = _nginx_marker(s.address, s.port)
            if block is None or marker not in block:
                out.setdefault(s.name, s.state)
                continue
            params = block.split(marker, 1)[1].split(b";", 1)[0].split()
            if b"down" in params:
                # Before 1.29.6 a sticky pool gives each server an upstream of its own, kept
                # for a drained server (its pinned clients stay) and dropped for one in maint.
                own = f"upstream {pool.name}~{s.name} {{".encode()
                per_server = f"upstream {pool.name}~".encode()
                dropped = conf is not None and per_server in conf and own not in conf
                state = "maint" if s.state == "maint" or dropped else "drain"
            elif b"drain" in params:
                state = "drain"
            else:
                state = "ready"
            out.setdefault(s.name, state)
    return out


def _nginx_upstream(conf: bytes | None, pool: str) -> bytes | None:
    """The body of the pool's own `upstream NAME { ... }` block in an nginx config."""
    if conf is None:
        return None
    head = f"upstream {pool} {{".encode()
    if head not in conf:
        return None
    return conf.split(head, 1)[1].split(b"}", 1)[0]


def nginx_conf(remote: Remote, fe: Frontend) -> bytes | None:
    """The nginx config the host runs now (None when it has none)."""
    path = driver_for(fe.kind).paths(fe).config
    res = remote.sh('cat -- "$1"', path)
    return res.out.encode() if res.ok else None


_PATH_SS = "PATH=$PATH:/usr/sbin:/sbin; "
_NODE_CONNS = 'ss -Htn state established dst "$1" | awk -v p=":$2" \'$4 ~ p"$"\' | wc -l'


def nginx_sessions(remote: Remote, fe: Frontend, address: str, port: int) -> int:
    """Connections from this nginx to the node that are still open (in-flight requests).

    nginx open source has no per-server statistics; after a reload without the node, the old
    workers finish their requests and close their connections, so zero means drained. A count
    that cannot be read is an error, never zero: reading it as zero would deploy onto a node
    that still serves.
    """
    res = remote.sh(_PATH_SS + _NODE_CONNS, address, str(port))
    text = res.out.strip()
    if not res.ok or not text.isdigit():
        raise AdminError(
            f"{fe.name}: cannot count nginx's connections to {address}:{port} with ss: "
            f"{res.words() if not res.ok else repr(text[:80])}"
        )
    return int(text)


# ---------------------------------------------------------------------------- by control


def control(fe: Frontend, remote: Remote | None = None) -> str:
    """The runtime control this front end runs (drivers/base.py names them)."""
    driver = driver_for(fe.kind)
    how: str = driver.control
    # A kind whose interface depends on what the host has (nginx: its Lua balancer, with the
    # module) asks the host which one it runs.
    probe = getattr(driver, "control_probe", None)
    if probe is not None and remote is not None:
        how = driver.control_from(run_command(remote, fe, probe(fe), "read"))  # type: ignore[attr-defined]
    if not how:
        raise AdminError(
            f"{fe.name}: a {fe.kind} front end has no runtime control clusterctl can drive"
        )
    return how


def _runtime_views(remote: Remote, inv: Inventory, fe: Frontend) -> list[ServerView]:
    return list(read_live(remote, fe).views)


def _rerender_views(remote: Remote, inv: Inventory, fe: Frontend) -> list[ServerView]:
    states = nginx_live_states(inv, fe, nginx_conf(remote, fe))
    return [
        ServerView(
            fe.name,
            pool.name,
            s.name,
            cast("ViewState", states.get(s.name, s.state)),
            "unknown",
            nginx_sessions(remote, fe, s.address, s.port),
        )
        for pool in pools_of(inv, fe)
        for s in pool.servers
    ]


_VIEWS = {
    "admin-socket": _runtime_views,
    "balancer-manager": _runtime_views,
    "lua-socket": _runtime_views,
    "rerender": _rerender_views,
}


def views(remote: Remote, inv: Inventory, fe: Frontend, how: str = "") -> list[ServerView]:
    """Every server of this front end's pools as it sees them now (`how`: its control, when
    the caller asked it already)."""
    return _VIEWS[how or control(fe, remote)](remote, inv, fe)


def sessions_in(inv: Inventory, fe: Frontend, node: str, seen: list[ServerView]) -> int:
    """Requests in flight on `node` in this front end's view; an unreadable count is an error."""
    pools = node_pools(inv, fe, node)
    if not pools:
        return 0
    mine = [v for v in seen if v.server == node]
    if not mine:
        raise AdminError(
            f"{fe.name}: reports no session count for {node} (pools {', '.join(p.name for p in pools)})"
        )
    if any(v.sessions is None for v in mine):
        raise AdminError(f"{fe.name}: cannot tell how many sessions {node} has")
    return sum(v.sessions or 0 for v in mine)


def up_in(seen: list[ServerView], node: str) -> bool:
    """The front end would send new sessions to the node (ready and healthy) in this view."""
    mine = [v for v in seen if v.server == node]
    # A view that does not list the node has not put it back: not up.
    return bool(mine) and all(v.state == "ready" and v.health in ("up", "unknown") for v in mine)
