"""Facts: what a front end is now, gathered over SSH. Read-only.

One remote command per host collects everything: for each file clusterctl manages, whether it
exists, its mode, owner, checksum and (for files that are not secret) its content; the server's
version; whether a reload is pending from an interrupted apply; left-over temporary files.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from clusterctl.drivers import driver_for
from clusterctl.execute.ssh import Remote
from clusterctl.model.schema import Frontend

STATE_DIR = "/var/lib/clusterctl"
TMP_SUFFIX = ".clusterctl-new"


def frontend_state_dir(fe_name: str) -> str:
    """Where apply keeps one front end's backups, staging tree and reload-pending marker.

    Per front end, not per machine: two front ends on one machine (an HAProxy for the TCP
    services beside an nginx for the web, say) are applied in parallel and must never share a
    backup folder or a marker, or one's rollback restores the other's files.
    """
    return f"{STATE_DIR}/frontends/{fe_name}"


def pending_path(fe_name: str) -> str:
    """The marker an interrupted apply leaves between its rename and its reload."""
    return f"{frontend_state_dir(fe_name)}/reload-pending"


_VERSION_RX = re.compile(r"(?:HAProxy version |nginx/|Apache/)(\d+(?:\.\d+){1,2})")

# $1: pending marker; $2: version command; rest: "S:path" (secret) or "P:path" (plain).
_GATHER = r"""
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
pending=$1; shift
vcmd=$1; shift
printf 'VERSION %s\n' "$($vcmd -v 2>&1 | head -n 1 | tr -d '\n')"
if [ -f "$pending" ]; then printf 'PENDING %s\n' "$(head -c 200 "$pending" | tr -d '\n')"; fi
for spec in "$@"; do
  kind=${spec%%:*}; f=${spec#*:}
  for t in "$(dirname -- "$f")"/.*.clusterctl-new; do
    [ -e "$t" ] && printf 'TEMP %s\n' "$t"
  done
  if [ -f "$f" ]; then
    printf 'FILE %s %s %s\n' "$(stat -c '%a %U %G' -- "$f")" "$(sha256sum -- "$f" | cut -c1-64)" "$f"
    if [ "$kind" = P ]; then printf 'DATA '; base64 -w0 -- "$f"; printf '\n'; fi
  else
    printf 'MISSING %s\n' "$f"
  fi
done
"""


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
class HostFacts:
    host: str
    version: str | None = None
    pending: str | None = None
    files: dict[str, LiveFile] = field(default_factory=dict)
    temps: tuple[str, ...] = ()


def version_binary(kind: str) -> str:
    return {"haproxy": "haproxy", "nginx": "nginx", "apache": "apache2"}[kind]


def parse_gather(host: str, text: str) -> HostFacts:
    version = None
    pending = None
    files: dict[str, LiveFile] = {}
    temps: list[str] = []
    last: str | None = None
    for line in text.splitlines():
        tag, _, rest = line.partition(" ")
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
            files[last] = LiveFile(
                prev.path,
                True,
                prev.mode,
                prev.owner,
                prev.group,
                prev.sha256,
                base64.b64decode(rest.strip() or b""),
            )
    return HostFacts(host, version, pending, files, tuple(sorted(set(temps))))


def gather(remote: Remote, fe: Frontend, secret: dict[str, bool]) -> HostFacts:
    """Facts of one front end for the files clusterctl renders there (path -> is secret)."""
    specs = [("S:" if is_secret else "P:") + path for path, is_secret in sorted(secret.items())]
    binary = version_binary(driver_for(fe.kind).kind)
    result = remote.sh(_GATHER, pending_path(fe.name), binary, *specs)
    if not result.ok:
        from clusterctl.errors import ClusterctlError

        raise ClusterctlError(f"{fe.name}: cannot read the host's state: {result.words()}")
    return parse_gather(fe.name, result.out)
