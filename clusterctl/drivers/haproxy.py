"""HAProxy: one haproxy.cfg in master-worker mode, runtime API on an admin socket."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clusterctl.drivers.base import Driver, KindPaths
from clusterctl.model.semantics import frontend_services, service_pools

if TYPE_CHECKING:
    from clusterctl.model.schema import Frontend, Inventory, Service


# A write pool (one-entry stick table) that failed over to its backup keeps it through a
# reload: the new process starts with an empty table, which the old one hands over only once
# its last connection ends, and would send new connections to the first primary that is up
# (a stale one, and a second primary taking writes). So before a reload, each primary of
# such a pool goes to maintenance, which the server-state file carries into the new process;
# `clusterctl restore` puts it back when the operator wants writes there again.
HOLD_FAILOVER = (
    '[ -S "$1" ] || exit 0; cli() { printf "%s\\n" "$2" | socat -t 5 stdio "UNIX-CONNECT:$1"; }; '
    'stat=$(cli "$1" "show stat"); '
    'for t in $(cli "$1" "show table" | sed -n "s/^# table: \\([^,]*\\), type: integer, size:1,.*/\\1/p"); do '
    'k=$(cli "$1" "show table $t" | sed -n "s/.* server_key=\\([^ ]*\\).*/\\1/p"); '
    '[ -n "$k" ] || continue; '
    'printf \'%s\\n\' "$stat" | awk -F, -v b="$t" -v k="$k" '
    "'$1 == b && $2 == k && $21 == 1 { f = 1 } "
    '$1 == b && $2 != "BACKEND" && $20 == 1 { p[$2] = 1 } '
    "END { if (f) for (s in p) print s }' | "
    'while read -r s; do cli "$1" "set server $t/$s state maint" > /dev/null; done; '
    "done; "
)


class HAProxyDriver(Driver):
    kind = "haproxy"
    template = "haproxy/haproxy.cfg.j2"
    defaults = KindPaths(
        config="/etc/haproxy/haproxy.cfg",
        tls_dir="/etc/haproxy/certs",
        pid_file="/run/haproxy.pid",
        admin_socket="/run/haproxy/admin.sock",
        state_file="/var/lib/haproxy/server-state",
    )
    reload = ("systemctl", "reload", "haproxy")
    # The only folders its paths.* may name without outside_paths (semantics.py checks).
    own_paths = (
        "/etc/haproxy",
        "/run/haproxy",
        "/var/lib/haproxy",
        "/var/log/haproxy",
        "/run/haproxy.pid",
    )
    start = ("systemctl", "start", "haproxy")

    def support_files(self, inv: Inventory, fe: Frontend) -> dict[str, str]:
        if not any(s.mode == "http" for s in frontend_services(inv, fe)):
            return {}
        return {self.body_limit_path(fe): "haproxy/body-limit.lua.j2"}

    def validate_argv(self, config: str, root: str = "") -> list[str]:
        # No -q: with it, haproxy -c is silent about the error too ("rejected the config: ").
        return ["haproxy", "-c", "-f", config]

    def before_reload(self, fe: Frontend) -> tuple[str, list[str]] | None:
        # Runtime states (a server drained through the admin socket) survive the reload only
        # if they are in the server-state file the new process loads.
        p = self.paths(fe)
        return HOLD_FAILOVER + (
            'mkdir -p -- "$(dirname -- "$2")"; '
            'printf "show servers state\\n" | socat -t 5 stdio "UNIX-CONNECT:$1" > "$2.tmp" '
            '&& mv -f -- "$2.tmp" "$2"'
        ), [p.admin_socket, p.state_file]

    def after_reload(self, fe: Frontend) -> tuple[str, list[str]] | None:
        # A reload hands the old admin socket to the new process with its old mode (Debian's
        # stock config makes it 0660): the config's `mode 600` only applies to a new socket.
        return '[ -S "$1" ] || exit 0; chown root:root -- "$1" && chmod 600 -- "$1"', [
            self.paths(fe).admin_socket
        ]

    def runtime_dirs(self, fe: Frontend) -> list[str]:
        p = self.paths(fe)
        return sorted({p.admin_socket.rsplit("/", 1)[0], p.state_file.rsplit("/", 1)[0]})

    def tls_paths(self, fe: Frontend, svc: Service) -> dict[str, str]:
        # HAProxy reads certificate and key from one PEM file.
        pem = f"{self.paths(fe).tls_dir}/{svc.name}.pem"
        return {"certificate": pem, "key": pem}

    def view(self, inv: Inventory, fe: Frontend, root: str) -> dict[str, Any]:
        v = super().view(inv, fe, root)
        # The sticky cookies each service's own pools set, to be marked Secure over TLS.
        v["secure_cookies"] = {
            svc.name: sorted(
                {p.sticky.cookie for p in service_pools(inv, svc) if p.sticky and svc.tls}
            )
            for svc in v["services"]
        }
        v["pool_mode"] = {
            p.name: svc.mode
            for svc in v["services"]
            for p in v["pools"]
            if p.name == svc.default_pool or any(r.pool == p.name for r in svc.routes)
        }
        # tcp pools with a backup and no failback: one server at a time, by a stick table.
        v["pinned_pools"] = [
            p.name
            for p in v["pools"]
            if v["pool_mode"][p.name] == "tcp"
            and not p.failback
            and any(s.backup for s in p.servers)
        ]
        return v
