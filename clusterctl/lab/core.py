"""A multi-host lab cluster on one machine, built from Linux network namespaces.

Every host is a network namespace (veth ``eth0`` on a per-lab bridge in the
root namespace), a private mount namespace (its own /etc/haproxy, /etc/nginx,
/etc/apache2, /var/log, /var/lib/haproxy, /var/lib/nginx, /srv, /tmp and a
tmpfs /run) and a UTS namespace (its own hostname).  The first process of a
host runs ``init.sh`` which sets up the mounts, starts the host's service and
then execs a real OpenSSH server on the host address.

Everything created is recorded in ``state.json`` as it is created, and ``down``
additionally sweeps by the lab's name-derived prefixes, so a crash half-way
through ``up`` can always be cleaned.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clusterctl.errors import ClusterctlError
from clusterctl.lab import hostfiles, users

# Outside /var/lib/clusterctl, which every lab host gets a private copy of (its cluster lock,
# backups and rollout state, as on separate machines).
LABS_ROOT = Path(os.environ.get("CLUSTERCTL_LAB_ROOT", "/var/lib/clusterctl-labs"))
LAB_NETWORK = ipaddress.ip_network("198.18.0.0/15")
FRONTEND_KINDS = ("haproxy", "nginx", "apache")
FRONTEND_BASE = 11
BACKEND_BASE = 101
MAX_FRONTENDS = 89  # .11 .. .99
MAX_BACKENDS = 99  # .101 .. .199
APP_PORT = 8080
INITIAL_RELEASE = "1.0.0"
READY_TIMEOUT = 30.0
STATE_VERSION = 1
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
INSTALL_HINT = "apt-get install -y haproxy nginx apache2 openssh-server iproute2 util-linux"
SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Paths that each host gets its own copy of (bind mounts), in mount order.
PRIVATE_DIRS = (
    "/etc/haproxy",
    "/etc/nginx",
    "/etc/apache2",
    "/var/log",
    "/var/lib/haproxy",
    "/var/lib/nginx",
    "/var/lib/clusterctl",
    "/srv",
    "/tmp",  # noqa: S108
    "/root",
    "/etc/sudoers.d",
)
# Of those, the ones not bound when the state dir lives inside them.
SKIPPABLE_DIRS = ("/tmp", "/root")  # noqa: S108
# Of those, the ones pre-populated from the machine (Debian package files).
COPIED_DIRS = (
    "/etc/haproxy",
    "/etc/nginx",
    "/etc/apache2",
    "/var/lib/haproxy",
    "/var/lib/nginx",
    "/etc/sudoers.d",
)


class LabError(ClusterctlError):
    """A lab could not be built, found or removed."""


# Tests inject faults here: called with a stage name ("bridge", "netns:be1",
# "started:be1", "ready", "inventory") as ``up`` progresses.
_fault_hook: Callable[[str], None] | None = None


def _checkpoint(stage: str) -> None:
    hook = _fault_hook
    if hook is not None:
        hook(stage)


# --------------------------------------------------------------------------
# Public data types


@dataclass
class LabHost:
    name: str
    role: str  # "backend" | "frontend"
    kind: str  # "app" for backends; "haproxy" | "nginx" | "apache" for frontends
    address: str
    url: str
    netns: str
    ssh_port: int = 22


@dataclass
class LabInfo:
    name: str
    state_dir: Path
    subnet: str
    bridge: str
    gateway: str
    inventory_path: Path
    ssh_key_path: Path
    known_hosts_path: Path
    hosts: list[LabHost] = field(default_factory=list)
    already_running: bool = False

    @property
    def frontends(self) -> list[LabHost]:
        return [h for h in self.hosts if h.role == "frontend"]

    @property
    def backends(self) -> list[LabHost]:
        return [h for h in self.hosts if h.role == "backend"]

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise LabError(f"lab {self.name!r} has no host {name!r}")

    def ssh_argv(self, name: str, *command: str, options: Sequence[str] = ()) -> list[str]:
        """The OpenSSH command line that reaches a lab host as root, host key checked strictly."""
        host = self.host(name)
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts_path}",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=5",
            *options,
            "-i",
            str(self.ssh_key_path),
            "-p",
            str(host.ssh_port),
            f"root@{host.address}",
            *command,
        ]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("state_dir", "inventory_path", "ssh_key_path", "known_hosts_path"):
            data[key] = str(data[key])
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabInfo:
        return cls(
            name=data["name"],
            state_dir=Path(data["state_dir"]),
            subnet=data["subnet"],
            bridge=data["bridge"],
            gateway=data["gateway"],
            inventory_path=Path(data["inventory_path"]),
            ssh_key_path=Path(data["ssh_key_path"]),
            known_hosts_path=Path(data["known_hosts_path"]),
            hosts=[LabHost(**h) for h in data["hosts"]],
            already_running=bool(data.get("already_running", False)),
        )


@dataclass
class HostStatus:
    name: str
    role: str
    kind: str
    address: str
    ssh: bool
    service: bool
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.ssh and self.service

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------
# Naming


@dataclass(frozen=True)
class Naming:
    """Every name and address of a lab, derived deterministically from its name."""

    name: str

    @property
    def tag(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()[:6]

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        if self.name == "lab":
            index = 0
        else:
            digest = hashlib.sha256(b"clusterctl-lab-subnet:" + self.name.encode()).digest()
            index = 1 + int.from_bytes(digest[:4], "big") % 511
        base = int(LAB_NETWORK.network_address) + index * 256
        return ipaddress.IPv4Network((base, 24))

    def address(self, offset: int) -> str:
        return str(self.subnet.network_address + offset)

    @property
    def gateway(self) -> str:
        return self.address(1)

    @property
    def bridge(self) -> str:
        return f"clbr{self.tag}"

    @property
    def veth_prefix(self) -> str:
        return f"clv{self.tag}"

    def veth(self, host: str) -> str:
        return f"{self.veth_prefix}{host}"

    @property
    def netns_prefix(self) -> str:
        return f"cl-{self.tag}-"

    def netns(self, host: str) -> str:
        return f"{self.netns_prefix}{host}"


def _validate_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise LabError(
            f"invalid lab name {name!r}: use 1-32 lowercase letters, digits and '-', "
            "starting with a letter"
        )


# --------------------------------------------------------------------------
# Small helpers


def _run(argv: list[str], *, input_text: str | None = None, check: bool = True) -> str:
    try:
        proc = subprocess.run(
            argv, input=input_text, capture_output=True, text=True, check=False, timeout=60
        )
    except FileNotFoundError as exc:
        raise LabError(f"missing {argv[0]}: {INSTALL_HINT}") from exc
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().replace("\n", "; ")
        raise LabError(f"{' '.join(argv)} failed: {msg}")
    return proc.stdout


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def _netns_names() -> list[str]:
    out = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _link_names() -> list[str]:
    out = _run(["ip", "-j", "link", "show"], check=False)
    try:
        return [str(link["ifname"]) for link in json.loads(out or "[]")]
    except (ValueError, KeyError, TypeError):
        return []


def _disable_ipv6(ifname: str) -> None:
    # Keep the lab silent: no IPv6 router solicitations / DAD on the lab links.
    with contextlib.suppress(OSError):
        Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6").write_text("1\n")


def _proc_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "clusterctl lab needs root (network namespaces, bridges, mounts): run it with sudo"
        )


def _python() -> str:
    return "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def _require_binaries(kinds: list[str]) -> None:
    needed = {
        "ip": "iproute2",
        "unshare": "util-linux",
        "mount": "mount",
        "hostname": "hostname",
        "ssh-keygen": "openssh-client",
        "cp": "coreutils",
    }
    if "haproxy" in kinds:
        needed["haproxy"] = "haproxy"
    if "nginx" in kinds:
        needed["nginx"] = "nginx"
    if "apache" in kinds:
        needed["apache2"] = "apache2"
        needed["apache2ctl"] = "apache2"
    missing = sorted(binary for binary in needed if shutil.which(binary, path=SYS_PATH) is None)
    if not Path("/usr/sbin/sshd").exists():
        missing.append("/usr/sbin/sshd")
    if missing:
        raise LabError(f"missing {', '.join(missing)}: {INSTALL_HINT}")


@contextlib.contextmanager
def _lab_lock(name: str) -> Iterator[None]:
    """Serialise up/down (all labs; they take a second): flock on the labs directory."""
    LABS_ROOT.mkdir(parents=True, exist_ok=True)
    fd = os.open(LABS_ROOT, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _ref_path(name: str) -> Path:
    return LABS_ROOT / f"{name}.ref"


def _locate(name: str) -> Path:
    """The state dir of lab ``name`` (default location unless a .ref points elsewhere)."""
    ref = _ref_path(name)
    if ref.exists():
        return Path(ref.read_text().strip())
    return LABS_ROOT / name


# --------------------------------------------------------------------------
# State file


class _State:
    """state.json: everything ``up`` created, written as it is created."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self._lock = threading.Lock()

    @classmethod
    def load(cls, state_dir: Path) -> _State | None:
        path = state_dir / "state.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            return None
        return cls(path, data)

    def save(self) -> None:
        with self._lock:
            _write(self.path, json.dumps(self.data, indent=2) + "\n", 0o600)

    def record(self, key: str, item: Any, value: Any = None) -> None:
        with self._lock:
            bucket = self.data.setdefault(key, {})
            bucket[str(item)] = value
        self.save()

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self.data[key] = value
        self.save()


