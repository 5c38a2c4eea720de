"""keepalived (VRRP): the virtual addresses a group of front ends shares.

Not a proxy: a member's keepalived is one more unit on the member's host (model/vrrp.py makes
it), rendered, validated (`keepalived --config-test`), swapped, reloaded and rolled back by the
same per-host path as the proxies. Its reload (SIGHUP) re-reads the config inside the running
VRRP child, so no new process proves it: the confirmation is keepalived's own JSON dump
showing the new config's instances.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from clusterctl.drivers.base import Driver, KindPaths
from clusterctl.model.queries import bracket
from clusterctl.model.semantics import frontend_services
from clusterctl.model.vrrp import (
    bound_vips,
    groups_of,
    member_of,
    own_address_problems,
    priority,
    vip_problems,
    virtual_addresses,
)

if TYPE_CHECKING:
    from pathlib import Path

    from clusterctl.facts import Network
    from clusterctl.model.schema import Frontend, Inventory
    from clusterctl.model.vrrp import Group

CONFIG_DIR = "/etc/keepalived"
# Where a member whose services bind a virtual address itself gets non-local binding, so its
# proxy can listen on the address while another member holds it (and at boot, by systemd).
SYSCTL_FILE = "/etc/sysctl.d/60-clusterctl-vrrp.conf"
PROBE_SCRIPT = f"{CONFIG_DIR}/clusterctl-probe.sh"
# keepalived writes its JSON dump here (fixed in 2.2.7), on the signal `--signum=JSON` names.
JSON_DUMP = "/tmp/keepalived.json"  # noqa: S108
VRRP_STATES = {0: "INIT", 1: "BACKUP", 2: "MASTER", 3: "FAULT"}


def hold_file(group: str) -> str:
    """The file keepalived tracks (weight 0): a value other than 0 puts the member's instance
    of `group` in FAULT, so it gives the address up; clusterctl writes it for failover and
    maintain, no reload needed."""
    return f"{CONFIG_DIR}/clusterctl-hold.{group}"


# $1 pid file, $2 JSON dump, $3 the installed config (as clusterctl renders it: its instances'
# names, router ids, priorities and advert intervals are read back from it). keepalived dumps its instances as JSON on a signal: the reload is confirmed when the dump,
# asked for after the SIGHUP, shows every instance with the new config's router id and
# priority (the HUP is handled first: the VRRP child reads its signals in order).
CONFIRM = r"""pid=$(head -n 1 -- "$1" 2>/dev/null | tr -dc 0-9)
[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { echo "keepalived is not running" >&2; exit 1; }
dump=$2
exec 9>/run/clusterctl-keepalived-json.lock && flock -w 10 9 || { echo "another dump is being read" >&2; exit 3; }
rm -f -- "$dump"
kill -s "$(keepalived --signum=JSON)" "$pid" || exit 1
i=0
until tail -c 3 "$dump" 2>/dev/null | grep -q ']'; do i=$((i + 1)); [ $i -gt 40 ] && { echo "keepalived wrote no JSON dump" >&2; exit 1; }; sleep 0.05; done
j=$(tr -d ' \n' < "$dump")
specs=$(awk '/^vrrp_instance /{n=$2} /^    virtual_router_id /{v=$2} /^    priority /{p=$2} /^    advert_int /{print n ":" v ":" p ":" $2}' "$3")
for spec in $specs; do
  n=${spec%%:*}; rest=${spec#*:}; v=${rest%%:*}; rest=${rest#*:}; p=${rest%%:*}; a=$(printf '%s' "${rest#*:}" | sed 's/[.]/[.]/g')
  case $j in
  *"\"iname\":\"$n\""*) ;;
  *) echo "instance $n not loaded yet" >&2; exit 3 ;;
  esac
  printf '%s' "$j" | grep -Eq "\"iname\":\"$n\",[^}]*\"vrid\":$v,\"base_priority\":$p,[^}]*\"adver_int\":$a([.]?0*)?," || { echo "instance $n not at router id $v, priority $p, advert $a yet" >&2; exit 3; }
done
"""

# $1 pid file, $2 JSON dump: the member's instances as keepalived reports them, one line
# each: NAME STATE (keepalived's state number), and the addresses on its interfaces. The dump
# has one fixed path: readers take turns (flock), and read it once it is whole (its closing ]).
STATE = r"""pid=$(head -n 1 -- "$1" 2>/dev/null | tr -dc 0-9)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  exec 9>/run/clusterctl-keepalived-json.lock && flock -w 10 9
  rm -f -- "$2"
  kill -s "$(keepalived --signum=JSON)" "$pid" 2>/dev/null
  i=0
  until tail -c 3 "$2" 2>/dev/null | grep -q ']' || [ $i -gt 40 ]; do i=$((i + 1)); sleep 0.05; done
  tr -d ' \n' < "$2" 2>/dev/null | grep -o '"iname":"[^"]*"\|"state":[0-9]' | paste -d ' ' - - | sed 's/"iname":"\([^"]*\)" "state":\([0-9]\)/INSTANCE \1 \2/'
