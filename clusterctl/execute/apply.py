"""Execute a host's plan: stage, validate, back up, swap atomically, reload, confirm, probe.

Every step is a fixed script of clusterctl's own with the variable parts passed as arguments
($1, $2, ...), so no inventory value is ever spliced into a remote shell. On any failure after
files were swapped, the backups go back, the server is reloaded again, and the host is reported
failed with the validator's or the probe's own words. A host ends with the old or the new
config, valid and loaded.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, replace

from clusterctl.drivers import driver_for
from clusterctl.errors import ClusterctlError
from clusterctl.execute.ssh import Remote, Result, quote
from clusterctl.facts import PENDING, STATE_DIR, TMP_SUFFIX
from clusterctl.model.schema import Frontend, Inventory
from clusterctl.model.semantics import frontend_services
from clusterctl.plan import HostPlan
from clusterctl.render import File, render_frontend

BACKUP_DIR = f"{STATE_DIR}/backup"
STAGE_DIR = f"{STATE_DIR}/stage"
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


# $1 target path, $2 mode, $3 owner:group; content on stdin. Created private (umask 077) and
# only then given its final mode: a private key is never readable by others, not even briefly.
_WRITE = (
    _PATH
    + r"""set -e
d=$(dirname -- "$1"); mkdir -p -- "$d"
rm -f -- "$1"
(umask 077 && cat > "$1")
chown -- "$3" "$1"
chmod -- "$2" "$1"
"""
)


def write_file(remote: Remote, path: str, f: File) -> None:
    _check(
        remote.sh(_WRITE, path, f"{f.mode:o}", f"{f.owner}:{f.group}", stdin=f.content),
        f"upload {path}",
    )


def stage_and_validate(remote: Remote, inv: Inventory, fe: Frontend, run_id: str) -> None:
    """Validate the new files on the host, under a staging root, before anything is replaced."""
    driver = driver_for(fe.kind)
    root = f"{STAGE_DIR}/{run_id}"
    try:
        for path, f in render_frontend(inv, fe, root=root).items():
            write_file(remote, root + path, f)
        dirs = [root + d for d in driver.runtime_dirs(fe)]
        if dirs:
            _check(remote.sh(_PATH + 'mkdir -p -- "$@"', *dirs), "stage")
        argv = driver.validate_argv(root + driver.paths(fe).config, root)
        result = remote.sh(_PATH + 'exec "$@"', *argv)
        if not result.ok:
            raise StepFailed(f"validate ({argv[0]})", result.words().replace(root, ""))
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


def reload_and_confirm(remote: Remote, fe: Frontend, timeout: float = 15.0) -> None:
    """Reload gracefully and prove it happened: new worker processes under a live master.

    `nginx -s reload` (and systemctl) exit 0 even when the server kept its old config, so the
    exit status alone proves nothing.
    """
    driver = driver_for(fe.kind)
    master, before = server_pids(remote, fe)
    if master is None:
        argv = driver.start_argv(fe)
        _check(remote.sh(_PATH + 'exec "$@"', *argv), f"start ({quote(argv)})")
    else:
        argv = driver.reload_argv(fe)
        _check(remote.sh(_PATH + 'exec "$@"', *argv), f"reload ({quote(argv)})")
    deadline = time.monotonic() + timeout
    while True:
        now_master, after = server_pids(remote, fe)
        if now_master is not None and after and (master is None or after - before):
            return
        if time.monotonic() > deadline:
            why = "the server is not running" if now_master is None else "no new workers started"
            log = _error_log_tail(remote, fe)
            raise StepFailed("reload", f"{why} after {quote(argv)}{': ' + log if log else ''}")
        time.sleep(0.2)


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

    if plan.stale_temps:
        remote.sh('rm -f -- "$@"', *plan.stale_temps)
    if not changes:  # only a reload left over from an interrupted apply
        reload_and_confirm(remote, fe_now)
        probe(remote, inv, fe_now)
        _check(remote.sh('rm -f -- "$1"', PENDING), "clear pending")
        return HostResult(fe.name, "changed", "finished a pending reload", _since(started))

    stage_and_validate(remote, inv, fe_now, run_id)
    checkpoint("validate")
    for c in changes:
        write_file(remote, temp_path(c.path), c.new)
    checkpoint("upload")
    _check(remote.sh(_BACKUP, BACKUP_DIR, *targets), "backup")
    checkpoint("backup")
    _check(remote.sh(_SWAP, PENDING, run_id, *targets), "rename")
    checkpoint("rename")
    try:
        reload_and_confirm(remote, fe_now)
        checkpoint("reload")
        probe(remote, inv, fe_now)
        checkpoint("probe")
    except StepFailed as failure:
        _rollback(remote, fe_now, targets)
        return HostResult(fe.name, "rolled back", str(failure), _since(started))
    _check(remote.sh('rm -f -- "$1"', PENDING), "clear pending")
    return HostResult(
        fe.name, "changed", f"{len(changes)} file(s) updated, reloaded", _since(started)
    )


def _rollback(remote: Remote, fe: Frontend, targets: list[str]) -> None:
    _check(remote.sh(_RESTORE, BACKUP_DIR, *targets), "restore backup")
    reload_and_confirm(remote, fe)
    remote.sh('rm -f -- "$1"', PENDING)


def _since(t: float) -> float:
    return round(time.monotonic() - t, 2)
