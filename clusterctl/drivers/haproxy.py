"""HAProxy: one haproxy.cfg in master-worker mode, runtime API on an admin socket."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from clusterctl.drivers import haproxy_control as hc
from clusterctl.drivers.base import Driver, KindPaths
from clusterctl.drivers.control import ALL_CHANGES, Change, Command, Live, PoolMembers
from clusterctl.model.semantics import frontend_services, service_pools

if TYPE_CHECKING:
    from pathlib import Path

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


# clusterctl lab: the master in the foreground with its log, as systemd runs it.
LAB_SERVICE = r"""
haproxy_ctl() {
    CFG=/etc/haproxy/haproxy.cfg
    PIDF=/run/haproxy.pid
    case "$ACTION" in
    start)
        if pid=$(pid_from $PIDF); then echo "haproxy already running (master pid $pid)"; return 0; fi
        mkdir -p /run/haproxy /var/log/haproxy
        # The master in the foreground with its standard error in a log, as systemd runs it
        # (-Ws, into the journal): that is where HAProxy says why a reload failed. -D would
        # send it to /dev/null.
        rm -f $PIDF
        setsid haproxy -W -p $PIDF -f $CFG </dev/null >>/var/log/haproxy/master.log 2>&1 &
        bg=$!
        i=0
        until pid=$(pid_from $PIDF); do
            kill -0 $bg 2>/dev/null || { echo "haproxy failed to start: $(tail -n 3 /var/log/haproxy/master.log)" >&2; return 1; }
            i=$((i + 1)); [ $i -gt 100 ] && { echo "haproxy did not start" >&2; return 1; }
            sleep 0.05
        done
        echo "haproxy started (master pid $pid)" ;;
    stop)
        pid=$(pid_from $PIDF) || { echo "haproxy not running"; return 0; }
        kill -USR1 "$pid"
        wait_gone "$pid" 100 || kill -TERM "$pid"
        wait_gone "$pid" 20 || kill -KILL "$pid"
        rm -f $PIDF
        echo "haproxy stopped" ;;
    reload)
        pid=$(pid_from $PIDF) || { echo "haproxy not running" >&2; return 1; }
        haproxy -c -q -f $CFG || { echo "haproxy: configuration invalid, not reloaded" >&2; return 1; }
        kill -USR2 "$pid" || return 1
        echo "haproxy reloaded (master pid $pid)" ;;
    status)
        if pid=$(pid_from $PIDF); then echo "haproxy running (master pid $pid)"; return 0; fi
        echo "haproxy stopped"; return 3 ;;
    *) usage ;;
    esac
}
"""

LAB_CFG = """# clusterctl lab: minimal haproxy configuration (replaced by clusterctl apply)
global
\tchroot /var/lib/haproxy
\tstats socket /run/haproxy/admin.sock mode 660 level admin
\tstats timeout 30s
\tuser haproxy
\tgroup haproxy

defaults
\tmode http
\ttimeout connect 5s
\ttimeout client 50s
\ttimeout server 50s

frontend lab-stats
\tbind 127.0.0.1:8404
\thttp-request return status 200 content-type text/plain string "{host} haproxy\\n"
"""


class HAProxyDriver(Driver):
    kind = "haproxy"
    bind_rx = re.compile(r"^\s*bind\s+(\S+)", re.M)
    writes_rx = re.compile(r"^\s*(?:stats socket|server-state-file|pidfile)\s+(\S+)", re.M)
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
    binary = "haproxy"
    processes = ("haproxy",)
    package = "haproxy"
    lab_dirs = ("/etc/haproxy", "/var/lib/haproxy")
    lab_run_dirs = ("/run/haproxy",)
    lab_service = LAB_SERVICE
    version_prefix = "HAProxy version "
    default_version = (2, 6)
    min_version = (2, 2)
    # The master writes its reload ALERTs to its own standard error and nowhere else;
    # "Loading failure!" is its last word.
    error_log = "-"
    reload_failed_rx = re.compile(r"Loading failure|Failed to load the new configuration")
    reload_quiet = 0.1
    balance = frozenset({"roundrobin", "leastconn", "source", "random", "first"})
    serves_tcp = True
    logs_to_syslog = True
    has_admin_socket = True
    drain = "runtime"
    control = "admin-socket"

    runtime_changes = ALL_CHANGES

    def read_commands(self, fe: Frontend) -> list[Command]:
        return [hc.socket_command(self.paths(fe).admin_socket, "show stat")]

    def parse_live(self, fe: Frontend, outputs: list[str]) -> Live:
        return hc.live_view(fe.name, outputs)

    def change_commands(self, fe: Frontend, live: Live, changes: list[Change]) -> list[Command]:
        return hc.change_commands(self.paths(fe).admin_socket, changes)

    def check_change(self, fe: Frontend, changes: list[Change], outputs: list[str]) -> None:
        hc.check_refusal(fe.name, outputs)

    def persist_commands(self, fe: Frontend) -> list[Command]:
        # A restart (and the next reload) loads the runtime states from the state file.
        p = self.paths(fe)
        argv = ("sh", "-c", hc.DUMP_STATE, "clusterctl", p.admin_socket, p.state_file)
        return [Command(argv, what="save the server states")]

    def parse_members(self, text: str) -> tuple[dict[str, PoolMembers], str] | None:
        return hc.parse_members(text)

    def support_files(self, inv: Inventory, fe: Frontend) -> dict[str, str]:
        if not any(s.mode == "http" for s in frontend_services(inv, fe)):
            return {}
        return {self.body_limit_path(fe): "haproxy/body-limit.lua.j2"}

    def lab_seed(self, root: Path, host: str) -> dict[str, str]:
        return {"etc/haproxy/haproxy.cfg": LAB_CFG.format(host=host)}

    def lab_health(self, host_root: Path) -> tuple[bool, str]:
        if not (host_root / self.defaults.admin_socket.lstrip("/")).exists():
            return False, "haproxy running, admin socket missing"
        return True, "haproxy running, admin socket present"

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
        # Each pool's mode, the last service using it deciding; by name look-ups, not a scan of
        # every pool for every service and route (quadratic in a large inventory).
        names = {p.name for p in v["pools"]}
        v["pool_mode"] = {}
        for svc in v["services"]:
            used = names.intersection([svc.default_pool, *(r.pool for r in svc.routes)])
            for name in sorted(used):  # in v["pools"] order (sorted by name), as before
                v["pool_mode"][name] = svc.mode
        # tcp pools with a backup and no failback: one server at a time, by a stick table.
        v["pinned_pools"] = [
            p.name
            for p in v["pools"]
            if v["pool_mode"][p.name] == "tcp"
            and not p.failback
            and any(s.backup for s in p.servers)
        ]
        return v
