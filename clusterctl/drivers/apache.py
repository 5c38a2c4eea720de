"""Apache httpd: a complete apache2.conf with mod_proxy_balancer, mod_rewrite, mod_proxy_hcheck."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from clusterctl.drivers.base import Driver, KindPaths
from clusterctl.model.semantics import frontend_services

if TYPE_CHECKING:
    from clusterctl.model.schema import Frontend, Inventory


# The balancer-manager token, made on the host itself (render is pure and the secret never
# leaves the host): 32 random bytes, once, into two root-only files beside the config, one
# Apache includes (a Define) and one curl sends (-H @file). The token passes through no
# argv: od writes into the shell's own variable, printf is the shell's builtin.
MAKE_MANAGER_FILES = (
    'conf=$1 hdr=$2; shift 2; if [ ! -s "$conf" ] || [ ! -s "$hdr" ]; then '
    "umask 077; t=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \\n') && [ ${#t} -eq 64 ] && "
    'printf "X-Clusterctl-Token: %s\\n" "$t" > "$hdr.tmp" && '
    'printf "Define CLUSTERCTL_MANAGER_TOKEN %s\\n" "$t" > "$conf.tmp" && '
    'mv -f -- "$hdr.tmp" "$hdr" && mv -f -- "$conf.tmp" "$conf" || exit 1; fi'
)


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

    def manager_token_paths(self, fe: Frontend) -> tuple[str, str]:
        """The token's two files on the host: the Define Apache includes, the curl header."""
        base = self.paths(fe).config.rsplit("/", 1)[0] + "/clusterctl-manager"
        return f"{base}.conf", f"{base}.header"

    def before_reload(self, fe: Frontend) -> tuple[str, list[str]] | None:
        return MAKE_MANAGER_FILES, list(self.manager_token_paths(fe))

    def start_argv(self, fe: Frontend) -> tuple[str, ...]:
        if fe.start:  # the user's own command: the token comes with the next reload
            return fe.start
        conf, hdr = self.manager_token_paths(fe)
        script = MAKE_MANAGER_FILES + '; exec "$@"'
        return ("sh", "-c", script, "clusterctl", conf, hdr, *self.start)

    def runtime_dirs(self, fe: Frontend) -> list[str]:
        return ["/run/apache2", "/var/log/apache2", "/var/lock/apache2"]

    def view(self, inv: Inventory, fe: Frontend, root: str) -> dict[str, Any]:
        from clusterctl.render import Raw

        v = super().view(inv, fe, root)
        # Validated names and paths hold only [A-Za-z0-9.~_-]; escaping makes dots literal.
        v["rx"] = lambda text: Raw(re.escape(text))
        v["manager_token_conf"] = root + self.manager_token_paths(fe)[0]
        return v
