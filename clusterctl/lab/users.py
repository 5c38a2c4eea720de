"""Login users of lab hosts: each host has its own user database and sudoers.

Real front ends are reached as a deploy user with sudo more often than as root. For the lab to
rehearse that, every host gets private copies of /etc/passwd, /etc/shadow, /etc/group,
/etc/gshadow and /etc/sudoers (bind mounts, like /etc/hosts) and of /etc/sudoers.d (a private
folder): adding a user to one host changes no other host and not the machine.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from clusterctl.errors import ClusterctlError
from clusterctl.lab.types import LabInfo

PRIVATE_FILES = ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/sudoers")
USER_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


def _copy_name(path: str) -> str:
    return "etc-" + path.rsplit("/", 1)[1]


def prepare_files(host_dir: Path) -> None:
    """Copy the machine's user files into a host's folder (mode and owner kept)."""
    for path in PRIVATE_FILES:
        if Path(path).is_file():
            shutil.copy2(path, host_dir / _copy_name(path))


def file_binds(host_dir: Path) -> list[tuple[str, str]]:
    """(source, target) bind mounts that give a host its own copies."""
    return [
        (str(host_dir / _copy_name(p)), p)
        for p in PRIVATE_FILES
        if (host_dir / _copy_name(p)).is_file() and not Path(p).is_symlink()
    ]


# $1 user, $2 uid, $3 shadow hash ("*": no password), $4 sudoers line, $5 root's authorized
# keys. Appends in place: the files are bind mounts, which useradd's rename-into-place would
# fail on. sshd reads a user's keys as that user, so the user gets a copy it can read.
_ADD_USER = r"""set -e
for f in /etc/passwd /etc/shadow /etc/group /etc/sudoers.d; do
  awk -v m="$f" '$5 == m {found = 1} END {exit !found}' /proc/self/mountinfo || {
    echo "$f is the machine's, not this host's own (is sudo installed on the machine?)" >&2
    exit 1
  }
done
grep -q "^$1:" /etc/passwd || printf '%s:x:%s:%s::/:/bin/bash\n' "$1" "$2" "$2" >> /etc/passwd
grep -q "^$1:" /etc/group || printf '%s:x:%s:\n' "$1" "$2" >> /etc/group
grep -v "^$1:" /etc/shadow > /etc/shadow.new || true
printf '%s:%s:19000:0:99999:7:::\n' "$1" "$3" >> /etc/shadow.new
cat /etc/shadow.new > /etc/shadow; rm -f /etc/shadow.new
mkdir -p /etc/sudoers.d
printf '%s\n' "$4" > "/etc/sudoers.d/$1"; chmod 0440 "/etc/sudoers.d/$1"
mkdir -p -m 755 /srv/lab/keys
cp -- "$5" "/srv/lab/keys/$1"; chown "$1:$1" "/srv/lab/keys/$1"; chmod 600 "/srv/lab/keys/$1"
"""


def add_user(info: LabInfo, host: str, user: str, password: str | None = None) -> None:
    """A login user on `host` that the lab's key reaches, with sudo: NOPASSWD when `password`
    is None, else asking for `password` (given to the host as a hash, never as text)."""
    if not USER_RE.match(user) or user == "root":
        raise ClusterctlError(f"invalid lab user name {user!r}")
    digest = "*"
    if password is not None:
        proc = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"],
            input=password + "\n",
            capture_output=True,
            text=True,
            check=True,
        )
        digest = proc.stdout.strip()
    rule = f"{user} ALL=(ALL:ALL) " + ("ALL" if password is not None else "NOPASSWD: ALL")
    uid = str(2000 + sum(user.encode()) % 1000)
    keys = str(info.state_dir / "hosts" / host / "ssh" / "authorized_keys")
    script = f"sh -c {shlex.quote(_ADD_USER)} lab {shlex.join([user, uid, digest, rule, keys])}"
    proc = subprocess.run(
        info.ssh_argv(host, script), capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        raise ClusterctlError(f"cannot add user {user} on {host}: {proc.stderr.strip()}")
