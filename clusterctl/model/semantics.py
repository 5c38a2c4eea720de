"""Checks across the inventory: references, duplicates and what each server kind can express."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from clusterctl.errors import Problem
from clusterctl.model.pathcheck import under

# Re-exported: these queries lived here, and drivers, plan and execute import them from here.
from clusterctl.model.queries import frontend_services as frontend_services
from clusterctl.model.queries import pool_index as pool_index
from clusterctl.model.queries import service_pools as service_pools
from clusterctl.model.schema import Frontend, Inventory, Service
from clusterctl.model.versions import parse_version
from clusterctl.model.vrrp import check_vrrp


class _Report:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, obj: Any, key: str, path: str, message: str) -> None:
        at = obj.at.get(key) or obj.at.get("")
        if at is None:  # a default object the user never wrote
            return
        self.problems.append(Problem(at.file, at.line, at.col, f"{path}: {message}"))


def _duplicates(
    items: Iterable[Any], attr: str, where: str, report: _Report, fold: bool = False
) -> None:
    """Names used twice; with fold, also names that differ only in case."""
    seen: dict[str, tuple[int, str]] = {}
    for i, item in enumerate(items):
        value = getattr(item, attr)
        key = value.lower() if fold else value
        if key not in seen:
            seen[key] = (i, value)
            continue
        first, original = seen[key]
        note = (
            ""
            if original == value
            else f", {original!r} differs only in case, which nginx and Apache ignore"
        )
        report.add(
            item,
            attr,
            f"{where}[{i}].{attr}",
            f"duplicate {attr} {value!r} (first at [{first}]{note})",
        )


def check_semantics(inv: Inventory) -> list[Problem]:
    r = _Report()
    _duplicates(inv.frontends, "name", "frontends", r)
    _duplicates(inv.pools, "name", "pools", r, fold=True)
    _duplicates(inv.services, "name", "services", r)
    pools = {p.name: p for p in inv.pools}
    services = {s.name: s for s in inv.services}

    nodes: dict[str, tuple[str, str]] = {}
    for pi, pool in enumerate(inv.pools):
        where = f"pools[{pi}]"
        _duplicates(pool.servers, "name", f"{where}.servers", r)
        if pool.servers and all(s.backup for s in pool.servers):
            r.add(
                pool,
                "servers",
                f"{where}.servers",
                "needs at least one server that is not a backup",
            )
        for si, srv in enumerate(pool.servers):
            first = nodes.setdefault(srv.name, (srv.address, f"{where}.servers[{si}]"))
            if first[0] != srv.address:
                r.add(
                    srv,
                    "address",
                    f"{where}.servers[{si}].address",
                    f"server {srv.name!r} is {first[0]} in {first[1]}; one name, one machine",
                )
        h = pool.health
        if h is not None and h.type == "mysql" and h.user is None:
            r.add(
                h, "type", f"{where}.health.user", "mysql checks need a user (e.g. haproxy_check)"
            )

    for si, svc in enumerate(inv.services):
        where = f"services[{si}]"
        if svc.default_pool not in pools:
            r.add(
                svc,
                "default_pool",
                f"{where}.default_pool",
                _missing("pool", svc.default_pool, pools),
            )
        seen_routes: dict[tuple[str | None, str | None], int] = {}
        for ri, route in enumerate(svc.routes):
            rw = f"{where}.routes[{ri}]"
            if route.pool not in pools:
                r.add(route, "pool", f"{rw}.pool", _missing("pool", route.pool, pools))
            if route.path is None and route.host is None:
                r.add(route, "", rw, "a route needs a path, a host, or both")
            key = (route.host, route.path or "/")  # no path and "/" are the same route
            if key in seen_routes:
                r.add(route, "", rw, f"same host and path as routes[{seen_routes[key]}]")
            seen_routes.setdefault(key, ri)
        tls_listeners = [ln for ln in svc.listen if ln.tls]
        if tls_listeners and svc.tls is None:
            r.add(
                svc,
                "listen",
                f"{where}.listen",
                "a listener has tls: true but the service has no tls section",
            )
        if svc.tls is not None and not tls_listeners:
            r.add(
                svc,
                "tls",
                f"{where}.tls",
                "no listener has tls: true (add one, e.g. {port: 443, tls: true})",
            )
        if svc.mode == "tcp":
            _check_tcp(svc, where, r)
        for pool in service_pools(inv, svc):
            if svc.mode == "tcp" and pool.sticky is not None:
                r.add(
                    pool,
                    "sticky",
                    f"pools[{pool_index(inv, pool)}].sticky",
                    f"sticky cookies need HTTP, but tcp service {svc.name!r} uses this pool",
                )
            if svc.mode == "http" and pool.health is not None and pool.health.type == "mysql":
                r.add(
                    pool.health,
                    "type",
                    f"pools[{pool_index(inv, pool)}].health.type",
                    f"mysql check on a pool that http service {svc.name!r} uses; MySQL is "
                    f"not HTTP: give that service mode: tcp (or the pool an http check)",
                )
    _check_ports(inv, r)
    _check_pool_modes(inv, r)
    if inv.deploy.command is not None and inv.deploy.release is not None:
        r.add(
            inv.deploy,
            "release",
            "deploy.release",
            "give either deploy.command or deploy.release (the built-in strategy), not both",
        )

    for fi, fe in enumerate(inv.frontends):
        where = f"frontends[{fi}]"
        for name in fe.services or ():
            if name not in services:
                r.add(fe, "services", f"{where}.services", _missing("service", name, services))
        _check_frontend(inv, fe, where, r)
    check_vrrp(inv, r.add)
    return r.problems


def _check_tcp(svc: Service, where: str, r: _Report) -> None:
    if svc.routes:
        r.add(
            svc,
            "routes",
            f"{where}.routes",
            "tcp services cannot route by path or host (use mode: http)",
        )
    if svc.tls is not None:
        r.add(svc, "tls", f"{where}.tls", "tls termination is for mode: http services")


def _check_pool_modes(inv: Inventory, r: _Report) -> None:
    modes: dict[str, str] = {}
    for svc in inv.services:
        for pool in service_pools(inv, svc):
            first = modes.setdefault(pool.name, svc.mode)
            if first != svc.mode:
                r.add(
                    pool,
                    "name",
                    f"pools[{pool_index(inv, pool)}]",
                    f"used by both http and tcp services ({svc.name!r} is {svc.mode}); "
                    f"give each mode its own pool",
                )


def _check_ports(inv: Inventory, r: _Report) -> None:
    # Per port, who listens on which address: one look-up per listener, whatever their number.
    seen: dict[int, dict[str, str]] = {}
    for si, svc in enumerate(inv.services):
        for li, ln in enumerate(svc.listen):
            owners = seen.setdefault(ln.port, {})
            owner = owners.get(ln.address) or owners.get("*")
            if owner is None and ln.address == "*" and owners:
                owner = next(iter(owners.values()))
            if owner is not None:
                r.add(
                    ln,
                    "port",
                    f"services[{si}].listen[{li}].port",
                    f"port {ln.port} is already used by service {owner!r}",
                )
            owners.setdefault(ln.address, svc.name)


def own_paths(kind: str) -> tuple[str, ...]:
    """The folders (and files) a kind's paths.* may name: its driver's list."""
    # Imported here: the drivers import this module for frontend_services and service_pools.
    from clusterctl.drivers.apache import ApacheDriver
    from clusterctl.drivers.haproxy import HAProxyDriver
    from clusterctl.drivers.keepalived import KeepalivedDriver
    from clusterctl.drivers.nginx import NginxDriver

    drivers = (HAProxyDriver, NginxDriver, ApacheDriver, KeepalivedDriver)
    kinds = {d.kind: d.own_paths for d in drivers}
    return tuple(kinds[kind])


PATH_KEYS = ("config", "tls_dir", "admin_socket", "state_file", "pid_file")


def _check_paths(fe: Frontend, where: str, r: _Report) -> None:
    """An allowlist: a front end's files stay in its kind's own folders, or in one the user
    named under outside_paths (remote_path already refused anything sensitive in either)."""
    own = own_paths(fe.kind)
    for attr in PATH_KEYS:
        value = getattr(fe.paths, attr)
        if value is None:
            continue
        norm = "/run/" + value[len("/var/run/") :] if value.startswith("/var/run/") else value
        if under(norm, own) or under(value, fe.outside_paths):
            continue
        r.add(
            fe.paths,
            attr,
            f"{where}.paths.{attr}",
            f"{value} is outside {fe.kind}'s own folders ({', '.join(own)}); to use it anyway, "
            f"list it or its folder under {where}.outside_paths",
        )


def _check_frontend(inv: Inventory, fe: Frontend, where: str, r: _Report) -> None:
    from clusterctl.drivers import driver_for  # the drivers import this module

    driver = driver_for(fe.kind)
    findings = []
    _check_paths(fe, where, r)
    if fe.version is not None and parse_version(fe.version) < driver.min_version:
        need = ".".join(map(str, driver.min_version))
        r.add(
            fe,
            "version",
            f"{where}.version",
            f"{fe.kind} {fe.version} is too old; clusterctl needs {need} or newer",
        )
    findings += driver.check_frontend(fe, where)
    sock = fe.paths.admin_socket
    if sock is not None and len(sock) > 80:
        # A unix socket path holds 107 bytes; keep room for the staging root apply checks under.
        msg = "is longer than 80 characters"
        findings.append((fe.paths, "admin_socket", f"{where}.paths.admin_socket", msg))
    findings += driver.check_admin_port(fe, where)
    for svc in frontend_services(inv, fe):
        findings += driver.check_service(fe, svc, where)
        for pool in service_pools(inv, svc):
            findings += driver.check_pool(fe, pool, f"pools[{pool_index(inv, pool)}]")
    for obj, key, path, message in findings:
        r.add(obj, key, path, message)


def _missing(what: str, name: str, known: Iterable[str]) -> str:
    from clusterctl.model.crossref import missing

    return missing(what, name, known)