else
  echo "DOWN"
fi
ip -o addr show 2>/dev/null | awk '{print "ADDR", $2, $4}'
"""


LAB_SERVICE = r"""
keepalived_ctl() {
    CFG=/etc/keepalived/keepalived.conf
    PIDF=/run/keepalived.pid
    case "$ACTION" in
    start)
        if pid=$(pid_from $PIDF); then echo "keepalived already running (pid $pid)"; return 0; fi
        [ -s $CFG ] || { echo "keepalived: no $CFG" >&2; return 1; }
        mkdir -p /var/log/keepalived
        rm -f $PIDF /run/keepalived_vrrp.pid
        # In the foreground (-n) with its log on standard error (-l, no syslog in a lab host).
        setsid keepalived -n -l -D -G -f $CFG -p $PIDF -r /run/keepalived_vrrp.pid \
            -c /run/keepalived_checkers.pid </dev/null >>/var/log/keepalived/keepalived.log 2>&1 &
        bg=$!
        i=0
        until pid=$(pid_from $PIDF); do
            kill -0 $bg 2>/dev/null || { echo "keepalived failed to start: $(tail -n 3 /var/log/keepalived/keepalived.log)" >&2; return 1; }
            i=$((i + 1)); [ $i -gt 100 ] && { echo "keepalived did not start" >&2; return 1; }
            sleep 0.05
        done
        echo "keepalived started (pid $pid)" ;;
    stop)
        pid=$(pid_from $PIDF) || { echo "keepalived not running"; return 0; }
        kill -TERM "$pid"
        wait_gone "$pid" 50 || kill -KILL "$pid"
        rm -f $PIDF
        echo "keepalived stopped" ;;
    reload)
        pid=$(pid_from $PIDF) || { echo "keepalived not running" >&2; return 1; }
        keepalived -t -f $CFG || { echo "keepalived: configuration invalid, not reloaded" >&2; return 1; }
        kill -HUP "$pid" || return 1
        echo "keepalived reloaded (pid $pid)" ;;
    status)
        if pid=$(pid_from $PIDF); then echo "keepalived running (pid $pid)"; return 0; fi
        echo "keepalived stopped"; return 3 ;;
    *) usage ;;
    esac
}
"""


class KeepalivedDriver(Driver):
    kind = "keepalived"
    template = "keepalived/keepalived.conf.j2"
    defaults = KindPaths(
        config=f"{CONFIG_DIR}/keepalived.conf",
        tls_dir=CONFIG_DIR,
        pid_file="/run/keepalived.pid",
    )
    own_paths = (CONFIG_DIR, "/run/keepalived.pid")
    reload = ("systemctl", "reload", "keepalived")
    start = ("systemctl", "start", "keepalived")
    binary = "keepalived"
    processes = ("keepalived",)
    package = "keepalived"
    version_prefix = "Keepalived v"
    default_version = (2, 2, 7)
    min_version = (2, 2)
    error_log = "-"
    balance = frozenset()
    lab_dirs = (CONFIG_DIR,)
    lab_service = LAB_SERVICE
    # Not a proxy: no front end is of this kind; the lab starts it beside one (--vip).
    proxy = False

    def lab_seed(self, root: Path, host: str) -> dict[str, str]:
        return {}

    def validate_argv(self, config: str, root: str = "") -> list[str]:
        # Exit 0: clean; 5: an error or warning (printed on stderr). A missing file is exit 0
        # ("Config files missing"), so its presence is checked first.
        return ["sh", "-c", 'test -s "$1" && exec keepalived --config-test -f "$1"', "sh", config]

    def confirm_reload(self, fe: Frontend) -> tuple[str, list[str]] | None:
        p = self.paths(fe)
        return CONFIRM, [p.pid_file, JSON_DUMP, p.config]

    def refusals(self, inv: Inventory, fe: Frontend, network: Network) -> list[str]:
        """The virtual address against the member's own addresses: inside the subnet of the
        group's interface there, and not the host's own (one keepalived put there is not: a
        running keepalived on a holder has it)."""
        member = member_of(fe.name)
        out: list[str] = []
        for g in groups_of(inv, member):
            out += vip_problems(g, member, network.addresses)
            out += own_address_problems(g, member, network.addresses, bool(network.server_pids))
        return out

    def support_files(self, inv: Inventory, fe: Frontend) -> dict[str, str]:
        member = member_of(fe.name)
        out = {}
        if any(g.probe is not None for g in groups_of(inv, member)):
            out[PROBE_SCRIPT] = "keepalived/clusterctl-probe.sh.j2"
        if bound_vips(inv, member):
            out[SYSCTL_FILE] = "keepalived/nonlocal-bind.conf.j2"
        return out

    def after_reload(self, fe: Frontend) -> tuple[str, list[str]] | None:
        # Non-local binding now, not only at the next boot (the file is there only when a
        # service binds a virtual address; a staging root's copy is never loaded).
        return '[ -f "$1" ] || exit 0; sysctl -q -p "$1"', [SYSCTL_FILE]

    def view(self, inv: Inventory, fe: Frontend, root: str) -> dict[str, Any]:
        member = member_of(fe.name)
        by_name = {f.name: f for f in inv.frontends}
        proxy = by_name[member]
        from clusterctl.drivers import driver_for

        process = driver_for(proxy.kind).processes[0]
        groups = []
        for g in groups_of(inv, member):
            groups.append(
                {
                    "g": g,
                    "priority": priority(g, member),
                    "advert": _advert(g.advert),
                    "src": proxy.address,
                    "peers": [
                        by_name[m].address for m in g.members if m != member and m in by_name
                    ],
                    "hold": root + hold_file(g.name),
                    "probe": _probe_args(inv, proxy, g),
                    "timing": _probe_timing(g),
                    "process": process,
                }
            )
        return {
            "source": inv.cluster,
            "member": member,
            "nonlocal": sorted({ipaddress.ip_address(a).version for a in bound_vips(inv, member)}),
            "groups": groups,
            "probe_script": root + PROBE_SCRIPT,
        }


def _advert(ms: int) -> str:
    """Seconds as keepalived reads advert_int (VRRPv3: centiseconds)."""
    return str(ms // 1000) if ms % 1000 == 0 else f"{ms / 1000:.2f}".rstrip("0")


def _probe_args(inv: Inventory, proxy: Frontend, g: Group) -> str:
    """The probe script's arguments: scheme, address, port, path (all validated values), then
    the milliseconds between asks inside one run, the failures in a row that fail it and the
    file keeping that count between runs (0 0 -: ask once, keepalived's own interval and fall).
    The address is the member's own listener on the port: never a virtual address (of any
    group), which the member may not hold."""
    if g.probe is None:
        return ""
    address = "127.0.0.1"
    vips = virtual_addresses(inv)
    for svc in frontend_services(inv, proxy):
        for ln in svc.listen:
            if ln.port == g.probe.port and ln.address != "*" and ln.address not in vips:
                address = ln.address
    host = bracket(address)
    path = g.probe.path if g.probe.scheme != "tcp" else "/"
    if _polls(g):
        every, fall, state = g.probe.interval, g.probe.fall, f"/run/clusterctl-probe.{g.name}"
    else:
        every, fall, state = 0, 0, "-"
    return f"{g.probe.scheme} {host} {g.probe.port} {path} {every} {fall} {state}"


def _polls(g: Group) -> bool:
    """A sub-second probe: keepalived 2.2.7 runs a script at most once a second (its interval
    is whole seconds), so each run asks every `interval` for most of that second and fails when
    the failures in a row (counted across runs) reach `fall`; keepalived then steps down on
    that one failed run. `rise` still counts keepalived's runs: seconds."""
    return g.probe is not None and g.probe.interval < 1000


def _probe_timing(g: Group) -> dict[str, int]:
    """keepalived's interval (s), fall and rise for the group's probe script."""
    if g.probe is None:
        return {}
    if _polls(g):
        return {"interval": 1, "fall": 1, "rise": g.probe.rise}
    return {"interval": g.probe.interval // 1000, "fall": g.probe.fall, "rise": g.probe.rise}


def parse_state(text: str) -> tuple[dict[str, str] | None, list[tuple[str, str]]]:
    """STATE's output: instance -> MASTER|BACKUP|FAULT|INIT (None: keepalived is down), and the
    host's (interface, address/prefix) pairs."""
    instances: dict[str, str] | None = {}
    addrs: list[tuple[str, str]] = []
    for line in text.splitlines():
        parts = line.split()
        if parts == ["DOWN"]:
            instances = None
        elif len(parts) == 3 and parts[0] == "INSTANCE" and instances is not None:
            instances[parts[1]] = (
                VRRP_STATES.get(int(parts[2]), "UNKNOWN") if parts[2].isdigit() else "UNKNOWN"
            )
        elif len(parts) == 3 and parts[0] == "ADDR":
            addrs.append((parts[1].split("@", 1)[0], parts[2]))
    return instances, addrs
