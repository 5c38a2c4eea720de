"""Apache httpd: a complete apache2.conf with mod_proxy_balancer, mod_rewrite, mod_proxy_hcheck."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from clusterctl.drivers.base import Driver, KindPaths
from clusterctl.model.semantics import frontend_services

if TYPE_CHECKING:
    from clusterctl.model.schema import Frontend, Inventory


class ApacheDriver(Driver):
    kind = "apache"
    template = "apache/apache2.conf.j2"
    defaults = KindPaths(
        config="/etc/apache2/apache2.conf",
        tls_dir="/etc/apache2/tls",
        pid_file="/run/apache2/apache2.pid",
    )
    reload = ("apache2ctl", "graceful")
    # The only folders its paths.* may name without outside_paths (semantics.py checks).
    own_paths = (
        "/etc/apache2",
        "/run/apache2",
        "/var/lib/apache2",
        "/var/log/apache2",
        "/var/lock/apache2",
        "/run/apache2.pid",
    )
    start = ("systemctl", "start", "apache2")

    def support_files(self, inv: Inventory, fe: Frontend) -> dict[str, str]:
        if not any(s.mode == "http" for s in frontend_services(inv, fe)):
            return {}
        return {self.body_limit_path(fe): "apache/body-limit.lua.j2"}

    def validate_argv(self, config: str, root: str = "") -> list[str]:
        return ["apache2", "-t", "-f", config]

    def runtime_dirs(self, fe: Frontend) -> list[str]:
        return ["/run/apache2", "/var/log/apache2", "/var/lock/apache2"]

    def view(self, inv: Inventory, fe: Frontend, root: str) -> dict[str, Any]:
        from clusterctl.render import Raw

        v = super().view(inv, fe, root)
        # Validated names and paths hold only [A-Za-z0-9.~_-]; escaping makes dots literal.
        v["rx"] = lambda text: Raw(re.escape(text))
        return v
