"""Apache httpd: a complete apache2.conf with mod_proxy_balancer, mod_rewrite, mod_proxy_hcheck."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from clusterctl.drivers import apache_control as ac
from clusterctl.drivers.base import Driver, Finding, KindPaths
from clusterctl.drivers.control import (
    ALL_CHANGES,
    Change,
    Command,
    ControlRefused,
    Live,
    PoolMembers,
)
from clusterctl.files import Raw
from clusterctl.model.semantics import frontend_services

if TYPE_CHECKING:
    from pathlib import Path

    from clusterctl.model.schema import Frontend, Inventory, Service


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


# clusterctl lab's service wrapper.
LAB_SERVICE = r"""
apache_ctl() {
    PIDF=/run/apache2/apache2.pid
    case "$ACTION" in
    start)
        if pid=$(pid_from $PIDF); then echo "apache2 already running (pid $pid)"; return 0; fi
        apache2ctl start || { echo "apache2 failed to start" >&2; return 1; }
        i=0
        until pid=$(pid_from $PIDF); do
            i=$((i + 1)); [ $i -gt 100 ] && { echo "apache2 did not start" >&2; return 1; }
            sleep 0.05
        done
        echo "apache2 started (pid $pid)" ;;
    stop)
        pid=$(pid_from $PIDF) || { echo "apache2 not running"; return 0; }
        apache2ctl stop
        wait_gone "$pid" 100 || kill -KILL "$pid"
        echo "apache2 stopped" ;;
    reload)
        pid=$(pid_from $PIDF) || { echo "apache2 not running" >&2; return 1; }
        apache2ctl graceful || { echo "apache2: graceful reload failed" >&2; return 1; }
        echo "apache2 reloaded (pid $pid)" ;;
    status)
        if pid=$(pid_from $PIDF); then echo "apache2 running (pid $pid)"; return 0; fi
        echo "apache2 stopped"; return 3 ;;
    *) usage ;;
    esac
}
"""

LAB_CONF = """# clusterctl lab: localhost-only status and balancer-manager
ServerName {host}
<Location "/balancer-manager">
\tSetHandler balancer-manager
\tRequire local
</Location>
"""

LAB_PORTS_CONF = """# clusterctl lab: nothing listens on the host address until clusterctl apply
Listen 127.0.0.1:8404
"""

LAB_MODULES = ("proxy", "proxy_http", "proxy_balancer", "slotmem_shm", "lbmethod_byrequests")


class ApacheDriver(Driver):
    kind = "apache"
    bind_rx = re.compile(r"^\s*Listen\s+(\S+)", re.M)
    # Apache's run and lock folders are apache2ctl's to make.
    writes_rx = re.compile(r"^\s*(?:ErrorLog|CustomLog|PidFile)\s+(\S+)", re.M)
    template = "apache/apache2.conf.j2"
    defaults = KindPaths(
        config="/etc/apache2/apache2.conf",
        tls_dir="/etc/apache2/tls",
        pid_file="/run/apache2/apache2.pid",
    )
    binary = "apache2"
    processes = (binary, "httpd")
    package = binary
    lab_tools = ("apache2ctl",)
    lab_dirs = ("/etc/apache2",)
    lab_run_dirs = ("/run/apache2",)
    lab_service = LAB_SERVICE
    version_prefix = "Apache/"
    default_version = (2, 4, 62)
    min_version = (2, 4, 30)
    error_log = "/var/log/apache2/error.log"
    balance = frozenset({"roundrobin", "leastconn"})
    has_admin_port = True
    drain = "runtime"
    control = "balancer-manager"
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
    start = ("systemctl", "start", binary)

    runtime_changes = ALL_CHANGES

    def read_commands(self, fe: Frontend) -> list[Command]:
        return [ac.read_command(fe.admin_port, self.manager_token_paths(fe)[1])]

    def parse_live(self, fe: Frontend, outputs: list[str]) -> Live:
        return ac.live_view(fe.name, outputs)

    def change_commands(self, fe: Frontend, live: Live, changes: list[Change]) -> list[Command]:
        header = self.manager_token_paths(fe)[1]
        try:
            return ac.change_commands(fe.admin_port, header, live, changes)
        except ControlRefused as exc:
            raise ControlRefused(f"{fe.name}: {exc}") from None

    def check_change(self, fe: Frontend, changes: list[Change], outputs: list[str]) -> None:
        ac.check_answers(fe.name, outputs)

    def parse_members(self, text: str) -> tuple[dict[str, PoolMembers], str] | None:
        return ac.parse_members(text)

    def check_admin_port(self, fe: Frontend, where: str) -> list[Finding]:
        return []

    def check_service(self, fe: Frontend, svc: Service, where: str) -> list[Finding]:
        out = super().check_service(fe, svc, where)
        if any(ln.port == fe.admin_port for ln in svc.listen):
            msg = f"port {fe.admin_port} is service {svc.name!r}'s; pick another admin_port"
            out.append((fe, "admin_port", f"{where}.admin_port", msg))
        return out

    def support_files(self, inv: Inventory, fe: Frontend) -> dict[str, str]:
        if not any(s.mode == "http" for s in frontend_services(inv, fe)):
            return {}
        return {self.body_limit_path(fe): "apache/body-limit.lua.j2"}

    def lab_seed(self, root: Path, host: str) -> dict[str, str]:
        etc = root / "etc/apache2"
        link = etc / "conf-enabled/clusterctl-lab.conf"
        if not link.is_symlink():
            link.symlink_to("../conf-available/clusterctl-lab.conf")
        for mod in LAB_MODULES:
            for ext in ("load", "conf"):
                src = etc / "mods-available" / f"{mod}.{ext}"
                dst = etc / "mods-enabled" / f"{mod}.{ext}"
                if src.exists() and not dst.is_symlink():
                    dst.symlink_to(f"../mods-available/{mod}.{ext}")
        default_site = etc / "sites-enabled/000-default.conf"
        if default_site.is_symlink():
            default_site.unlink()
        return {
            "etc/apache2/ports.conf": LAB_PORTS_CONF,
            "etc/apache2/conf-available/clusterctl-lab.conf": LAB_CONF.format(host=host),
        }

    def validate_argv(self, config: str, root: str = "") -> list[str]:
        return [self.binary, "-t", "-f", config]

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
        v = super().view(inv, fe, root)
        # Validated names and paths hold only [A-Za-z0-9.~_-]; escaping makes dots literal.
        v["rx"] = lambda text: Raw(re.escape(text))
        v["manager_token_conf"] = root + self.manager_token_paths(fe)[0]
        v["member_growth"] = ac.GROWTH
        return v
