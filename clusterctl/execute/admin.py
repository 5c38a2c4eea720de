"""Runtime control of a node on a front end: drain, restore, and what the front end sees.

Each kind by its own mechanism, which its driver describes as data (the Commands to run and
how to read their answers; admin_views.py runs them): HAProxy's runtime API on the admin
socket, Apache's balancer-manager. nginx open source has no runtime API, so its drain is a
re-render with the node out and a graceful reload (the same apply path as `clusterctl apply`).
"""

from __future__ import annotations

import dataclasses
import shlex
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
    set_live_state,
)
from clusterctl.execute.apply import apply_host
from clusterctl.execute.gather import gather
from clusterctl.execute.ssh import Remote
from clusterctl.facts import HostFacts, LiveFile
from clusterctl.model.queries import host_port
from clusterctl.model.schema import Frontend, Inventory
from clusterctl.plan import plan_host
from clusterctl.render import render_frontend

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


def _nginx_conf(files: dict[str, LiveFile], fe: Frontend) -> bytes | None:
    live = files.get(driver_for("nginx").paths(fe).config)
    return live.content if live is not None and live.exists else None


def nginx_drift(inv: Inventory, fe: Frontend, facts: HostFacts, live: dict[str, str]) -> list[str]:
    """Files nginx runs that this inventory, with the live server states, would change."""
    return [c.path for c in plan_host(with_states(inv, live), fe, facts).changes]


def _nginx_checked(
    remote: Remote, inv: Inventory, fe: Frontend
) -> tuple[HostFacts, dict[str, str]]:
    """The host's facts and live states, once the live config is known to be this inventory's."""
    secret = {p: f.secret for p, f in render_frontend(inv, fe).items()}
    facts = gather(remote, fe, secret)
    live = nginx_live_states(inv, fe, _nginx_conf(facts.files, fe))
    drift = nginx_drift(inv, fe, facts, live)
    if drift:
        src = shlex.quote(inv.source) if inv.source else "INVENTORY.yaml"
        raise AdminError(
            f"{fe.name}: nginx runs a config that this inventory would change beyond server "
            f"states ({', '.join(drift)}); a drain puts no unreviewed change live: review and "
            f"apply it first: clusterctl plan -i {src} --limit {fe.name}"
        )
    return facts, live


def nginx_apply(
    remote: Remote, inv: Inventory, fe: Frontend, node: str, state: str, others: dict[str, str]
) -> None:
    """Re-render with `node` in `state` and reload gracefully; nothing else may change.

    Every other node keeps the state nginx runs it in now (a node drained by an earlier
    `clusterctl drain` stays drained), then `others` (states this process set) on top. The live
    config must be what this inventory renders with those states: a drain never puts an
    unreviewed change live, so when they differ the drain is refused with a pointer to plan.
    """
    facts, live = _nginx_checked(remote, inv, fe)
    runtime = {n: st for n, st in live.items() if n != node}
    wanted = with_states(inv, {**runtime, **others, node: state})
    hp = plan_host(wanted, fe, facts)
    result = apply_host(remote, wanted, fe, hp)
    if result.status not in ("changed", "unchanged"):
        raise AdminError(
            f"{fe.name}: nginx reload with the new server state failed: {result.message}"
        )


def nginx_conf(remote: Remote, fe: Frontend) -> bytes | None:
    """The nginx config the host runs now (None when it has none)."""
    path = driver_for("nginx").paths(fe).config
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


def _control(fe: Frontend, remote: Remote | None = None) -> str:
    driver = driver_for(fe.kind)
    control = driver.control
    # A kind whose interface depends on what the host has (nginx: its Lua balancer, with the
    # module) asks the host which one it runs.
    probe = getattr(driver, "control_probe", None)
    if probe is not None and remote is not None:
        control = driver.control_from(run_command(remote, fe, probe(fe), "read"))  # type: ignore[attr-defined]
    if not control:
        raise AdminError(
            f"{fe.name}: a {fe.kind} front end has no runtime control clusterctl can drive"
        )
    return control


def preflight(remote: Remote, inv: Inventory, fe: Frontend) -> None:
    """Before a drain, restore or rollout touches anything: can this front end take it?

    A front end changed by re-rendering must run exactly this inventory's config.
    """
    if _control(fe, remote) == "rerender":
        _nginx_checked(remote, inv, fe)


def _runtime_set(
    remote: Remote, inv: Inventory, fe: Frontend, node: str, state: str, others: dict[str, str]
) -> None:
    set_live_state(remote, fe, node, state)


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


_SETTERS = {
    "admin-socket": _runtime_set,
    "balancer-manager": _runtime_set,
    "lua-socket": _runtime_set,
    "rerender": nginx_apply,
}
_VIEWS = {
    "admin-socket": _runtime_views,
    "balancer-manager": _runtime_views,
    "lua-socket": _runtime_views,
    "rerender": _rerender_views,
}


def set_state(
    remote: Remote,
    inv: Inventory,
    fe: Frontend,
    node: str,
    state: str,
    others: dict[str, str] | None = None,
) -> None:
    """Put `node` in `state` (ready | drain | maint) on one front end, by its kind's control.

    `others` are runtime states of other nodes that must hold too (a re-render sets all).
    """
    if not node_pools(inv, fe, node):
        return
    _SETTERS[_control(fe, remote)](remote, inv, fe, node, state, others or {})


def views(remote: Remote, inv: Inventory, fe: Frontend) -> list[ServerView]:
    """Every server of this front end's pools as it sees them now."""
    return _VIEWS[_control(fe, remote)](remote, inv, fe)


def node_sessions(remote: Remote, inv: Inventory, fe: Frontend, node: str) -> int:
    """Requests in flight on `node` through this front end; an unreadable count is an error."""
    pools = node_pools(inv, fe, node)
    if not pools:
        return 0
    mine = [v for v in views(remote, inv, fe) if v.server == node]
    if not mine:
        raise AdminError(
            f"{fe.name}: reports no session count for {node} (pools {', '.join(p.name for p in pools)})"
        )
    if any(v.sessions is None for v in mine):
        raise AdminError(f"{fe.name}: cannot tell how many sessions {node} has")
    return sum(v.sessions or 0 for v in mine)


def node_up(remote: Remote, inv: Inventory, fe: Frontend, node: str) -> bool:
    """The front end would send new sessions to the node (ready and healthy)."""
    mine = [v for v in views(remote, inv, fe) if v.server == node]
    return all(v.state == "ready" and v.health in ("up", "unknown") for v in mine)
