"""Execute a host's plan: stage, validate, back up, swap atomically, reload, confirm, probe.

Every step is a fixed script of clusterctl's own with the variable parts passed as arguments
($1, $2, ...), so no inventory value is ever spliced into a remote shell. On any failure after
files were swapped, the backups go back, the server is reloaded again, and the host is reported
failed with the validator's or the probe's own words. A host ends with the old or the new
config, valid and loaded.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, replace

from clusterctl.drivers import driver_for
from clusterctl.errors import ClusterctlError
from clusterctl.execute.reload import reload_and_confirm, server_pids
from clusterctl.execute.ssh import Remote, Result
from clusterctl.execute.steps import PATH as _PATH
from clusterctl.execute.steps import StepFailed, checkpoint
from clusterctl.execute.steps import check as _check
from clusterctl.facts import (
    TMP_SUFFIX,
    frontend_state_dir,
    manifest_path,
    network_now,
    pending_path,
)
from clusterctl.model.schema import Frontend, Inventory
from clusterctl.model.semantics import frontend_services
from clusterctl.plan import HostPlan
from clusterctl.preflight import named_dirs, problems
from clusterctl.render import File, render_frontend

__all__ = ["HostResult", "StepFailed", "apply_host", "checkpoint", "reload_and_confirm"]
__all__ += ["server_pids", "write_file"]


@dataclass(frozen=True)
class HostResult:
    host: str
    status: str  # changed | unchanged | failed | rolled back
    message: str
    seconds: float


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
        remote.sh(
            _WRITE, path, f"{f.mode:o}", f"{f.owner}:{f.group}", stdin=f.content, step="upload"
        ),
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
    config = driver.paths(fe).config
    text = render_frontend(inv, fe)[config].content.decode("utf-8", "replace")
    # The bind preflight once more, on the host as it is now: the plan may be minutes old (an
    # operator reading it), and a port taken meanwhile would fail the reload. And the folders
    # the new config writes its logs, sockets and state into must be there on the host itself:
    # the staged check below creates them under its own root, so it cannot tell.
    net, missing = network_now(remote, fe, named_dirs(fe.kind, text))
    found = problems(fe.kind, text, net)
    found += [f"{d} does not exist on the host (the config writes into it)" for d in missing]
    if found:
        raise StepFailed("preflight", "; ".join(found))
    # Whatever an interrupted earlier run left in this front end's staging area goes first.
    remote.sh('rm -rf -- "$1"', stage_dir(fe), step="validate")
    root = f"{stage_dir(fe)}/{run_id}"
    try:
        for path, f in render_frontend(inv, fe, root=root).items():
            write_file(remote, root + path, f)
        dirs = [root + d for d in driver.runtime_dirs(fe)]
        if dirs:
            _check(remote.sh(_PATH + 'mkdir -p -- "$@"', *dirs, step="validate"), "stage")
        argv = driver.validate_argv(root + config, root)
        result = remote.sh(_PATH + 'exec "$@"', *argv, step="validate")
        if not result.ok:
            words = _validator_words(result)
            raise StepFailed(f"validate ({argv[0]})", words.replace(root, ""))
        # `apache2 -t` does not load certificates, and a graceful restart that cannot load them
        # stops Apache altogether: every kind gets the same pair check before anything moves.
        for svc in frontend_services(inv, fe):
            if svc.tls is None:
                continue
            paths = driver.tls_paths(fe, svc)
            pair = remote.sh(
                _TLS_PAIR, root + paths["certificate"], root + paths["key"], step="validate"
            )
            if not pair.ok:
                raise StepFailed("validate (openssl)", pair.words().replace(root, ""))
    finally:
        remote.sh('rm -rf -- "$1"', root, step="validate")


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

# $1 pending marker, $2 run id, then "N:target" (its .clusterctl-new beside it renamed into
# place) or "D:target" (a file no longer rendered, removed; its backup is taken).
_SWAP = r"""set -e
mkdir -p -- "$(dirname -- "$1")"; printf '%s\n' "$2" > "$1"; shift 2
for spec in "$@"; do
  f=${spec#?:}
  case $spec in
  N:*) d=$(dirname -- "$f"); b=$(basename -- "$f"); mv -f -T -- "$d/.$b.clusterctl-new" "$f" ;;
  D:*) rm -f -- "$f" ;;
  esac
done
"""

# $1 manifest, $2 backup root, $3 staging root, $4 pending marker, then every path now
# installed: the apply is confirmed, so the manifest records them, the backup and whatever a
# killed run left staged (old and new private keys among them) go, and the marker last: a kill
# before it only makes the next run confirm again.
_CONFIRM = r"""set -e
m=$1; b=$2; s=$3; p=$4; shift 4
mkdir -p -- "$(dirname -- "$m")"
(umask 077 && printf '%s\n' "$@" > "$m.tmp") && mv -f -- "$m.tmp" "$m"
rm -rf -- "$b" "$s"
rm -f -- "$p"
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