# --------------------------------------------------------------------------
# Process discovery and teardown


def _ns_inode(ns: str) -> int | None:
    try:
        return Path(f"/run/netns/{ns}").stat().st_ino
    except OSError:
        return None


def _lab_pids(naming: Naming, state_dir: Path | None, inodes: set[int]) -> set[int]:
    """Every process belonging to the lab: in one of its netns, or marked, or naming its dir."""
    inodes = set(inodes)
    for ns in _netns_names():
        if ns.startswith(naming.netns_prefix):
            ino = _ns_inode(ns)
            if ino is not None:
                inodes.add(ino)
    wanted_ns = {f"net:[{ino}]" for ino in inodes}
    marker = f"CLUSTERCTL_LAB_ID={naming.tag}".encode()
    needle = str(state_dir).encode() if state_dir is not None else None
    me = os.getpid()
    pids: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == me:
            continue
        try:
            if str(Path(f"/proc/{pid}/ns/net").readlink()) in wanted_ns:
                pids.add(pid)
                continue
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            if marker in environ.split(b"\0"):
                pids.add(pid)
                continue
            if needle is not None:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                if needle + b"/" in cmdline:
                    pids.add(pid)
        except OSError:
            continue
    return {pid for pid in pids if _proc_alive(pid)}


def _kill_all(naming: Naming, state_dir: Path | None, inodes: set[int]) -> None:
    deadline = time.monotonic() + 10.0
    sig = signal.SIGTERM
    term_sent_at = time.monotonic()
    while True:
        pids = _lab_pids(naming, state_dir, inodes)
        if not pids:
            return
        if time.monotonic() > deadline:
            raise LabError(f"processes of lab {naming.name!r} would not die: {sorted(pids)}")
        if sig == signal.SIGTERM and time.monotonic() - term_sent_at > 2.0:
            sig = signal.SIGKILL
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        for _ in range(10):
            time.sleep(0.05)
            for pid in pids:
                _reap(pid)
            if not any(_proc_alive(pid) for pid in pids):
                break


