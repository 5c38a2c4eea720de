"""Text of the files the lab writes into each host (scripts and minimal configs)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from clusterctl.drivers import DRIVERS

# Runs as the first process of a host: `ip netns exec NS unshare --mount --uts
# --pid --kill-child --mount-proc --propagation private /bin/sh init.sh`, so it
# is PID 1 of the host's own PID namespace (and sshd, exec'd last, reaps orphans).  Sets up the host's private mounts
# and hostname, starts its service, reports readiness, then execs sshd.
INIT_TEMPLATE = """#!/bin/sh
# clusterctl lab host init for {host} (generated; do not edit)
set -u
# Start from /: the caller's folder may be one the host replaces (/tmp, /root), and a server
# that returns to its start folder (HAProxy after chroot) would then fail.
cd / || exit 1
READY={ready}
report() {{ printf '%s\\n' "$1" > "$READY.tmp" && mv "$READY.tmp" "$READY"; }}
fail() {{ echo "lab-init: $*" >&2; report "fail: $*"; exit 1; }}
hostname {host} || fail "cannot set hostname"
{mounts}
mount -t tmpfs -o mode=0755,size=64m,nosuid,nodev lab-run /run || fail "cannot mount /run"
mkdir -p /run/sshd /run/lock {run_dirs} /run/app || fail "cannot populate /run"
chmod 1777 /run/lock
chmod 0755 /run/sshd
[ -d /tmp ] && chmod 1777 /tmp
export CLUSTERCTL_LAB_HOST={host}
{start}
report ok
exec /usr/sbin/sshd -D -e -f {sshd_config}
"""

BIND_LINE = 'mount --bind {src} {dst} || fail "cannot bind {dst}"'

# Service control script, installed at /srv/lab/bin/lab-service on each host: this shared
# part, each front-end kind's own function (its driver's lab_service) and the app's.
LAB_SERVICE_HEAD = r"""#!/bin/sh
# clusterctl lab service control: lab-service <kind> start|stop|reload|status
# kind: @KINDS_TEXT@
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

usage() { echo "usage: lab-service @KINDS@ start|stop|reload|status" >&2; exit 2; }
[ $# -eq 2 ] || usage
KIND=$1
ACTION=$2

pid_from() {
    [ -s "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null | head -n 1)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

wait_gone() {
    i=0
    while kill -0 "$1" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt "$2" ] && return 1
        sleep 0.1
    done
    return 0
}
"""

LAB_SERVICE_APP = r"""
app_ctl() {
    case "$ACTION" in
    start) exec /srv/app/bin/deploy --start ;;
    stop) exec /srv/app/bin/deploy --stop ;;
    reload) exec /srv/app/bin/deploy --restart ;;
    status) exec /srv/app/bin/deploy --status ;;
    *) usage ;;
    esac
}
"""


def render_lab_service() -> str:
    kinds = [*DRIVERS, "app"]
    head = LAB_SERVICE_HEAD.replace("@KINDS_TEXT@", " | ".join(kinds))
    head = head.replace("@KINDS@", "|".join(kinds))
    # A kind is also called by its binary's name (apache2), as its process and package are.
    cases = "".join(
        f"{'|'.join(dict.fromkeys((d.kind, d.binary)))}) {d.kind}_ctl ;;\n"
        for d in DRIVERS.values()
    )
    return (
        head
        + "".join(d.lab_service for d in DRIVERS.values())
        + LAB_SERVICE_APP
        + f'\ncase "$KIND" in\n{cases}app) app_ctl ;;\n*) usage ;;\nesac\n'
    )


SSHD_CONFIG = """# clusterctl lab sshd for {host} (generated)
ListenAddress {address}:22
HostKey {host_key}
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthenticationMethods publickey
AuthorizedKeysFile {authorized_keys} /srv/lab/keys/%u
StrictModes no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding yes
MaxStartups 200:30:400
MaxSessions 50
LogLevel ERROR
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
"""


def render_init(
    *,
    host: str,
    ready: str,
    binds: Sequence[tuple[str, str]],
    start: Sequence[Sequence[str]],
    sshd_config: str,
) -> str:
    q = shlex.quote
    mounts = "\n".join(BIND_LINE.format(src=q(src), dst=q(dst)) for src, dst in binds)
    start_lines = "\n".join(
        " ".join(q(a) for a in argv) + f' || fail "service start {n} failed"'
        for n, argv in enumerate(start, 1)
    )
    return INIT_TEMPLATE.format(
        host=q(host),
        ready=q(ready),
        mounts=mounts,
        start=start_lines,
        sshd_config=q(sshd_config),
        run_dirs=" ".join(q(d) for driver in DRIVERS.values() for d in driver.lab_run_dirs),
    )
