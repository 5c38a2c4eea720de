"""What every front-end kind shares: default paths, TLS files, route order, the view helpers.

A driver knows one kind: its template, its Debian paths, its validator and reload commands,
and how to turn the model into the plain values its template prints. Adding a kind means
adding one driver module and one template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from clusterctl.drivers.control import (
    Change,
    ChangeKind,
    Command,
    ControlRefused,
    Live,
    PoolMembers,
)
from clusterctl.files import File
from clusterctl.model.semantics import frontend_services, service_pools
from clusterctl.model.versions import kind_version

if TYPE_CHECKING:
    from pathlib import Path

    from clusterctl.facts import Network
    from clusterctl.model.schema import Frontend, Inventory, Pool, Route, Service

# A problem a kind-only check finds: the object and key whose position it carries, the
# inventory path it names, its message (semantics.py turns it into a FILE:LINE:COL problem).
Finding = tuple[Any, str, str, str]

# Mozilla's server-side TLS guidelines (ssl-config.mozilla.org, version 5.7), ECDHE suites only
# so no dhparam file is needed. Without a curve list OpenSSL also accepts X448 and secp521r1.
TLS_PROFILES: dict[str, dict[str, Any]] = {
    "intermediate": {
        "min": "TLSv1.2",
        "protocols": ["TLSv1.2", "TLSv1.3"],
        "ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305",
        "suites": "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
        "curves": "X25519:prime256v1:secp384r1",
    },
    "modern": {
        "min": "TLSv1.3",
        "protocols": ["TLSv1.3"],
        "ciphers": "",
        "suites": "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
        "curves": "X25519:prime256v1:secp384r1",
    },
}


# The paths only a kind with an admin socket has.
ADMIN_SOCKET_PATHS = ("admin_socket", "state_file")


@dataclass(frozen=True)
class KindPaths:
    config: str
    tls_dir: str
    pid_file: str
    admin_socket: str = ""
    state_file: str = ""


def seconds(ms: int) -> str:
    """A duration for configs that take units: whole seconds where exact, else milliseconds."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def whole_seconds(ms: int) -> int:
    """A duration for configs that only take seconds (Apache): rounded up, at least 1."""
    return max(1, -(-ms // 1000))


def ordered_routes(svc: Service) -> list[Route]:
    """Most specific first: routes with a host before those without, then longer paths first.

    All three kinds then agree on which route wins, whatever order the inventory lists them in
    (nginx picks the longest location prefix by itself; HAProxy and Apache take the first match).
    """
    return sorted(svc.routes, key=lambda r: (r.host is None, -len(r.path or "")))


class Driver:
    kind: ClassVar[str]
    template: ClassVar[str]
    defaults: ClassVar[KindPaths]
    reload: ClassVar[tuple[str, ...]]
    start: ClassVar[tuple[str, ...]]
    # The server's executable: it validates configs and prints its version (`BINARY -v`).
    binary: ClassVar[str]
    # The names its processes run under (ss -p, ps): the first is the one verify expects.
    processes: ClassVar[tuple[str, ...]]
    # The Debian package that installs it.
    package: ClassVar[str]
    # What `BINARY -v` prints just before the version number.
    version_prefix: ClassVar[str]
    # What Debian 12 ships: the version to render for when the inventory names none.
    default_version: ClassVar[tuple[int, ...]]
    # Oldest release whose syntax the templates use.
    min_version: ClassVar[tuple[int, ...]]
    # Where it writes what goes wrong at a reload; "-" is the master's own standard error.
    error_log: ClassVar[str]
    # A line of that log announcing a failed reload (None: it announces none), and how long
    # the log must stay quiet after it before the failure is final.
    reload_failed_rx: ClassVar[re.Pattern[str] | None] = None
    # What the bind preflight reads from a rendered config (clusterctl/preflight.py): the
    # directive naming each TCP listener (group 1: [address:]port), and the directives naming
    # a file the server creates at start, whose folder must exist (group 1: the path). Not the
    # folders the kind's own start script makes. None: the kind has none of them.
    bind_rx: ClassVar[re.Pattern[str] | None] = None
    writes_rx: ClassVar[re.Pattern[str] | None] = None
    reload_quiet: ClassVar[float] = 0.5
    # The balance methods it can express.
    balance: ClassVar[frozenset[str]]
    # Capabilities: it serves tcp services; it has an admin socket (paths.admin_socket,
    # paths.state_file, hard_stop_after); it has an admin_port (balancer-manager); how a
    # node is drained: by its runtime API, or by re-rendering the config and reloading.
    serves_tcp: ClassVar[bool] = False
    # It sends its access log to syslog (frontends[].syslog), not to files of its own.
    logs_to_syslog: ClassVar[bool] = False
    has_admin_socket: ClassVar[bool] = False
    has_admin_port: ClassVar[bool] = False
    drain: ClassVar[Literal["runtime", "rerender"]] = "runtime"
    # Which runtime interface changes a server's state and reports the servers' live view
    # (execute/admin.py runs the one named here; a kind without one cannot be drained).
    control: ClassVar[Literal["admin-socket", "balancer-manager", "rerender", ""]] = ""
    # The member changes its runtime interface makes without a reload (issue 12): a change
    # touching only pool members, all of these kinds, is applied live and the files written
    # without a reload. Empty: every change re-renders and reloads.
    runtime_changes: ClassVar[frozenset[ChangeKind]] = frozenset()
    # What `clusterctl lab` needs of the kind: the other executables its lab service wrapper
    # runs (besides binary), the folders a lab host gets its own copy of (filled from the
    # machine's package files), the folders its empty /run must have before the server starts,
    # and the wrapper itself: a shell function KIND_ctl that runs $ACTION (start, stop,
    # reload, status) for lab/hostfiles.py's lab-service script.
    lab_tools: ClassVar[tuple[str, ...]] = ()
    lab_dirs: ClassVar[tuple[str, ...]] = ()
    lab_run_dirs: ClassVar[tuple[str, ...]] = ()
    lab_service: ClassVar[str]

    # Runtime control as data (control.py): built and parsed here, run by execute/admin.py.

    def read_commands(self, fe: Frontend) -> list[Command]:
        """What to run on the host for the servers' live view."""
        return []

    def parse_live(self, fe: Frontend, outputs: list[str]) -> Live:
        """The read commands' outputs (in their order) as the servers' live view."""
        raise ControlRefused(f"{fe.name}: a {self.kind} front end has no runtime view")

    def change_commands(self, fe: Frontend, live: Live, changes: list[Change]) -> list[Command]:
        """What to run, in order, for these member changes (ControlRefused: it cannot)."""
        if changes:
            raise ControlRefused(f"{fe.name}: a {self.kind} front end changes members by reload")
        return []

    def check_change(self, fe: Frontend, changes: list[Change], outputs: list[str]) -> None:
        """Raise ControlRefused, with the server's words, if an answer so far is a refusal."""

    def persist_commands(self, fe: Frontend) -> list[Command]:
        """After runtime changes: what keeps them across a restart besides the files."""
        return []

    def parse_members(self, text: str) -> tuple[dict[str, PoolMembers], str] | None:
        """The pools and members of a config this driver rendered, and its text without them
        (one marker line per pool), or None when the kind cannot tell its members apart."""
        return None

    def lab_seed(self, root: Path, host: str) -> dict[str, str]:
        """The minimal config a lab host starts with: its files (path under root -> text).

        Links the kind enables in its own folders (under root) are made here.
        """
        raise NotImplementedError

    def lab_health(self, host_root: Path) -> tuple[bool, str]:
        """A lab host's server, known to be running, checked further through its root."""
        return True, f"{self.processes[0]} running"

    def admin_socket(self, fe: Frontend) -> str:
        """The runtime API's socket on the host ("" for a kind without one)."""
        return self.paths(fe).admin_socket if self.has_admin_socket else ""

    def check_frontend(self, fe: Frontend, where: str) -> list[Finding]:
        """The front end's fields this kind cannot have."""
        out: list[Finding] = []
        if not self.has_admin_socket:
            for attr in ADMIN_SOCKET_PATHS:
                if getattr(fe.paths, attr) is not None:
                    msg = f"only haproxy front ends have {attr}"
                    out.append((fe.paths, attr, f"{where}.paths.{attr}", msg))
            if "hard_stop_after" in fe.at:
                msg = "only haproxy front ends have hard_stop_after"
                out.append((fe, "hard_stop_after", f"{where}.hard_stop_after", msg))
        return out

    def check_admin_port(self, fe: Frontend, where: str) -> list[Finding]:
        if self.has_admin_port or "admin_port" not in fe.at:
            return []
        msg = "only apache front ends have admin_port (balancer-manager)"
        return [(fe, "admin_port", f"{where}.admin_port", msg)]

    def check_service(self, fe: Frontend, svc: Service, where: str) -> list[Finding]:
        """What this kind cannot serve of one of its services."""
        if svc.mode == "tcp" and not self.serves_tcp:
            key = "services" if fe.services is not None else "kind"
            msg = (
                f"tcp service {svc.name!r} needs an haproxy front end; "
                f"list this front end's services without it"
            )
            return [(fe, key, f"{where}.services", msg)]
        return []

    def check_pool(self, fe: Frontend, pool: Pool, where: str) -> list[Finding]:
        """What this kind cannot express of one pool it balances (`where`: pools[N])."""
        if pool.balance in self.balance:
            return []
        ok = ", ".join(sorted(self.balance))
        msg = f"{fe.kind} front end {fe.name!r} cannot balance by {pool.balance} (it can: {ok})"
        return [(pool, "balance", f"{where}.balance", msg)]

    def paths(self, fe: Frontend) -> KindPaths:
        p = fe.paths
        d = self.defaults
        return KindPaths(
            config=p.config or d.config,
            tls_dir=p.tls_dir or d.tls_dir,
            pid_file=p.pid_file or d.pid_file,
            admin_socket=p.admin_socket or d.admin_socket,
            state_file=p.state_file or d.state_file,
        )

    def reload_argv(self, fe: Frontend) -> tuple[str, ...]:
        return fe.reload or self.reload

    def start_argv(self, fe: Frontend) -> tuple[str, ...]:
        return fe.start or self.start

    def validate_argv(self, config: str, root: str = "") -> list[str]:
        raise NotImplementedError

    def before_reload(self, fe: Frontend) -> tuple[str, list[str]] | None:
        """A fixed script and its arguments to run on the host before a reload, if any."""
        return None

    def after_reload(self, fe: Frontend) -> tuple[str, list[str]] | None:
        """A fixed script and its arguments to run once a reload is confirmed, if any."""
        return None

    # A proxy (a front end's kind); keepalived is not: it runs beside one (model/vrrp.py).
    proxy: ClassVar[bool] = True

    def confirm_reload(self, fe: Frontend) -> tuple[str, list[str]] | None:
        """For a kind whose reload starts no new processes: a fixed script and its arguments
        that exits 0 once the server runs the new config (3: not yet; else: failed)."""
        return None

    def refusals(self, inv: Inventory, fe: Frontend, network: Network) -> list[str]:
        """Why the new config must not go to this host, from its facts (plan time)."""
        return []

    def runtime_dirs(self, fe: Frontend) -> list[str]:
        """Folders the server expects to exist (created under the root when checking)."""
        return []

    def support_files(self, inv: Inventory, fe: Frontend) -> dict[str, str]:
        """Files the config loads besides itself: their path on the host -> their template."""
        return {}

    def body_limit_path(self, fe: Frontend) -> str:
        """The Lua script that enforces max_body on bodies without a Content-Length."""
        return self.paths(fe).config.rsplit("/", 1)[0] + "/clusterctl-body-limit.lua"

    def tls_paths(self, fe: Frontend, svc: Service) -> dict[str, str]:
        base = f"{self.paths(fe).tls_dir}/{svc.name}"
        return {"certificate": f"{base}.crt", "key": f"{base}.key"}

    def tls_files(self, inv: Inventory, fe: Frontend) -> dict[str, File]:
        out: dict[str, File] = {}
        for svc in frontend_services(inv, fe):
            if svc.tls is None:
                continue
            cert = inv.files.get(svc.tls.certificate, b"")
            key = inv.files.get(svc.tls.key, b"")
            paths = self.tls_paths(fe, svc)
            if paths["certificate"] == paths["key"]:
                out[paths["key"]] = File(cert + key, mode=0o600, secret=True)
            else:
                out[paths["certificate"]] = File(cert, mode=0o644)
                out[paths["key"]] = File(key, mode=0o600, secret=True)
        return out

    def view(self, inv: Inventory, fe: Frontend, root: str) -> dict[str, Any]:
        """The plain values the template prints."""
        services = frontend_services(inv, fe)
        pools: dict[str, Pool] = {}
        for svc in services:
            for pool in service_pools(inv, svc):
                pools.setdefault(pool.name, pool)
        from clusterctl.drivers import features

        return features.view(inv, fe, self, root) | {
            "fe": fe,
            "source": inv.cluster,
            "version": kind_version(fe),
            "root": root,
            "paths": _rooted(self.paths(fe), root),
            "services": services,
            "pools": [pools[n] for n in sorted(pools)],
            "timeouts": _pool_timeouts(services, inv),
            "tls": {
                s.name: {k: root + v for k, v in self.tls_paths(fe, s).items()}
                for s in services
                if s.tls
            },
            "profiles": TLS_PROFILES,
            "body_limit_lua": root + self.body_limit_path(fe),
            "routes": {s.name: ordered_routes(s) for s in services},
            "seconds": seconds,
            "whole_seconds": whole_seconds,
        }


def _rooted(paths: KindPaths, root: str) -> KindPaths:
    return KindPaths(**{k: root + v if v else v for k, v in vars(paths).items()})


def _pool_timeouts(services: tuple[Service, ...], inv: Inventory) -> dict[str, dict[str, int]]:
    """Backend-side timeouts per pool: the longest any service using the pool asks for."""
    out: dict[str, dict[str, int]] = {}
    for svc in services:
        for pool in service_pools(inv, svc):
            t = out.setdefault(pool.name, {"connect": 0, "server": 0})
            t["connect"] = max(t["connect"], svc.timeouts.connect)
            t["server"] = max(t["server"], svc.timeouts.server)
    return out
