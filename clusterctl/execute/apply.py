"""Execute a host's plan: stage, validate, back up, swap atomically, reload, confirm, probe.

Every step is a fixed script of clusterctl's own with the variable parts passed as arguments
($1, $2, ...), so no inventory value is ever spliced into a remote shell. On any failure after
files were swapped, the backups go back, the server is reloaded again, and the host is reported
failed with the validator's or the probe's own words. A host ends with the old or the new
config, valid and loaded.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass, replace

from clusterctl.drivers import driver_for
from clusterctl.errors import ClusterctlError
from clusterctl.execute.ssh import Remote, Result, quote
from clusterctl.facts import TMP_SUFFIX, frontend_state_dir, pending_path
from clusterctl.model.schema import Frontend, Inventory
from clusterctl.model.semantics import frontend_services
from clusterctl.plan import HostPlan
from clusterctl.render import File, render_frontend

_PATH = "PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin; "


class StepFailed(ClusterctlError):
    def __init__(self, step: str, words: str) -> None:
        self.step = step
        super().__init__(f"{step}: {words}")


@dataclass(frozen=True)
class HostResult:
    host: str
    status: str  # changed | unchanged | failed | rolled back
    message: str
    seconds: float


def checkpoint(step: str) -> None:
    """Fault injection for tests: die like a killed process right after `step`.

    CLUSTERCTL_FAULT_EXIT_AFTER=rename makes apply vanish between the rename and the reload,
    as a lost laptop or a killed CI job would, so tests can prove the next run recovers.
    """
    if os.environ.get("CLUSTERCTL_FAULT_EXIT_AFTER") == step:
        os._exit(137)


def _check(result: Result, step: str) -> Result:
    if not result.ok:
        raise StepFailed(step, result.words())
    return result


def backup_dir(fe: Frontend) -> str:
    return f"{frontend_state_dir(fe.name)}/backup"


def stage_dir(fe: Frontend) -> str:
    return f"{frontend_state_dir(fe.name)}/stage"


# $1 target path, $2 mode, $3 owner:group; content on stdin. Created private (umask 077) and
# only then given its final mode: a private key is never readable by others, not even briefly.
# A write that fails half-way (disk full, read-only) leaves no partial file behind.
_WRITE = (
    _PATH
    + r"""set -e
d=$(dirname -- "$1"); mkdir -p -- "$d"
rm -f -- "$1"
trap 'rm -f -- "$1"' EXIT
(umask 077 && cat > "$1")
chown -- "$3" "$1"
chmod -- "$2" "$1"
trap - EXIT
"""
)


def write_file(remote: Remote, path: str, f: File) -> None:
    _check(
        remote.sh(_WRITE, path, f"{f.mode:o}", f"{f.owner}:{f.group}", stdin=f.content),
        f"upload {path}",
    )


# $1 certificate file, $2 private key file (the same file for a combined PEM): the key must be
# the certificate's. Skipped on a host without openssl; the server's own check still runs.
_TLS_PAIR = (
    _PATH
    + r"""command -v openssl >/dev/null 2>&1 || exit 0
