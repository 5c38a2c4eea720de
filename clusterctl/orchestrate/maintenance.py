"""Maintenance on and off: a pool (or every http pool) answers its service's unavailable page.

Through each front end's runtime interface, so no reload: every member of the pool goes to
maint (HAProxy's admin socket, Apache's balancer-manager, nginx's Lua balancer socket), and the
kind then has no server to pick and answers 503 with the page and Retry-After. `off` puts each
member back in the state the inventory gives it. A front end without a runtime interface
(nginx without the Lua module) is refused before anything changes: there, set
`pools[].maintenance: true` and apply, which is also the switch that outlives restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

from clusterctl.drivers import driver_for
from clusterctl.drivers.control import AdminState, Change
from clusterctl.errors import ClusterctlError
from clusterctl.execute import admin
from clusterctl.execute.admin_views import run_changes
from clusterctl.execute.ssh import Remote
from clusterctl.model.schema import Frontend, Inventory, Pool
from clusterctl.model.semantics import frontend_services, service_pools
from clusterctl.orchestrate.cluster import Cluster


@dataclass(frozen=True)
class Switched:
    frontend: str
    pool: str
    servers: int


def http_pools(inv: Inventory) -> list[str]:
    """Pools some http service sends requests to: the ones a page can stand in for."""
    names = {p.name for svc in inv.services if svc.mode == "http" for p in service_pools(inv, svc)}
    return [p.name for p in inv.pools if p.name in names]


def select(inv: Inventory, pool: str | None) -> list[str]:
    """The pools to switch: the one named, or every http pool (the whole site)."""
    pools = http_pools(inv)
    if pool is None:
        if not pools:
            raise ClusterctlError("the inventory has no http pool to put in maintenance")
        return pools
    if pool not in {p.name for p in inv.pools}:
        raise ClusterctlError(
            f"no pool named {pool!r}; the inventory has: {', '.join(p.name for p in inv.pools)}"
        )
    if pool not in pools:
        raise ClusterctlError(f"pool {pool!r} serves no http service: it has no page to show")
    return [pool]


def frontend_pools(inv: Inventory, fe: Frontend, wanted: list[str]) -> list[Pool]:
    served = {p.name: p for svc in frontend_services(inv, fe) for p in service_pools(inv, svc)}
    return [served[n] for n in wanted if n in served]


def changes(pools: list[Pool], on: bool) -> list[Change]:
    """Every member to maint (on), or back to its inventory state (off)."""
    out = []
    for pool in pools:
        for s in pool.servers:
            state: AdminState = "maint" if on else s.state  # type: ignore[assignment]
            out.append(Change("state", pool.name, s.name, state=state))
    return out


def _runtime(remote: Remote, fe: Frontend) -> None:
    """Refuse a front end whose members change only by re-rendering: it has no switch."""
    if admin.control(fe, remote) == "rerender" or not driver_for(fe.kind).runtime_changes:
        raise ClusterctlError(
            f"{fe.name}: this {fe.kind} front end has no runtime interface for a maintenance "
            "switch; set pools[].maintenance: true in the inventory and apply"
        )


def switch(cluster: Cluster, pools: list[str], on: bool) -> list[Switched]:
    """Switch the pools on every front end that serves them; checked on all before any change."""
    inv = cluster.inv

    def check(fe: Frontend, remote: Remote) -> None:
        if frontend_pools(inv, fe, pools):
            _runtime(remote, fe)

    cluster.each_frontend(check)

    def run(fe: Frontend, remote: Remote) -> list[Switched]:
        mine = frontend_pools(inv, fe, pools)
        if not mine:
            return []
        run_changes(remote, fe, changes(mine, on))
        return [Switched(fe.name, p.name, len(p.servers)) for p in mine]

    return [s for chunk in cluster.each_frontend(run) for s in chunk]