def _teardown(naming: Naming, state_dir: Path | None, state: _State | None) -> None:
    inodes: set[int] = set()
    if state is not None:
        inodes = {int(v) for v in state.data.get("netns", {}).values() if v}
        for pid in state.data.get("pids", {}).values():
            _reap(int(pid))
    errors: list[str] = []
    try:
        _kill_all(naming, state_dir, inodes)
    except LabError as exc:
        errors.append(str(exc))
    recorded_ns = set(state.data.get("netns", {})) if state else set()
    for ns in sorted(
        recorded_ns | {n for n in _netns_names() if n.startswith(naming.netns_prefix)}
    ):
        if Path(f"/run/netns/{ns}").exists():
            proc = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
            if proc.returncode != 0:
                errors.append(f"ip netns del {ns}: {proc.stderr.strip()}")
    links = _link_names()
    for link in links:
        if link.startswith(naming.veth_prefix):
            subprocess.run(["ip", "link", "del", link], capture_output=True)
    if naming.bridge in links:
        proc = subprocess.run(["ip", "link", "del", naming.bridge], capture_output=True, text=True)
        if proc.returncode != 0:
            errors.append(f"ip link del {naming.bridge}: {proc.stderr.strip()}")
    if state_dir is not None and _owned_state_dir(state_dir, naming):
        shutil.rmtree(state_dir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        _ref_path(naming.name).unlink()
    if errors:
        raise LabError(f"lab {naming.name!r} not fully removed: {'; '.join(errors)}")


def _owned_state_dir(state_dir: Path, naming: Naming) -> bool:
    """Only ever delete a directory the lab made (guards against a bad state_dir)."""
    marker = state_dir / ".clusterctl-lab"
    try:
        return marker.read_text().strip() == naming.name
    except OSError:
        return False


# --------------------------------------------------------------------------
# Building hosts


def _plan(naming: Naming, backends: int, frontends: list[str]) -> list[LabHost]:
    hosts: list[LabHost] = []
    for i, kind in enumerate(frontends, 1):
        address = naming.address(FRONTEND_BASE + i - 1)
        hosts.append(
            LabHost(
                f"lb{i}", "frontend", kind, address, f"http://{address}/", naming.netns(f"lb{i}")
            )
        )
    for i in range(1, backends + 1):
        address = naming.address(BACKEND_BASE + i - 1)
        hosts.append(
            LabHost(
                f"be{i}",
                "backend",
                "app",
                address,
                f"http://{address}:{APP_PORT}/",
                naming.netns(f"be{i}"),
            )
        )
    return hosts


def _keygen(path: Path, comment: str) -> None:
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def _host_dir(state_dir: Path, host: LabHost) -> Path:
    return state_dir / "hosts" / host.name


def _binds(state_dir: Path, host: LabHost) -> list[tuple[str, str]]:
    root = _host_dir(state_dir, host) / "root"
    binds = []
    Path("/var/lib/clusterctl").mkdir(mode=0o755, exist_ok=True)  # a mount point for hosts
    for target in PRIVATE_DIRS:
        if not Path(target).is_dir():
            continue
        if state_dir.is_relative_to(target) and target in SKIPPABLE_DIRS:
            continue  # would hide the state dir (sshd config, host keys) inside the host
        binds.append((str(root / target.lstrip("/")), target))
    if Path("/etc/hosts").is_file() and not Path("/etc/hosts").is_symlink():
        binds.append((str(_host_dir(state_dir, host) / "etc-hosts"), "/etc/hosts"))
    binds += users.file_binds(_host_dir(state_dir, host))  # its own users and sudoers
    return binds


def _prepare_host(
    state_dir: Path, naming: Naming, host: LabHost, client_pub: str, hosts_file: str
) -> None:
    hdir = _host_dir(state_dir, host)
    root = hdir / "root"
    (hdir / "ssh").mkdir(parents=True, mode=0o700)
    for target in PRIVATE_DIRS:
        dst = root / target.lstrip("/")
        if target in COPIED_DIRS and Path(target).is_dir():
            dst.parent.mkdir(parents=True, exist_ok=True)
            _run(["cp", "-a", target, str(dst)])
        else:
            dst.mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "root").chmod(0o700)
    for skel in (".bashrc", ".profile"):
        with contextlib.suppress(OSError):
            shutil.copy2(Path("/etc/skel") / skel, root / "root" / skel)
    _write(hdir / "etc-hosts", hosts_file)
    users.prepare_files(hdir)
    for sub in ("nginx", "apache2", "haproxy", "app"):
        (root / "var/log" / sub).mkdir(exist_ok=True)

    # SSH: per-host host key, the lab client key authorised for root.
    ssh = hdir / "ssh"
    _keygen(ssh / "ssh_host_ed25519_key", f"root@{host.name}")
    _write(ssh / "authorized_keys", client_pub, 0o600)
    _write(
        ssh / "sshd_config",
        hostfiles.SSHD_CONFIG.format(
            host=host.name,
            address=host.address,
            host_key=ssh / "ssh_host_ed25519_key",
            authorized_keys=ssh / "authorized_keys",
        ),
    )

    # Service control script.
    bindir = root / "srv/lab/bin"
    bindir.mkdir(parents=True)
    _write(bindir / "lab-service", hostfiles.LAB_SERVICE, 0o755)

    start: list[list[str]]
    if host.role == "backend":
        app = root / "srv/app"
        (app / "bin").mkdir(parents=True)
        rel = app / "releases" / INITIAL_RELEASE
        rel.mkdir(parents=True)
        (rel / "VERSION").write_text(INITIAL_RELEASE + "\n")
        (app / "current").symlink_to(f"releases/{INITIAL_RELEASE}")
        here = Path(__file__).parent
        shebang = f"#!{_python()}\n"
        _write(app / "bin/app.py", shebang + (here / "backend_app.py").read_text(), 0o755)
        _write(app / "bin/deploy", shebang + (here / "host_deploy.py").read_text(), 0o755)
        cfg = {"address": host.address, "port": APP_PORT, "python": _python()}
        _write(app / "app.json", json.dumps(cfg, indent=2) + "\n")
        start = [["/srv/app/bin/deploy", "--start"]]
    else:
        _configure_frontend(root, host)
        start = [["/srv/lab/bin/lab-service", host.kind, "start"]]

    _write(
        hdir / "init.sh",
        hostfiles.render_init(
            host=host.name,
            ready=str(hdir / "ready"),
            binds=_binds(state_dir, host),
            start=start,
            sshd_config=str(ssh / "sshd_config"),
        ),
        0o755,
    )


