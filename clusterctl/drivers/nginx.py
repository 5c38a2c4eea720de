"""nginx: a self-contained nginx.conf. With Debian's Lua module, pool members change at run time
through the Lua balancer's control socket (nginx_lua.py); without it, by re-render and reload."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from clusterctl.drivers import nginx_lua as nl
from clusterctl.drivers.base import Driver, Finding, KindPaths
from clusterctl.drivers.control import ALL_CHANGES, Change, Command, Live, PoolMembers
from clusterctl.drivers.nginx_sticky import sticky_plan
from clusterctl.model.versions import NGINX_STICKY_COOKIE, kind_version

if TYPE_CHECKING:
    from pathlib import Path

    from clusterctl.model.schema import Frontend, Inventory, Pool, Route


def server_routes(routes: list[Route], host: str | None) -> list[Route]:
    """The routes that can win in the server block for `host` (None: the default server).

    HAProxy and Apache take the first match of the ordered routes, so a route for this host
    beats any route without a host, even one with a longer path. nginx picks the longest
    location prefix instead; so a host-less route whose path lies under a path this host
    routes itself (its own, a longer one, or the whole site) could never win: leave it out,
    or nginx would send e.g. api.example.com/course to the course pool, and a host route and a
    host-less route on the same path would give nginx a duplicate location.
    """
    mine = [r for r in routes if r.host == host]
    if host is None:
        return mine
    covered = [r.path or "/" for r in mine]
    rest = [
        r
        for r in routes
        if r.host is None
        and not any(
            c == "/" or (r.path or "/") == c or (r.path or "/").startswith(c + "/") for c in covered
        )
    ]
    return mine + rest


# clusterctl lab's service wrapper.
LAB_SERVICE = r"""
nginx_ctl() {
    PIDF=/run/nginx.pid
    case "$ACTION" in
    start)
        if pid=$(pid_from $PIDF); then echo "nginx already running (master pid $pid)"; return 0; fi
        nginx -q || { echo "nginx failed to start" >&2; return 1; }
        echo "nginx started (master pid $(cat $PIDF))" ;;
    stop)
        pid=$(pid_from $PIDF) || { echo "nginx not running"; return 0; }
        nginx -s quit
        wait_gone "$pid" 100 || kill -TERM "$pid"
        wait_gone "$pid" 20 || kill -KILL "$pid"
        echo "nginx stopped" ;;
    reload)
        pid=$(pid_from $PIDF) || { echo "nginx not running" >&2; return 1; }
        nginx -t -q || { echo "nginx: configuration invalid, not reloaded" >&2; return 1; }
        nginx -s reload || return 1
        echo "nginx reloaded (master pid $pid)" ;;
    status)
        if pid=$(pid_from $PIDF); then echo "nginx running (master pid $pid)"; return 0; fi
        echo "nginx stopped"; return 3 ;;
    *) usage ;;
    esac
}
"""

LAB_CONF = """# clusterctl lab: minimal nginx configuration (replaced by clusterctl apply)
user www-data;
worker_processes 1;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log;

events {{
\tworker_connections 768;
}}