c=$(openssl x509 -noout -pubkey -in "$1" 2>&1) || { printf '%s is not a certificate openssl can read: %s\n' "$1" "$c" >&2; exit 1; }
k=$(openssl pkey -passin pass: -pubout -in "$2" 2>&1) || { printf '%s is not a private key openssl can read: %s\n' "$2" "$k" >&2; exit 1; }
[ "$c" = "$k" ] || { printf 'the private key %s does not belong to the certificate %s\n' "$2" "$1" >&2; exit 1; }
"""
)


def _validator_words(result: Result) -> str:
    """A validator's words without its banner lines (haproxy -c prints two [NOTICE]s, its
    version and path, before the alerts that matter; they would push those out of the report)."""
    text = result.err.strip() or result.out.strip()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("[NOTICE]")]
    return " | ".join(lines)[:1000] or result.words()


def stage_and_validate(remote: Remote, inv: Inventory, fe: Frontend, run_id: str) -> None:
    """Validate the new files on the host, under a staging root, before anything is replaced."""
    driver = driver_for(fe.kind)
    # Whatever an interrupted earlier run left in this front end's staging area goes first.
    remote.sh('rm -rf -- "$1"', stage_dir(fe))
    root = f"{stage_dir(fe)}/{run_id}"
    try:
        for path, f in render_frontend(inv, fe, root=root).items():
            write_file(remote, root + path, f)
        dirs = [root + d for d in driver.runtime_dirs(fe)]
        if dirs:
            _check(remote.sh(_PATH + 'mkdir -p -- "$@"', *dirs), "stage")
        argv = driver.validate_argv(root + driver.paths(fe).config, root)
        result = remote.sh(_PATH + 'exec "$@"', *argv)
        if not result.ok:
            words = _validator_words(result)
            raise StepFailed(f"validate ({argv[0]})", words.replace(root, ""))
        # `apache2 -t` does not load certificates, and a graceful restart that cannot load them
        # stops Apache altogether: every kind gets the same pair check before anything moves.
        for svc in frontend_services(inv, fe):
            if svc.tls is None:
                continue
            paths = driver.tls_paths(fe, svc)
            pair = remote.sh(_TLS_PAIR, root + paths["certificate"], root + paths["key"])
            if not pair.ok:
                raise StepFailed("validate (openssl)", pair.words().replace(root, ""))
    finally:
        remote.sh('rm -rf -- "$1"', root)


# $1 backup root, then pairs of target paths: backs each existing target up (keeping mode and
# owner) and notes the absent ones so a rollback removes them.
_BACKUP = r"""set -e
root=$1; shift
rm -rf -- "$root"; mkdir -p -m 700 -- "$root"
for f in "$@"; do
  if [ -e "$f" ]; then mkdir -p -- "$root$(dirname -- "$f")"; cp -p -- "$f" "$root$f"
  else printf '%s\n' "$f" >> "$root/.absent"; fi
done
"""

# $1 pending marker, $2 run id, then targets: each .clusterctl-new beside it renamed into place.
_SWAP = r"""set -e
mkdir -p -- "$(dirname -- "$1")"; printf '%s\n' "$2" > "$1"; shift 2
for f in "$@"; do
  d=$(dirname -- "$f"); b=$(basename -- "$f")
  mv -f -T -- "$d/.$b.clusterctl-new" "$f"
done
"""

# $1 backup root, then targets: put each back as it was, remove those that did not exist.
_RESTORE = r"""set -e
root=$1; shift
for f in "$@"; do
  if [ -e "$root$f" ]; then
    d=$(dirname -- "$f"); b=$(basename -- "$f")
    cp -p -- "$root$f" "$d/.$b.clusterctl-new"; mv -f -T -- "$d/.$b.clusterctl-new" "$f"
  elif [ -f "$root/.absent" ] && grep -qxF -- "$f" "$root/.absent"; then
    rm -f -- "$f"
  fi