def _configure_frontend(root: Path, host: LabHost) -> None:
    if host.kind == "haproxy":
        (root / "etc/haproxy").mkdir(parents=True, exist_ok=True)
        _write(root / "etc/haproxy/haproxy.cfg", hostfiles.HAPROXY_CFG.format(host=host.name))
    elif host.kind == "nginx":
        (root / "etc/nginx").mkdir(parents=True, exist_ok=True)
        _write(root / "etc/nginx/nginx.conf", hostfiles.NGINX_CONF.format(host=host.name))
    elif host.kind == "apache":
        etc = root / "etc/apache2"
        _write(etc / "ports.conf", hostfiles.APACHE_PORTS_CONF)
        _write(
            etc / "conf-available/clusterctl-lab.conf",
            hostfiles.APACHE_LAB_CONF.format(host=host.name),
        )
        link = etc / "conf-enabled/clusterctl-lab.conf"
        if not link.is_symlink():
            link.symlink_to("../conf-available/clusterctl-lab.conf")
        for mod in hostfiles.APACHE_MODULES:
            for ext in ("load", "conf"):
                src = etc / "mods-available" / f"{mod}.{ext}"
                dst = etc / "mods-enabled" / f"{mod}.{ext}"
                if src.exists() and not dst.is_symlink():
                    dst.symlink_to(f"../mods-available/{mod}.{ext}")
        default_site = etc / "sites-enabled/000-default.conf"
        if default_site.is_symlink():
            default_site.unlink()


