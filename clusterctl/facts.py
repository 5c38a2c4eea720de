"""Facts: what a front end is now. Pure: what to run, as data, and the parser of its output;
execute/gather.py sends it over SSH, so importing this module never imports paramiko.

One remote command per host collects everything: for each file clusterctl manages, whether it
exists, its mode, owner, checksum and (for files that are not secret) its content; the server's
version; whether a reload is pending from an interrupted apply; left-over temporary files; the
files an earlier apply installed (the manifest); and what the bind preflight needs: the host's
addresses, whether it may bind addresses it does not have, its listening TCP sockets with their
processes, and the running server's own process ids.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from dataclasses import dataclass, field

from clusterctl.drivers import DRIVERS, driver_for
from clusterctl.model.schema import Frontend

# Re-exported: the paths used to live here and plan_build, verify and tests import them.
from clusterctl.remote_paths import STATE_DIR as STATE_DIR
from clusterctl.remote_paths import TMP_SUFFIX as TMP_SUFFIX
from clusterctl.remote_paths import frontend_state_dir as frontend_state_dir
from clusterctl.remote_paths import manifest_path as manifest_path
from clusterctl.remote_paths import pending_path as pending_path

_VERSION_RX = re.compile(
    "(?:"
    + "|".join(re.escape(d.version_prefix) for d in DRIVERS.values())
    + r")(\d+(?:\.\d+){1,2})"
)

# Shell functions every look at a server's processes uses (the facts, and each poll of a
# reload's watch, execute/reload.py): `pid_in FILE` sets $pid to the number on FILE's first
# line (empty if none), `kids_of PID` sets $kids to PID's child processes. Shell builtins where
# the kernel lists a process's children (/proc/PID/task/*/children), as it does on Debian's:
# twenty hosts polling at once each fork nothing for it. Elsewhere, every process's stat.
PROCS_SH = r"""pid_in() {
  pid=
  { IFS= read -r pid < "$1"; } 2>/dev/null
  case $pid in *[!0-9]*) pid=$(printf '%s' "$pid" | tr -dc 0-9) ;; esac
}
kids_of() {
  kids=
  [ -d "/proc/$1/task" ] || return 0
  for t in /proc/"$1"/task/*/children; do
    if [ ! -r "$t" ]; then
      kids=$(awk -v p="$1" '$4 == p {print $1}' /proc/[0-9]*/stat 2>/dev/null)
      return 0
    fi
    line=
    { read -r line < "$t"; } 2>/dev/null
    kids="$kids $line"
  done
}
"""

# What the bind preflight reads, with $pidf the server's pid file: whether the host may bind
# addresses it does not have, its addresses, its listening TCP sockets with their processes,
# and the running server's own pids (they may hold the ports the new config binds).
_NETWORK = (
    PROCS_SH
    + r"""
v4=0; v6=0
{ read -r v4 < /proc/sys/net/ipv4/ip_nonlocal_bind; } 2>/dev/null
{ read -r v6 < /proc/sys/net/ipv6/ip_nonlocal_bind; } 2>/dev/null
printf 'NONLOCAL %s %s\n' "${v4:-0}" "${v6:-0}"
if addrs=$(ip -o addr show 2>/dev/null); then
  printf 'NET addr\n'; printf '%s\n' "$addrs" | awk '{print "ADDR", $2, $4}'
fi
if socks=$(ss -Htlnp 2>/dev/null); then
  printf 'NET sockets\n'; printf '%s\n' "$socks" | awk 'NF >= 4 {$1 = $2 = $3 = ""; print "SOCK" $0}'
fi
pid_in "$pidf"
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  printf 'SERVER %s\n' "$pid"
  kids_of "$pid"
  for c in $kids; do printf 'SERVER %s\n' "$c"; done
