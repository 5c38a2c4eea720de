"""nginx: a self-contained nginx.conf; no runtime API, so drains are re-renders and reloads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clusterctl.drivers.base import Driver, KindPaths
from clusterctl.model.versions import NGINX_STICKY_COOKIE

if TYPE_CHECKING:
    from clusterctl.model.schema import Frontend, Inventory


class NginxDriver(Driver):
    kind = "nginx"
    template = "nginx/nginx.conf.j2"
    defaults = KindPaths(
        config="/etc/nginx/nginx.conf", tls_dir="/etc/nginx/tls", pid_file="/run/nginx.pid"
    )
    reload = ("systemctl", "reload", "nginx")
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
        # Host-specific routes get a server block each; routes without a host apply in all.
        hosts: dict[str, list[Any]] = {}
        for svc in v["services"]:
            for r in v["routes"][svc.name]:
                if r.host:
                    hosts.setdefault(svc.name, [])
                    if r.host not in hosts[svc.name]:
                        hosts[svc.name].append(r.host)
        v["hosts"] = hosts
        return v