def _create_bridge(naming: Naming, state: _State) -> None:
    state.record("links", naming.bridge, "bridge")
    _run(["ip", "link", "add", naming.bridge, "type", "bridge"])
    _disable_ipv6(naming.bridge)
    _run(["ip", "addr", "add", f"{naming.gateway}/24", "dev", naming.bridge])
    _run(["ip", "link", "set", naming.bridge, "up"])


def _create_netns(naming: Naming, host: LabHost, state: _State) -> None:
    state.record("netns", host.netns, None)
    _run(["ip", "netns", "add", host.netns])
    state.record("netns", host.netns, _ns_inode(host.netns))
    veth = naming.veth(host.name)
    state.record("links", veth, "veth")
    _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns])
    _disable_ipv6(veth)
    _run(["ip", "link", "set", veth, "master", naming.bridge, "up"])
    _run(
        ["ip", "-n", host.netns, "-batch", "-"],
        input_text=f"addr add {host.address}/24 dev eth0\nlink set lo up\n",
    )
    _checkpoint(f"netns:{host.name}")


def _start_host(naming: Naming, state_dir: Path, host: LabHost, state: _State) -> None:
    hdir = _host_dir(state_dir, host)
    env = {
        "PATH": SYS_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "CLUSTERCTL_LAB_ID": naming.tag,
    }
    # Disable IPv6 on eth0 before it comes up, then bring it up, then the init.
    _run(
        [
            "ip", "netns", "exec", host.netns,
            "sysctl", "-q", "-w", "net.ipv6.conf.eth0.disable_ipv6=1",
        ],
        check=False,
    )  # fmt: skip
    _run(["ip", "-n", host.netns, "link", "set", "eth0", "up"])
    argv = [
        "ip", "netns", "exec", host.netns,
        "unshare", "--mount", "--uts", "--pid", "--kill-child", "--mount-proc",
        "--propagation", "private",
        "/bin/sh", str(hdir / "init.sh"),
    ]  # fmt: skip
    with (hdir / "init.log").open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
    state.record("pids", host.name, proc.pid)
    _checkpoint(f"started:{host.name}")