http {{
\tinclude /etc/nginx/mime.types;
\tdefault_type application/octet-stream;
\taccess_log /var/log/nginx/access.log;
\tsendfile on;
\tkeepalive_timeout 65;

\tserver {{
\t\tlisten 127.0.0.1:8404 default_server;
\t\tlocation / {{ return 200 "{host} nginx\\n"; }}
\t}}
}}
"""


class NginxDriver(Driver):
    kind = "nginx"
    bind_rx = re.compile(r"^\s*listen\s+([^;\s]+)", re.M)
    writes_rx = re.compile(r"^\s*(?:error_log|access_log|pid|\w+_temp_path)\s+([^;\s]+)", re.M)
    template = "nginx/nginx.conf.j2"
    defaults = KindPaths(
        config="/etc/nginx/nginx.conf", tls_dir="/etc/nginx/tls", pid_file="/run/nginx.pid"
    )
    reload = ("systemctl", "reload", "nginx")
    # The only folders its paths.* may name without outside_paths (semantics.py checks).
    own_paths = ("/etc/nginx", "/run/nginx", "/var/lib/nginx", "/var/log/nginx", "/run/nginx.pid")
    start = ("systemctl", "start", "nginx")
    binary = "nginx"
    processes = ("nginx",)
    package = "nginx"
    lab_dirs = ("/etc/nginx", "/var/lib/nginx")
    lab_service = LAB_SERVICE
    version_prefix = "nginx/"
    default_version = (1, 22, 1)
    min_version = (1, 19, 5)
    error_log = "/var/log/nginx/error.log"
    # It retries a bind every half second, five times.
    reload_failed_rx = re.compile(r"\[emerg\]")
    reload_quiet = 0.7
    balance = frozenset({"roundrobin", "leastconn", "source", "random"})
    # The declared fallback: a host without the Lua module drains by re-render and reload.
    # Where it has the module, execute/admin.py learns from control_probe that the host runs
    # the Lua balancer's control socket ("lua-socket"), and plans from its facts (present).
    drain = "rerender"
    control = "rerender"
    runtime_changes = ALL_CHANGES
    # Files the facts look for: the Lua path is rendered only when the host has them all.
    probe_files = nl.PROBE_FILES
    # The lab's hosts run the Lua balancer: `clusterctl lab up` wants the module installed.
    lab_packages = (nl.PACKAGE,)

    def lua(self, fe: Frontend) -> bool:
        """Whether this front end's pools are balanced in Lua (the host has the module)."""
        return nl.lua_frontend(fe)

    def no_runtime(self, fe: Frontend) -> str:
        """Why this host changes members by reload ("": it does not): plan prints it."""
        return "" if self.lua(fe) else nl.NO_LUA

    def control_for(self, fe: Frontend) -> str:
        return "lua-socket" if self.lua(fe) else "rerender"

    def control_probe(self, fe: Frontend) -> Command:
        """Which interface the host runs: the Lua balancer's socket, or none (re-render)."""
        return nl.probe_command()

    def control_from(self, output: str) -> str:
        return nl.control_from(output)

    def read_commands(self, fe: Frontend) -> list[Command]:
        return nl.read_commands() if self.lua(fe) else []

    def parse_live(self, fe: Frontend, outputs: list[str]) -> Live:
        return nl.live_view(fe.name, outputs)

    def change_commands(self, fe: Frontend, live: Live, changes: list[Change]) -> list[Command]:
        if not self.lua(fe):
            return super().change_commands(fe, live, changes)
        return nl.change_commands(changes)

    def check_change(self, fe: Frontend, changes: list[Change], outputs: list[str]) -> None:
        nl.check_refusal(fe.name, outputs)

    def persist_commands(self, fe: Frontend) -> list[Command]:
        return nl.persist_commands() if self.lua(fe) else []

    def parse_members(self, text: str) -> tuple[dict[str, PoolMembers], str] | None:
        return nl.parse_members(text)

    def support_files(self, inv: Inventory, fe: Frontend) -> dict[str, str]:
        if not self.lua(fe):
            return {}
        return {
            nl.module_path(self.paths(fe).config): "nginx/clusterctl-balancer.lua",
            nl.PLACEHOLDER: "nginx/control-readme.j2",
        }

    def check_pool(self, fe: Frontend, pool: Pool, where: str) -> list[Finding]:
        out = super().check_pool(fe, pool, where)
        version = kind_version(fe)
        if version >= NGINX_STICKY_COOKIE or self.lua(fe):
            # Native sticky, or the Lua balancer: backups and any balance go with the cookie.
            return out
        has_backup = any(s.backup for s in pool.servers)
        hashing = pool.sticky is not None or pool.balance in ("source", "random")
        if has_backup and hashing:
            msg = (
                f"nginx {fe.version or '.'.join(map(str, version))} on {fe.name!r} cannot combine "
                f"backup servers with {'sticky sessions' if pool.sticky else pool.balance}; "
                f"nginx 1.29.6 or newer can (set the front end's version)"
            )
            out.append((pool, "servers", f"{where}.servers", msg))
        if pool.sticky is not None and pool.balance != "roundrobin":
            msg = (
                f"nginx before 1.29.6 keeps sessions sticky with a consistent hash, which replaces "
                f"balance: {pool.balance}; use roundrobin or nginx 1.29.6+"
            )
            out.append((pool, "balance", f"{where}.balance", msg))
        return out

    def lab_seed(self, root: Path, host: str) -> dict[str, str]:
        return {"etc/nginx/nginx.conf": LAB_CONF.format(host=host)}

    def validate_argv(self, config: str, root: str = "") -> list[str]:
        argv = ["nginx", "-t", "-q", "-c", config]
        if root:  # keep nginx's own start-up log and prefix inside the checked tree
            argv += ["-p", root + "/", "-e", root + "/var/log/nginx/error.log"]
        return argv

    def runtime_dirs(self, fe: Frontend) -> list[str]:
        return [
            "/var/log/nginx",
            "/var/lib/nginx",
            "/run",
            *([nl.SOCKET_DIR] if self.lua(fe) else []),
        ]

    def view(self, inv: Inventory, fe: Frontend, root: str) -> dict[str, Any]:
        v = super().view(inv, fe, root)
        lua = self.lua(fe)
        v["lua"] = nl.lua_view(v["pools"], self.paths(fe).config, root) if lua else None
        # Known from the facts to lack the module: the config says so (plan shows it).
        v["lua_missing"] = nl.NO_LUA if not lua else ""
        # The Lua balancer pins by the cookie itself; the native directive and the maps are
        # for a host without it.
        v["sticky_cookie"] = v["version"] >= NGINX_STICKY_COOKIE and not lua
        v["sticky_plans"] = {
            pool.name: sticky_plan(pool, i)
            for i, pool in enumerate(v["pools"], 1)
            if pool.sticky and not v["sticky_cookie"] and not lua
        }
        # Host-specific routes get a server block each; routes without a host apply in all.
        hosts: dict[str, list[Any]] = {}
        for svc in v["services"]:
            for r in v["routes"][svc.name]:
                if r.host:
                    hosts.setdefault(svc.name, [])
                    if r.host not in hosts[svc.name]:
                        hosts[svc.name].append(r.host)
        v["hosts"] = hosts
        v["server_routes"] = {
            svc.name: {
                h: server_routes(v["routes"][svc.name], h) for h in [None, *hosts.get(svc.name, [])]
            }
            for svc in v["services"]
        }
        # HSTS only over HTTPS: a server block that also listens for plain HTTP (no redirect)
        # sends the header through a variable that is empty unless the request came over TLS.
        v["hsts_max_age"] = sorted(
            {
                s.tls.hsts // 1000
                for s in v["services"]
                if s.mode == "http" and s.tls is not None and s.tls.hsts and not s.tls.redirect
            }
        )
        return v