fi
"""
)

# $1: pending marker; $2: version command; $3: the server's pid file; $4: the manifest;
# rest: "S:path" (secret) or "P:path" (plain). Manifest entries are stated before the rendered
# paths, so a rendered path's own lines (with its content) come last and win.
_GATHER = (
    r"""
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
pending=$1; vcmd=$2; pidf=$3; manifest=$4; shift 4
v=$($vcmd -v 2>&1)
printf 'VERSION %s\n' "${v%%
*}"
if [ -f "$pending" ]; then printf 'PENDING %s\n' "$(head -c 200 "$pending" | tr -d '\n')"; fi
"""
    + _NETWORK
    + r"""
stat_one() {
  d=${2%/*}
  for t in "${d:-/}"/.*.clusterctl-new; do
    [ -e "$t" ] && printf 'TEMP %s\n' "$t"
  done
  if [ -f "$2" ]; then
    sum=$(sha256sum < "$2")  # stdin: no escaped name to cut around
    printf 'FILE %s %s %s\n' "$(stat -c '%a %U %G' -- "$2")" "${sum%% *}" "$2"
    if [ "$1" = P ]; then printf 'DATA '; base64 -w0 -- "$2"; printf '\n'; fi
  else
    printf 'MISSING %s\n' "$2"
  fi
}
# The rendered paths, one a line: a managed file that is also rendered is looked at once, as
# rendered (its lines would win anyway).
rendered='
'
for spec in "$@"; do
  case $spec in [SP]:*) rendered="$rendered${spec#?:}
" ;; esac
done
if [ -f "$manifest" ]; then
  printf 'MANIFEST\n'
  while IFS= read -r m; do
    case $m in /*)
      printf 'MANAGED %s\n' "$m"
      case $rendered in *"
$m
"*) ;; *) stat_one S "$m" ;; esac ;;
    esac
  done < "$manifest"
fi
for spec in "$@"; do
  case $spec in
  E:*) if [ -e "${spec#E:}" ]; then printf 'HAS %s\n' "${spec#E:}"; else printf 'LACKS %s\n' "${spec#E:}"; fi ;;
  *) stat_one "${spec%%:*}" "${spec#*:}" ;;
  esac
done
"""
)

# $1: the server's pid file, rest: folders; the network facts and the folders that are missing.
_NETWORK_NOW = (
    "PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin; pidf=$1; shift\n"
    + _NETWORK
    + 'for d in "$@"; do [ -d "$d" ] || printf \'NODIR %s\\n\' "$d"; done\n'
)


@dataclass(frozen=True)
class LiveFile:
    path: str
    exists: bool
    mode: int = 0
    owner: str = ""
    group: str = ""
    sha256: str = ""
    content: bytes | None = None


@dataclass(frozen=True)
class Socket:
    """A listening TCP socket on the host, as `ss -Htlnp` shows it."""

    address: str  # "0.0.0.0", "[::]" or "*" for wildcards, else the address without scope
    port: int
    users: tuple[tuple[str, int], ...] = ()  # (process name, pid)


@dataclass(frozen=True)
class Network:
    """What the bind preflight needs to know about a host (None fields: could not be read)."""

    addresses: tuple[tuple[str, str], ...] | None = None  # (interface, "address/prefix")
    nonlocal_bind: tuple[bool, bool] = (False, False)  # IPv4, IPv6
    sockets: tuple[Socket, ...] | None = None
    server_pids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class HostFacts:
    host: str
    version: str | None = None
    pending: str | None = None
    files: dict[str, LiveFile] = field(default_factory=dict)
    temps: tuple[str, ...] = ()
    network: Network = field(default_factory=Network)
    managed: tuple[str, ...] | None = None  # the manifest; None: the host has none yet
    # Of the driver's probe_files (a module it can load), those the host has; None: not asked.
    present: tuple[str, ...] | None = None


def version_binary(kind: str) -> str:
    return driver_for(kind).binary


_SS_USER = re.compile(r'\("([^"]*)",pid=(\d+)')


def parse_socket(fields: list[str]) -> Socket | None:
    """`ss -Htlnp` fields after the state and queue columns: local, peer, users."""
    if not fields:
        return None
    local = fields[0]
    address, _, port = local.rpartition(":")
    if not port.isdigit() or not address:
        return None
    address = address.split("%", 1)[0]  # 127.0.0.53%lo: the scope is not part of the address
    users = tuple((n, int(p)) for n, p in _SS_USER.findall(" ".join(fields[2:])))
    return Socket(address, int(port), users)


def parse_gather(host: str, text: str) -> HostFacts:
    version = None
    pending = None
    files: dict[str, LiveFile] = {}
    temps: list[str] = []
    last: str | None = None
    nonlocal_bind = (False, False)
    addresses: list[tuple[str, str]] | None = None
    sockets: list[Socket] | None = None
    server: set[int] = set()
    managed: list[str] | None = None
    present: list[str] | None = None
    for line in text.splitlines():
        tag, _, rest = line.partition(" ")
        if tag in ("HAS", "LACKS"):  # the driver's probe files
            present = present or []
            if tag == "HAS":
                present.append(rest)
        if tag == "VERSION":
            m = _VERSION_RX.search(rest)
            version = m.group(1) if m else None
        elif tag == "PENDING":
            pending = rest or "yes"
        elif tag == "TEMP":
            temps.append(rest)
        elif tag == "MISSING":
            files[rest] = LiveFile(rest, False)
            last = None
        elif tag == "FILE":
            mode, owner, group, sha, path = rest.split(" ", 4)
            files[path] = LiveFile(path, True, int(mode, 8), owner, group, sha)
            last = path
        elif tag == "DATA" and last is not None:
            prev = files[last]
            files[last] = dataclasses.replace(prev, content=base64.b64decode(rest.strip() or b""))
        elif tag == "NONLOCAL":
            flags = rest.split()
            nonlocal_bind = (flags[:1] == ["1"], flags[1:2] == ["1"])
        elif tag == "NET":
            if rest == "addr":
                addresses = addresses or []
            elif rest == "sockets":
                sockets = sockets or []
        elif tag == "ADDR" and addresses is not None:
            ifname, _, cidr = rest.partition(" ")
            addresses.append((ifname, cidr.strip()))
        elif tag == "SOCK" and sockets is not None:
            sock = parse_socket(rest.split())
            if sock is not None:
                sockets.append(sock)
        elif tag == "SERVER" and rest.isdigit():
            server.add(int(rest))
        elif tag == "MANIFEST":
            managed = managed or []
        elif tag == "MANAGED" and managed is not None:
            managed.append(rest)
    network = Network(
        None if addresses is None else tuple(addresses),
        nonlocal_bind,
        None if sockets is None else tuple(sockets),
        frozenset(server),
    )
    return HostFacts(
        host,
        version,
        pending,
        files,
        tuple(sorted(set(temps))),
        network,
        None if managed is None else tuple(dict.fromkeys(managed)),
        present=None if present is None else tuple(present),
    )


@dataclass(frozen=True)
class Command:
    """What to run on a host, as data: a shell script and its positional arguments."""

    script: str
    args: tuple[str, ...]


def gather_command(fe: Frontend, secret: dict[str, bool]) -> Command:
    """The one round trip that reads a front end's facts for the files clusterctl renders there
    (path -> is secret: a secret file's content never leaves the host, only its checksum)."""
    specs = [("S:" if is_secret else "P:") + path for path, is_secret in sorted(secret.items())]
    driver = driver_for(fe.kind)
    return Command(
        _GATHER,
        (
            pending_path(fe.name),
            version_binary(driver.kind),
            driver.paths(fe).pid_file,
            manifest_path(fe.name),
            *specs,
            *("E:" + p for p in getattr(driver, "probe_files", ())),
        ),
    )


def network_command(fe: Frontend, dirs: list[str]) -> Command:
    """The preflight's facts as they are this moment, and which of `dirs` do not exist."""
    return Command(_NETWORK_NOW, (driver_for(fe.kind).paths(fe).pid_file, *dirs))


def parse_missing_dirs(text: str) -> list[str]:
    """The folders network_command found missing."""
    return [ln[len("NODIR ") :] for ln in text.splitlines() if ln.startswith("NODIR ")]