def _ssh_banner(address: str, port: int = 22, timeout: float = 1.0) -> str | None:
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = sock.recv(256)
    except OSError:
        return None
    text = data.decode("ascii", "replace").strip()
    return text if text.startswith("SSH-") else None


def _http_health(address: str, port: int, timeout: float = 1.0) -> tuple[int, str]:
    url = f"http://{address}:{port}/health"
    req = urllib.request.Request(url, headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (http only)
            return int(resp.status), resp.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace").strip()
    except OSError as exc:
        return 0, str(exc)


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _wait_ready(state_dir: Path, hosts: list[LabHost], state: _State) -> None:
    pending = {h.name: h for h in hosts}
    deadline = time.monotonic() + READY_TIMEOUT
    while pending:
        for name, host in list(pending.items()):
            hdir = _host_dir(state_dir, host)
            try:
                ready = (hdir / "ready").read_text().strip()
            except OSError:
                ready = ""
            pid = int(state.data["pids"][name])
            if ready.startswith("fail") or (not ready and not _proc_alive(pid)):
                _reap(pid)
                detail = ready or "init exited"
                raise LabError(
                    f"host {name} failed to start ({detail}): {_log_tail(hdir / 'init.log')}"
                )
            if ready != "ok" or _ssh_banner(host.address, timeout=0.5) is None:
                continue
            if host.role == "backend" and _http_health(host.address, APP_PORT)[0] != 200:
                continue
            del pending[name]
        if not pending:
            break
        if time.monotonic() > deadline:
            raise LabError(
                f"hosts {', '.join(sorted(pending))} not ready after {READY_TIMEOUT:.0f}s; "
                f"see {state_dir}/hosts/*/init.log"
            )
        time.sleep(0.05)
    _checkpoint("ready")


def _subnet_conflict(naming: Naming) -> str | None:
    out = _run(["ip", "-j", "-4", "addr", "show"], check=False)
    try:
        links = json.loads(out or "[]")
    except ValueError:
        return None
    for link in links:
        for addr in link.get("addr_info", []):
            try:
                ip = ipaddress.ip_address(addr.get("local", ""))
            except ValueError:
                continue
            if ip in naming.subnet:
                return f"{ip} on {link.get('ifname')}"
    return None


# --------------------------------------------------------------------------
# Public API


def up(
    name: str = "lab",
    backends: int = 3,
    frontends: list[str] | None = None,
    state_dir: Path | None = None,
) -> LabInfo:
    """Build lab ``name`` (or return the running one with ``already_running=True``)."""
    kinds = list(FRONTEND_KINDS) if frontends is None else list(frontends)
    _validate_name(name)
    bad = [k for k in kinds if k not in FRONTEND_KINDS]
    if bad:
        raise LabError(f"unknown front-end kind {bad[0]!r}: use {', '.join(FRONTEND_KINDS)}")
    if not 0 <= backends <= MAX_BACKENDS:
        raise LabError(f"backends must be between 0 and {MAX_BACKENDS}, not {backends}")
    if len(kinds) > MAX_FRONTENDS:
        raise LabError(f"at most {MAX_FRONTENDS} front ends, not {len(kinds)}")
    _require_root()
    _require_binaries(kinds)
    naming = Naming(name)

    with _lab_lock(name):
        existing_dir = _locate(name)
        existing = _State.load(existing_dir)
        if existing is not None and existing.data.get("phase") == "running":
            info = LabInfo.from_dict(existing.data["info"])
            problems = _liveness_problems(existing)
            if problems:
                raise LabError(
                    f"lab {name!r} exists but is broken ({problems}); "
                    f"run `clusterctl lab down {name}` and try again"
                )
            info.already_running = True
            return info
        # Leftovers of a crashed or interrupted `up`: remove them first.
        _teardown(naming, existing_dir, existing)

        sdir = (state_dir or LABS_ROOT / name).absolute()
        hidden = [d for d in PRIVATE_DIRS if sdir.is_relative_to(d) and d not in SKIPPABLE_DIRS]
        if hidden:
            raise LabError(f"state dir {sdir} is inside {hidden[0]}, which lab hosts replace")
        if sdir.exists() and any(sdir.iterdir()):
            raise LabError(f"state dir {sdir} exists and is not empty; pick another or remove it")
        conflict = _subnet_conflict(naming)
        if conflict:
            raise LabError(
                f"subnet {naming.subnet} of lab {name!r} is already in use ({conflict}); "
                "pick another lab name"
            )
        sdir.mkdir(parents=True, exist_ok=True)
        sdir.chmod(0o700)
        (sdir / ".clusterctl-lab").write_text(name + "\n")
        if sdir != LABS_ROOT / name:
            _write(_ref_path(name), str(sdir) + "\n")
        hosts = _plan(naming, backends, kinds)
        info = LabInfo(
            name=name,
            state_dir=sdir,
            subnet=str(naming.subnet),
            bridge=naming.bridge,
            gateway=naming.gateway,
            inventory_path=sdir / "inventory.yaml",
            ssh_key_path=sdir / "id_ed25519",
            known_hosts_path=sdir / "known_hosts",
            hosts=hosts,
        )
        state = _State(
            sdir / "state.json",
            {
                "version": STATE_VERSION,
                "name": name,
                "tag": naming.tag,
                "phase": "creating",
                "info": info.to_dict(),
                "netns": {},
                "links": {},
                "pids": {},
            },
        )
        state.save()
        try:
            _build(naming, info, state)
        except BaseException as exc:
            state.set("phase", "failed")
            with contextlib.suppress(Exception):
                _teardown(naming, sdir, state)
            if isinstance(exc, LabError | KeyboardInterrupt | SystemExit):
                raise
            raise LabError(f"lab {name!r} failed to start: {exc}") from exc
        return info


def _build(naming: Naming, info: LabInfo, state: _State) -> None:
    sdir = info.state_dir
    _keygen(info.ssh_key_path, f"clusterctl-lab-{info.name}")
    client_pub = info.ssh_key_path.with_suffix(".pub").read_text()
    hosts_file = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" + "".join(
        f"{h.address}\t{h.name}\n" for h in info.hosts
    )
    _create_bridge(naming, state)
    _checkpoint("bridge")

    def build_host(host: LabHost) -> None:
        _prepare_host(sdir, naming, host, client_pub, hosts_file)
        _create_netns(naming, host, state)
        _start_host(naming, sdir, host, state)

    with ThreadPoolExecutor(max_workers=max(1, len(info.hosts))) as pool:
        futures = [pool.submit(build_host, h) for h in info.hosts]
        first_error: BaseException | None = None
        for fut in futures:
            exc = fut.exception()
            if exc is not None and first_error is None:
                first_error = exc
        if first_error is not None:
            raise first_error
    _wait_ready(sdir, info.hosts, state)

    lines = []
    for host in info.hosts:
        pub = (_host_dir(sdir, host) / "ssh/ssh_host_ed25519_key.pub").read_text().split()
        lines.append(f"{host.address} {pub[0]} {pub[1]}\n")
    _write(info.known_hosts_path, "".join(lines))

    from clusterctl.lab.inventory import write_inventory

    write_inventory(info, info.inventory_path)
    _checkpoint("inventory")
    state.set("info", info.to_dict())
    state.set("phase", "running")


