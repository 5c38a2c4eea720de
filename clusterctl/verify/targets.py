"""What `clusterctl verify` checks: the settings, the targets and what each host should have.

The inventory is read locally; the hosts are reached with testinfra's ssh backend (the real
OpenSSH client) through the strict ssh_config connections.py writes (re-exported here).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from clusterctl.drivers import driver_for
from clusterctl.errors import ClusterctlError, HostUnreachable
from clusterctl.execute.deploy import health_url
from clusterctl.facts import HostFacts, parse_gather, version_binary
from clusterctl.model import load
from clusterctl.model.schema import Frontend, Inventory
from clusterctl.model.semantics import frontend_services
from clusterctl.model.vrrp import units
from clusterctl.plan import effective_frontend
from clusterctl.render import HostFiles, render_frontend
from clusterctl.ui import plural
from clusterctl.verify.connections import (
    Connections,
    backend_alias,
    frontend_alias,
    ssh_config_text,
)
from clusterctl.verify.probes import http_probe

__all__ = ["Connections", "HostUnreachable", "backend_alias", "frontend_alias", "http_probe"]
__all__ += ["ssh_config_text"]

ENV_INVENTORY = "CLUSTERCTL_VERIFY_INVENTORY"
ENV_LAB = "CLUSTERCTL_VERIFY_LAB"
ENV_LIMIT = "CLUSTERCTL_VERIFY_LIMIT"
ENV_RELEASE = "CLUSTERCTL_VERIFY_RELEASE"

SBIN = "PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin; "
DIFF_LINES = 60


# ------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class Settings:
    """Which inventory, which hosts, which release: from the environment run_verify sets."""

    inventory: Path
    limit: tuple[str, ...] | None = None
    release: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        path = env.get(ENV_INVENTORY, "").strip()
        lab = env.get(ENV_LAB, "").strip()
        if not path and lab:
            from clusterctl import lab as labmod

            path = str(labmod.info(lab).inventory_path)
        if not path:
            raise ClusterctlError(
                f"set {ENV_INVENTORY} to an inventory file (or {ENV_LAB} to a lab name); "
                "`clusterctl verify -i INVENTORY` does this for you"
            )
        limit = tuple(x.strip() for x in env.get(ENV_LIMIT, "").split(",") if x.strip())
        release = env.get(ENV_RELEASE, "").strip() or None
        return cls(Path(path).expanduser().resolve(), limit or None, release)


# ------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Listener:
    address: str  # "*" for every address
    port: int


@dataclass(frozen=True)
class FrontendTarget:
    name: str
    kind: str
    address: str
    paths: tuple[str, ...]  # every file clusterctl installs there
    secret: frozenset[str]
    listeners: tuple[Listener, ...]
    admin_port: int
    admin_socket: str  # HAProxy's runtime API socket; "" for other kinds
    control: str  # the runtime control the driver names (drivers/base.py)


@dataclass(frozen=True)
class BackendTarget:
    name: str
    address: str
    health_url: str
    expect: int
    version_header: str


@dataclass(frozen=True)
class Targets:
    settings: Settings
    inventory: Inventory
    frontends: tuple[FrontendTarget, ...]
    backends: tuple[BackendTarget, ...]

    def frontend(self, name: str) -> Frontend:
        return next(fe for fe in self.inventory.frontends if fe.name == name)

    def files(self) -> list[tuple[str, str]]:
        """(front end, path) of every file to compare."""
        return [(fe.name, p) for fe in self.frontends for p in fe.paths]


def backend_servers(inv: Inventory) -> list[tuple[str, str, str, int, str]]:
    """The nodes a rollout manages, once each: (name, address, health URL, expect, header)."""
    from clusterctl.rollout import rollout_pools

    seen: dict[str, tuple[str, str, str, int, str]] = {}
    for pool in rollout_pools(inv, None):
        for s in pool.servers:
            seen.setdefault(
                s.name,
                (
                    s.name,
                    s.address,
                    health_url(inv.deploy, s),
                    inv.deploy.health.expect,
                    inv.deploy.health.version_header,
                ),
            )
    return list(seen.values())


def _with_units(inv: Inventory, fe: Frontend, files: HostFiles) -> HostFiles:
    """The files of `fe`'s host: its own, and as a VRRP member its keepalived unit's too."""
    for unit in units(inv, [fe.name]):
        files = files | render_frontend(inv, unit)
    return files


def _frontend_target(inv: Inventory, fe: Frontend) -> FrontendTarget:
    files = _with_units(inv, fe, render_frontend(inv, fe))
    listeners = {
        Listener(ln.address, ln.port) for svc in frontend_services(inv, fe) for ln in svc.listen
    }
    return FrontendTarget(
        name=fe.name,
        kind=fe.kind,
        address=fe.address,
        paths=tuple(sorted(files)),
        secret=frozenset(p for p, f in files.items() if f.secret),
        listeners=tuple(sorted(listeners, key=lambda ln: (ln.port, ln.address))),
        admin_port=fe.admin_port,
        admin_socket=driver_for(fe.kind).admin_socket(fe),
        control=driver_for(fe.kind).control,
    )


@cache
def make_targets(settings: Settings) -> Targets:
    """Read the inventory and list what to check; no host is contacted."""
    inv = load(settings.inventory)
    fe_names = [fe.name for fe in inv.frontends]
    servers = backend_servers(inv)
    be_names = [s[0] for s in servers]
    if settings.limit:
        known = set(fe_names) | {s.name for p in inv.pools for s in p.servers}
        unknown = [n for n in settings.limit if n not in known]
        if unknown:
            raise ClusterctlError(
                f"--limit names unknown {'host' if len(unknown) == 1 else 'hosts'} {', '.join(unknown)} "
                f"(front ends: {', '.join(fe_names)}; backends: {', '.join(be_names) or 'none'})"
            )
        wanted = set(settings.limit)
    else:
        wanted = set(fe_names) | set(be_names)
    return Targets(
        settings=settings,
        inventory=inv,
        frontends=tuple(_frontend_target(inv, fe) for fe in inv.frontends if fe.name in wanted),
        backends=tuple(
            BackendTarget(name, address, url, expect, header)
            for name, address, url, expect, header in servers
            if name in wanted
        ),
    )


# ------------------------------------------------------------------------------ expectations


@dataclass(frozen=True)
class Expected:
    """One file as clusterctl renders it; the content stays here, never in a message."""

    path: str
    sha256: str
    mode: int
    owner: str
    group: str
    secret: bool
    _content: bytes = field(repr=False, compare=False)

    def diff(self, live: bytes, host: str) -> str:
        """A short unified diff live -> rendered; empty for secret files."""
        if self.secret:
            return ""
        lines = list(
            difflib.unified_diff(
                live.decode(errors="replace").splitlines(),
                self._content.decode(errors="replace").splitlines(),
                f"{self.path} (on {host})",
                f"{self.path} (rendered)",
                lineterm="",
            )
        )
        more = len(lines) - DIFF_LINES
        return "\n".join(lines[:DIFF_LINES]) + (
            f"\n... {plural(more, 'more line')}" if more > 0 else ""
        )


def server_version(host: Any, kind: str) -> str | None:
    """The version the front end's server reports (apply renders for it, when unpinned)."""
    res = host.run(SBIN + "%s -v 2>&1 | head -n 1", version_binary(kind))
    return parse_gather("", "VERSION " + res.stdout.strip()).version


def server_present(host: Any, kind: str) -> tuple[str, ...] | None:
    """Of the kind's probe files (a module it can load), those the host has (apply renders for
    them: nginx's Lua balancer only where the module is); None for a kind without any."""
    probes: tuple[str, ...] = getattr(driver_for(kind), "probe_files", ())
    if not probes:
        return None
    script = "for f in" + " %s" * len(probes) + '; do [ -e "$f" ] && echo "$f"; done; true'
    found = host.run(script, *probes).stdout.split()
    return tuple(p for p in probes if p in found)


def expected_files(
    inv: Inventory, fe: Frontend, version: str | None, present: tuple[str, ...] | None = None
) -> dict[str, Expected]:
    """What apply would have installed on `fe` for a server of `version`."""
    eff = effective_frontend(fe, HostFacts(fe.name, version, present=present))
    files = _with_units(inv, fe, render_frontend(inv, eff))
    return {
        path: Expected(path, f.sha256, f.mode, f.owner, f.group, f.secret, f.content)
        for path, f in files.items()
    }
