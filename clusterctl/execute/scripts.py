"""The fixed remote scripts the plan's steps name (plan_steps.ScriptName), by name.

Each takes its variable parts as arguments ($1, $2, ...) and never has inventory text spliced
into it; what each argument is, is said beside the script.
"""

from __future__ import annotations

from clusterctl.execute.steps import PATH as _PATH
from clusterctl.plan_steps import ScriptName

# $1 target path, $2 mode, $3 owner:group; content on stdin. Created private (umask 077) and
# only then given its final mode: a private key is never readable by others, not even briefly.
# A write that fails half-way (disk full, read-only) leaves no partial file behind. Paths are
# absolute file names, so their folder is ${1%/*}; what is already there (the folder, no old
# file) costs no process: every step of a chain runs on every host at once.
WRITE = (
    _PATH
    + r"""set -e
d=${1%/*}; [ -d "${d:-/}" ] || mkdir -p -- "${d:-/}"
if [ -e "$1" ] || [ -L "$1" ]; then rm -f -- "$1"; fi
trap 'rm -f -- "$1"' EXIT
umask 077; cat > "$1"
chown -- "$3" "$1"
chmod -- "$2" "$1"
trap - EXIT
"""
)

# $1 certificate file, $2 private key file (the same file for a combined PEM): the key must be
# the certificate's. Skipped on a host without openssl; the server's own check still runs.
TLS_PAIR = (
    _PATH
    + r"""command -v openssl >/dev/null 2>&1 || exit 0
c=$(openssl x509 -noout -pubkey -in "$1" 2>&1) || { printf '%s is not a certificate openssl can read: %s\n' "$1" "$c" >&2; exit 1; }
k=$(openssl pkey -passin pass: -pubout -in "$2" 2>&1) || { printf '%s is not a private key openssl can read: %s\n' "$2" "$k" >&2; exit 1; }
[ "$c" = "$k" ] || { printf 'the private key %s does not belong to the certificate %s\n' "$2" "$1" >&2; exit 1; }
"""
)

# $1 backup root, then pairs of target paths: backs each existing target up (keeping mode and
# owner) and notes the absent ones so a rollback removes them.
BACKUP = r"""set -e
root=$1; shift
rm -rf -- "$root"; mkdir -p -m 700 -- "$root"
for f in "$@"; do
  if [ -e "$f" ]; then mkdir -p -- "$root${f%/*}"; cp -p -- "$f" "$root$f"
  else printf '%s\n' "$f" >> "$root/.absent"; fi
done
"""

# $1 pending marker, $2 run id, then "N:target" (its .clusterctl-new beside it renamed into
# place) or "D:target" (a file no longer rendered, removed; its backup is taken).
SWAP = r"""set -e
d=${1%/*}; [ -d "${d:-/}" ] || mkdir -p -- "${d:-/}"; printf '%s\n' "$2" > "$1"; shift 2
for spec in "$@"; do
  f=${spec#?:}
  case $spec in
  N:*) mv -f -T -- "${f%/*}/.${f##*/}.clusterctl-new" "$f" ;;
  D:*) rm -f -- "$f" ;;
  esac
done
"""

# $1 manifest, $2 backup root, $3 staging root, $4 pending marker, then every path now
# installed: the apply is confirmed, so the manifest records them, the backup and whatever a
# killed run left staged (old and new private keys among them) go, and the marker last: a kill
# before it only makes the next run confirm again.
CONFIRM = r"""set -e
m=$1; b=$2; s=$3; p=$4; shift 4
mkdir -p -- "$(dirname -- "$m")"
(umask 077 && printf '%s\n' "$@" > "$m.tmp") && mv -f -- "$m.tmp" "$m"
rm -rf -- "$b" "$s"
rm -f -- "$p"
"""

# $1 backup root, then targets: put each back as it was, remove those that did not exist.
RESTORE = r"""set -e
root=$1; shift
for f in "$@"; do
  if [ -e "$root$f" ]; then
    t=${f%/*}/.${f##*/}.clusterctl-new
    cp -p -- "$root$f" "$t"; mv -f -T -- "$t" "$f"
  elif [ -f "$root/.absent" ] && grep -qxF -- "$f" "$root/.absent"; then
    rm -f -- "$f"
  fi
done
"""

# $1 scheme (http|https|tcp), $2 address, $3 port.
PROBE = (
    _PATH
    + r"""case $1 in
tcp) timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$2" "$3" && echo connected ;;
*) curl -sS -k -o /dev/null -w '%{http_code}' --max-time 5 "$1://$2:$3/" ;;
esac
"""
)

# Every ScriptName but "network", which execute/gather.network_now runs (facts parses it).
SCRIPTS: dict[ScriptName, str] = {
    "rm-files": 'rm -f -- "$@"',
    "rm-tree": 'rm -rf -- "$1"',
    "write": WRITE,
    "mkdir": _PATH + 'mkdir -p -- "$@"',
    "exec": _PATH + 'exec "$@"',
    "tls-pair": TLS_PAIR,
    "backup": BACKUP,
    "swap": SWAP,
    "confirm": CONFIRM,
    "restore": RESTORE,
    # The previous files are live and loaded again: their copies (keys among them) can go.
    "forget": 'rm -f -- "$1"; rm -rf -- "$2"',
    "probe": PROBE,
    "nonlocal-bind": _PATH
    + 'for f in "$@"; do sysctl -q -w "net.$f.ip_nonlocal_bind=1" || exit 1; done',
}