def _liveness_problems(state: _State) -> str:
    problems = []
    for host, pid in state.data.get("pids", {}).items():
        if not _proc_alive(int(pid)):
            problems.append(f"{host} is down")
    return ", ".join(problems)


def down(name: str = "lab") -> None:
    """Remove lab ``name`` completely; a no-op if nothing of it exists."""
    _validate_name(name)
    _require_root()
    naming = Naming(name)
    with _lab_lock(name):
        state_dir = _locate(name)
        state = _State.load(state_dir)
        if state is not None:
            state.set("phase", "deleting")
        _teardown(naming, state_dir, state)


def info(name: str = "lab") -> LabInfo:
    """The LabInfo of a running lab (raises LabError if there is none)."""
    _validate_name(name)
    state = _State.load(_locate(name))
    if state is None or state.data.get("phase") != "running":
        raise LabError(
            f"no lab named {name!r} is running; start it with `clusterctl lab up {name}`"
        )
    return LabInfo.from_dict(state.data["info"])


def _frontend_service(host: LabHost, init_pid: int) -> tuple[bool, str]:
    comm = {"haproxy": "haproxy", "nginx": "nginx", "apache": "apache2"}[host.kind]
    ino = _ns_inode(host.netns)
    running = False
    if ino is not None:
        want = f"net:[{ino}]"
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if (
                    Path(f"/proc/{entry.name}/comm").read_text().strip() == comm
                    and str(Path(f"/proc/{entry.name}/ns/net").readlink()) == want
                ):
                    running = True
                    break
            except OSError:
                continue
    if not running:
        return False, f"{comm} not running"
    if host.kind == "haproxy":
        sock = Path(f"/proc/{init_pid}/root/run/haproxy/admin.sock")
        if not sock.exists():
            return False, "haproxy running, admin socket missing"
        return True, "haproxy running, admin socket present"
    return True, f"{comm} running"


def status(name: str = "lab") -> list[HostStatus]:
    """Per-host health of lab ``name``."""
    lab = info(name)
    state = _State.load(lab.state_dir)
    pids = state.data.get("pids", {}) if state else {}

    def check(host: LabHost) -> HostStatus:
        banner = _ssh_banner(host.address)
        if host.role == "backend":
            code, body = _http_health(host.address, APP_PORT)
            service = code == 200
            detail = f"http {code} {body}" if code else f"http down: {body}"
        else:
            service, detail = _frontend_service(host, int(pids.get(host.name, 0)))
        return HostStatus(
            host.name, host.role, host.kind, host.address, banner is not None, service, detail
        )

    with ThreadPoolExecutor(max_workers=max(1, len(lab.hosts))) as pool:
        return list(pool.map(check, lab.hosts))
