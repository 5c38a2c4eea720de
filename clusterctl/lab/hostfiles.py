"""Text of the files the lab writes into each host (scripts and minimal configs)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

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
mkdir -p /run/sshd /run/lock /run/haproxy /run/apache2 /run/app || fail "cannot populate /run"
chmod 1777 /run/lock
chmod 0755 /run/sshd
[ -d /tmp ] && chmod 1777 /tmp
export CLUSTERCTL_LAB_HOST={host}
{start}
report ok
exec /usr/sbin/sshd -D -e -f {sshd_config}
"""

BIND_LINE = 'mount --bind {src} {dst} || fail "cannot bind {dst}"'

# Service control script, installed at /srv/lab/bin/lab-service on each host.
LAB_SERVICE = r"""#!/bin/sh
# clusterctl lab service control: lab-service <kind> start|stop|reload|status
# kind: haproxy | nginx | apache | app
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

usage() { echo "usage: lab-service haproxy|nginx|apache|app start|stop|reload|status" >&2; exit 2; }
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

app_ctl() {
    case "$ACTION" in
    start) exec /srv/app/bin/deploy --start ;;
    stop) exec /srv/app/bin/deploy --stop ;;
    reload) exec /srv/app/bin/deploy --restart ;;
    status) exec /srv/app/bin/deploy --status ;;
    *) usage ;;
    esac
}

case "$KIND" in
haproxy) haproxy_ctl ;;
nginx) nginx_ctl ;;
apache|apache2) apache_ctl ;;
app) app_ctl ;;
*) usage ;;
esac
"""

HAPROXY_CFG = """# clusterctl lab: minimal haproxy configuration (replaced by clusterctl apply)
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

NGINX_CONF = """# clusterctl lab: minimal nginx configuration (replaced by clusterctl apply)
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

APACHE_LAB_CONF = """# clusterctl lab: localhost-only status and balancer-manager
ServerName {host}
<Location "/balancer-manager">
\tSetHandler balancer-manager
\tRequire local
</Location>
"""

APACHE_PORTS_CONF = """# clusterctl lab: nothing listens on the host address until clusterctl apply
Listen 127.0.0.1:8404
"""

APACHE_MODULES = ("proxy", "proxy_http", "proxy_balancer", "slotmem_shm", "lbmethod_byrequests")

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
    )
