"""Questions asked of an inventory, each answered in one place: pure, no I/O.

Which services and pools a front end serves, which pools hold a node, a server by name, the
pools a rollout covers, the folder relative paths start from, and how an address and a port are
written together (an IPv6 address in brackets). Checks, render, plan, execute and orchestrate
all ask these; answering them twice is how two layers come to disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from clusterctl.errors import ClusterctlError

if TYPE_CHECKING:  # types only: model/proxychecks.py, imported while schema.py loads, uses this
    from clusterctl.model.schema import Frontend, Inventory, Pool, Server, Service


def bracket(address: str) -> str:
    """An address as a URL or a `host:port` writes it: an IPv6 literal in brackets."""
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def host_port(address: str, port: int | str) -> str:
    """`address:port`, with an IPv6 address in brackets (`[2001:db8::1]:443`)."""
    return f"{bracket(address)}:{port}"


def frontend_services(inv: Inventory, fe: Frontend) -> tuple[Service, ...]:
    """The services a front end serves: those it names, or all of them."""
    if fe.services is None:
        return inv.services
    return tuple(s for s in inv.services if s.name in fe.services)


# The pools by name (the last of a name wins) and each name's indexes, for the last pools tuple
# asked about: service_pools runs per service, per front end and per view, and rebuilding the
# map there made checks and renders quadratic in the pools. Held by identity (a strong
# reference, so the id cannot be reused); one entry, so only the latest inventory's is kept.
if TYPE_CHECKING:
    _PoolMaps = tuple[tuple[Pool, ...], dict[str, Pool], dict[str, list[int]]]
_pool_maps: _PoolMaps | None = None


def _maps(inv: Inventory) -> _PoolMaps:
    global _pool_maps
    cached = _pool_maps
    if cached is None or cached[0] is not inv.pools:
        indexes: dict[str, list[int]] = {}
        for i, p in enumerate(inv.pools):
            indexes.setdefault(p.name, []).append(i)
        cached = _pool_maps = (inv.pools, {p.name: p for p in inv.pools}, indexes)
    return cached


def pool_index(inv: Inventory, pool: Pool) -> int:
    """The index of the first pool equal to `pool`, as tuple.index finds it, without a scan."""
    pools, _, indexes = _maps(inv)
    for i in indexes.get(pool.name, ()):
        if pools[i] is pool or pools[i] == pool:
            return i
    return inv.pools.index(pool)  # not there: ValueError, as index raises


def service_pools(inv: Inventory, svc: Service) -> list[Pool]:
    """The pools a service sends to: its default pool, then its routes' pools, once each."""
    by_name = _maps(inv)[1]
    names = [svc.default_pool] + [r.pool for r in svc.routes]
    return [by_name[n] for n in dict.fromkeys(names) if n in by_name]


def frontend_pools(inv: Inventory, fe: Frontend) -> list[Pool]:
    """Every pool behind a front end's services, once each, in the order the services name them."""
    seen: dict[str, Pool] = {}
    for svc in frontend_services(inv, fe):
        for pool in service_pools(inv, svc):
            seen.setdefault(pool.name, pool)
    return list(seen.values())


def node_pools(inv: Inventory, fe: Frontend, node: str) -> list[Pool]:
    """The pools behind a front end that hold the node."""
    return [p for p in frontend_pools(inv, fe) if any(s.name == node for s in p.servers)]


def find_server(inv: Inventory, name: str) -> Server:
    """A backend server by name (the first pool's entry); an unknown name is an error."""
    for p in inv.pools:
        for s in p.servers:
            if s.name == name:
                return s
    known = sorted({s.name for p in inv.pools for s in p.servers})
    raise ClusterctlError(f"no backend server named {name!r} (known: {', '.join(known)})")


def rollout_pools(inv: Inventory, names: list[str] | None) -> list[Pool]:
    """The pools whose nodes a rollout upgrades: named ones, or those behind http services."""
    if names is not None:
        known = {p.name: p for p in inv.pools}
        wanted = [n.strip() for n in names if n.strip()]
        if not wanted:
            raise ClusterctlError(
                f"--pool names nothing; name one or more of: {', '.join(sorted(known))}"
            )
        missing = [n for n in wanted if n not in known]
        if missing:
            raise ClusterctlError(
                f"--pool names unknown {'pool' if len(missing) == 1 else 'pools'} "
                f"{', '.join(missing)} (known: {', '.join(sorted(known))})"
            )
        return [known[n] for n in wanted]
    seen: dict[str, Pool] = {}
    for svc in inv.services:
        if svc.mode == "http":
            for p in service_pools(inv, svc):
                seen.setdefault(p.name, p)
    return list(seen.values())


def base_dir(inv: Inventory) -> Path:
    """The inventory's folder: relative paths in it (keys, artifacts, pages) start there."""
    return Path(inv.source).parent if inv.source else Path.cwd()
