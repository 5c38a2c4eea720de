"""nginx: a self-contained nginx.conf; no runtime API, so drains are re-renders and reloads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clusterctl.drivers.base import Driver, KindPaths
from clusterctl.drivers.nginx_sticky import sticky_plan
from clusterctl.model.versions import NGINX_STICKY_COOKIE

if TYPE_CHECKING:
    from clusterctl.model.schema import Frontend, Inventory, Route


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


class NginxDriver(Driver):
    kind = "nginx"
    template = "nginx/nginx.conf.j2"
    defaults = KindPaths(
        config="/etc/nginx/nginx.conf", tls_dir="/etc/nginx/tls", pid_file="/run/nginx.pid"
    )
    reload = ("systemctl", "reload", "nginx")
    # The only folders its paths.* may name without outside_paths (semantics.py checks).
    own_paths = ("/etc/nginx", "/run/nginx", "/var/lib/nginx", "/var/log/nginx", "/run/nginx.pid")
    start = ("systemctl", "start", "nginx")

    def validate_argv(self, config: str, root: str = "") -> list[str]:
        argv = ["nginx", "-t", "-q", "-c", config]
        if root:  # keep nginx's own start-up log and prefix inside the checked tree
            argv += ["-p", root + "/", "-e", root + "/var/log/nginx/error.log"]
        return argv

    def runtime_dirs(self, fe: Frontend) -> list[str]:
        return ["/var/log/nginx", "/var/lib/nginx", "/run"]

    def view(self, inv: Inventory, fe: Frontend, root: str) -> dict[str, Any]:
        v = super().view(inv, fe, root)
        v["sticky_cookie"] = v["version"] >= NGINX_STICKY_COOKIE
        v["sticky_plans"] = {
            pool.name: sticky_plan(pool, i)
            for i, pool in enumerate(v["pools"], 1)
            if pool.sticky and not v["sticky_cookie"]
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