def temp_path(target: str) -> str:
    d, _, b = target.rpartition("/")
    return f"{d}/.{b}{TMP_SUFFIX}"


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
            res = remote.sh(_PROBE, scheme, host, str(ln.port), step="probe")
            answer = res.out.strip()
            if not res.ok or answer in ("", "000"):
                raise StepFailed(
                    "probe", f"{scheme}://{host}:{ln.port}/ does not answer: {res.words()}"
                )


def apply_host(remote: Remote, inv: Inventory, fe: Frontend, plan: HostPlan) -> HostResult:
    """Bring one front end to its planned state; never leaves it half-done."""
    started = time.monotonic()
    if plan.refused:  # the new config would not start here: touch nothing
        return HostResult(fe.name, "failed", "preflight: " + "; ".join(plan.refused), 0.0)
    if not plan.needs_work:
        return HostResult(fe.name, "unchanged", "", 0.0)
    fe_now = replace(fe, version=plan.version) if fe.version is None and plan.version else fe
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)
    changes = plan.changes
    gone = [d.path for d in plan.deletions]
    targets = [c.path for c in changes] + gone
    backup = backup_dir(fe)

    pending = pending_path(fe.name)
    if plan.stale_temps:
        remote.sh('rm -f -- "$@"', *plan.stale_temps, step="clean up")
    if not targets:  # only a reload left over from an interrupted apply
        if plan.pending_reload:
            reload_and_confirm(remote, fe_now)
            probe(remote, inv, fe_now)
            _confirm(remote, fe, plan)
            return HostResult(fe.name, "changed", "finished a pending reload", _since(started))
        return HostResult(
            fe.name,
            "changed",
            f"removed {len(plan.stale_temps)} left-over temporary file(s)",
            _since(started),
        )

    stage_and_validate(remote, inv, fe_now, run_id)
    checkpoint("validate")
    temps = [temp_path(c.path) for c in changes]
    try:
        for c in changes:
            write_file(remote, temp_path(c.path), c.new)
    except ClusterctlError:
        if temps:
            remote.sh('rm -f -- "$@"', *temps, step="upload")
        raise
    checkpoint("upload")
    try:
        _check(remote.sh(_BACKUP, backup, *targets, step="backup"), "backup")
    except ClusterctlError:
        if temps:
            remote.sh('rm -f -- "$@"', *temps, step="backup")
        raise
    checkpoint("backup")
    swap = [f"N:{c.path}" for c in changes] + [f"D:{p}" for p in gone]
    _check(remote.sh(_SWAP, pending, run_id, *swap, step="rename"), "rename")
    checkpoint("rename")
    ports = frozenset(ln.port for svc in frontend_services(inv, fe_now) for ln in svc.listen)
    try:
        reload_and_confirm(remote, fe_now, ports=ports)
        checkpoint("reload")
        probe(remote, inv, fe_now)
        checkpoint("probe")
    except StepFailed as failure:
        failed_at = time.monotonic()
        try:
            _rollback(remote, fe_now, backup, targets, pending)
        except ClusterctlError as undo:
            # Never hide the first failure behind the second one; the backup stays for a human.
            return HostResult(
                fe.name,
                "failed",
                f"{failure}; then the rollback failed too: {undo} (the previous files are in "
                f"{backup} on the host)",
                _since(started),
            )
        back = time.monotonic() - failed_at
        return HostResult(
            fe.name,
            "rolled back",
            f"{failure}; the previous config was back and serving {back:.1f} s later",
            _since(started),
        )
    _confirm(remote, fe, plan)
    parts = [f"{len(changes)} file(s) updated"] if changes else []
    parts += [f"{len(gone)} removed"] if gone else []
    return HostResult(fe.name, "changed", f"{', '.join(parts)}, reloaded", _since(started))


def _confirm(remote: Remote, fe: Frontend, plan: HostPlan) -> None:
    installed = sorted(plan.rendered)
    res = remote.sh(
        _CONFIRM,
        manifest_path(fe.name),
        backup_dir(fe),
        stage_dir(fe),
        pending_path(fe.name),
        *installed,
        step="confirm",
    )
    _check(res, "confirm")


def _rollback(remote: Remote, fe: Frontend, backup: str, targets: list[str], pending: str) -> None:
    _check(remote.sh(_RESTORE, backup, *targets, step="rollback"), "restore backup")
    reload_and_confirm(remote, fe)
    # The previous files are live and loaded again: their copies (keys among them) can go.
    remote.sh('rm -f -- "$1"; rm -rf -- "$2"', pending, backup, step="rollback")


def _since(t: float) -> float:
    return round(time.monotonic() - t, 2)