done
"""

# $1 pid file: the master's pid and its children (the workers), or nothing if not running.
_PIDS = r"""pid=$(cat -- "$1" 2>/dev/null | head -n 1 | tr -dc 0-9)
[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || exit 0
printf 'MASTER %s\n' "$pid"
for c in $(cat /proc/[0-9]*/stat 2>/dev/null | awk -v p="$pid" '$4 == p {print $1}'); do
  printf 'CHILD %s\n' "$c"
done
"""


def temp_path(target: str) -> str:
    d, _, b = target.rpartition("/")
    return f"{d}/.{b}{TMP_SUFFIX}"


def server_pids(remote: Remote, fe: Frontend) -> tuple[int | None, set[int]]:
    res = remote.sh(_PIDS, driver_for(fe.kind).paths(fe).pid_file)
    master = None
    children: set[int] = set()
    for line in res.out.splitlines():
        tag, _, value = line.partition(" ")
        if tag == "MASTER" and value.isdigit():
            master = int(value)
        elif tag == "CHILD" and value.isdigit():
            children.add(int(value))
    return master, children


def reload_and_confirm(
    remote: Remote, fe: Frontend, timeout: float = 15.0, ports: frozenset[int] = frozenset()
) -> None:
    """Reload gracefully and prove it happened: new worker processes under a live master.

    `nginx -s reload` (and systemctl) exit 0 even when the server kept its old config, so the
    exit status alone proves nothing. `ports` are those the new config listens on: when no new
    workers come, another process holding one of them is the usual reason, and is named.
    """
    driver = driver_for(fe.kind)
    master, before = server_pids(remote, fe)
    if master is None:
        argv = driver.start_argv(fe)
        _check(remote.sh(_PATH + 'exec "$@"', *argv), f"start ({quote(argv)})")
    else:
        hook = driver.before_reload(fe)
        if hook is not None:
            _check(remote.sh(_PATH + hook[0], *hook[1]), "before reload")
        argv = driver.reload_argv(fe)
        _check(remote.sh(_PATH + 'exec "$@"', *argv), f"reload ({quote(argv)})")
    started = time.monotonic()
    gone_since: float | None = None
    conflicts_checked = False

    def failed(why: str) -> StepFailed:
        words = [w for w in (_port_conflicts(remote, ports), _error_log_tail(remote, fe)) if w]
        return StepFailed(
            "reload", f"{why} after {quote(argv)}{': ' if words else ''}{'; '.join(words)}"
        )

    while True:
        now_master, after = server_pids(remote, fe)
        if now_master is not None and after and (master is None or after - before):
            hook = driver.after_reload(fe)
            if hook is not None:
                _check(remote.sh(_PATH + hook[0], *hook[1]), "after reload")
            return
        waited = time.monotonic() - started
        # A server that was running and is gone did not reload, it died (Apache exits when a
        # graceful restart cannot bind or load a certificate): say so now, not after `timeout`,
        # so the rollback starts it again at once. A second of grace covers a pid file rewrite.
        if master is not None and now_master is None:
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since > 1.0:
                raise failed("the server exited")
        else:
            gone_since = None
        # HAProxy and nginx keep their old workers when the new config cannot bind: no need to
        # wait out the timeout when another process visibly holds one of the new ports.
        if waited > 2.0 and not conflicts_checked and now_master is not None:
            conflicts_checked = True
            if _port_conflicts(remote, ports):
                raise failed("no new workers started")
        if waited > timeout:
            raise failed(
                "the server is not running" if now_master is None else "no new workers started"
            )
        time.sleep(0.2)


_SERVER_PROCESSES = frozenset({"haproxy", "nginx", "apache2", "httpd"})
_SS_USER = re.compile(r'\("([^"]*)",pid=(\d+)')


def _port_conflicts(remote: Remote, ports: frozenset[int]) -> str:
    """Listening sockets on `ports` held by something other than a web server, in words."""
    if not ports:
        return ""
    res = remote.sh(_PATH + "ss -Htlnp 2>/dev/null")
    found: list[str] = []
    for line in res.out.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        local = fields[3]
        port = local.rpartition(":")[2]
        if not port.isdigit() or int(port) not in ports:
            continue
        others = [f"{n} (pid {p})" for n, p in _SS_USER.findall(line) if n not in _SERVER_PROCESSES]
        if others:
            found.append(f"{local} is already in use by {', '.join(sorted(set(others)))}")
    return "; ".join(sorted(set(found)))


def _error_log_tail(remote: Remote, fe: Frontend) -> str:
    logs = {
        "nginx": "/var/log/nginx/error.log",
        "apache": "/var/log/apache2/error.log",
    }
    if fe.kind not in logs:
        return ""
    res = remote.sh('tail -n 2 -- "$1" 2>/dev/null', logs[fe.kind])
    return res.out.strip().replace("\n", " | ")[:300]


# $1 scheme (http|https|tcp), $2 address, $3 port.
_PROBE = (
    _PATH
    + r"""case $1 in
tcp) timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$2" "$3" && echo connected ;;
*) curl -sS -k -o /dev/null -w '%{http_code}' --max-time 5 "$1://$2:$3/" ;;
esac
"""
)


def probe(remote: Remote, inv: Inventory, fe: Frontend) -> None:
    """The front end answers on every listener of its services, seen from the host itself."""
    for svc in frontend_services(inv, fe):
        for ln in svc.listen:
            address = "127.0.0.1" if ln.address == "*" else ln.address
            host = f"[{address}]" if ":" in address else address
            scheme = "tcp" if svc.mode == "tcp" else ("https" if ln.tls else "http")
            res = remote.sh(_PROBE, scheme, host, str(ln.port))
            answer = res.out.strip()
            if not res.ok or answer in ("", "000"):
                raise StepFailed(
                    "probe", f"{scheme}://{host}:{ln.port}/ does not answer: {res.words()}"
                )


def apply_host(remote: Remote, inv: Inventory, fe: Frontend, plan: HostPlan) -> HostResult:
    """Bring one front end to its planned state; never leaves it half-done."""
    started = time.monotonic()
    if not plan.needs_work:
        return HostResult(fe.name, "unchanged", "", 0.0)
    fe_now = replace(fe, version=plan.version) if fe.version is None and plan.version else fe
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)
    changes = plan.changes
    targets = [c.path for c in changes]

    pending = pending_path(fe.name)
    if plan.stale_temps:
        remote.sh('rm -f -- "$@"', *plan.stale_temps)
    if not changes:  # only a reload left over from an interrupted apply
        if plan.pending_reload:
            reload_and_confirm(remote, fe_now)
            probe(remote, inv, fe_now)
            _check(remote.sh('rm -f -- "$1"', pending), "clear pending")
            return HostResult(fe.name, "changed", "finished a pending reload", _since(started))
        return HostResult(
            fe.name,
            "changed",
            f"removed {len(plan.stale_temps)} left-over temporary file(s)",
            _since(started),
        )

    stage_and_validate(remote, inv, fe_now, run_id)
    checkpoint("validate")
    temps = [temp_path(t) for t in targets]
    try:
        for c in changes:
            write_file(remote, temp_path(c.path), c.new)
    except ClusterctlError:
        remote.sh('rm -f -- "$@"', *temps)
        raise
    checkpoint("upload")
    backup = backup_dir(fe)
    try:
        _check(remote.sh(_BACKUP, backup, *targets), "backup")
    except ClusterctlError:
        remote.sh('rm -f -- "$@"', *temps)
        raise
    checkpoint("backup")
    _check(remote.sh(_SWAP, pending, run_id, *targets), "rename")
    checkpoint("rename")
    ports = frozenset(ln.port for svc in frontend_services(inv, fe_now) for ln in svc.listen)
    try:
        reload_and_confirm(remote, fe_now, ports=ports)
        checkpoint("reload")
        probe(remote, inv, fe_now)
        checkpoint("probe")
    except StepFailed as failure:
        try:
            _rollback(remote, fe_now, backup, targets, pending)
        except ClusterctlError as undo:
            # Never hide the first failure behind the second one.
            return HostResult(
                fe.name,
                "failed",
                f"{failure}; then the rollback failed too: {undo}",
                _since(started),
            )
        return HostResult(fe.name, "rolled back", str(failure), _since(started))
    _check(remote.sh('rm -f -- "$1"', pending), "clear pending")
    return HostResult(
        fe.name, "changed", f"{len(changes)} file(s) updated, reloaded", _since(started)
    )


def _rollback(remote: Remote, fe: Frontend, backup: str, targets: list[str], pending: str) -> None:
    _check(remote.sh(_RESTORE, backup, *targets), "restore backup")
    reload_and_confirm(remote, fe)
    remote.sh('rm -f -- "$1"', pending)


def _since(t: float) -> float:
    return round(time.monotonic() - t, 2)
