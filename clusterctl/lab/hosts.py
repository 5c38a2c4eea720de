"""Building hosts: their folders, seed configs, init script, network namespace and first process."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from pathlib import Path

from clusterctl.drivers import DRIVERS, driver_for
from clusterctl.lab import hostfiles, users
from clusterctl.lab.naming import Naming
from clusterctl.lab.state import State
from clusterctl.lab.system import SYS_PATH, disable_ipv6, ns_inode, python_path, run, write_file
from clusterctl.lab.types import LabHost
from clusterctl.model.queries import host_port

FRONTEND_BASE = 11
BACKEND_BASE = 101
APP_PORT = 8080
INITIAL_RELEASE = "1.0.0"

# The front-end kinds' own folders (their drivers' lab_dirs), pre-populated from the
# machine (Debian package files).
KIND_DIRS = tuple(d for driver in DRIVERS.values() for d in driver.lab_dirs)
# Paths that each host gets its own copy of (bind mounts), in mount order.
PRIVATE_DIRS = (
    *KIND_DIRS,
    "/var/log",
    "/var/lib/clusterctl",
    "/srv",
    "/tmp",  # noqa: S108
    "/root",
    "/etc/sudoers.d",
)
# Of those, the ones not bound when the state dir lives inside them.
SKIPPABLE_DIRS = ("/tmp", "/root")  # noqa: S108
# Of those, the ones pre-populated from the machine.
COPIED_DIRS = (*KIND_DIRS, "/etc/sudoers.d")


def plan_hosts(naming: Naming, backends: int, frontends: list[str]) -> list[LabHost]:
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
                f"http://{host_port(address, APP_PORT)}/",
                naming.netns(f"be{i}"),
            )
        )
    return hosts


def keygen(path: Path, comment: str) -> None:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def host_dir(state_dir: Path, host: LabHost) -> Path:
    return state_dir / "hosts" / host.name


def bind_mounts(state_dir: Path, host: LabHost) -> list[tuple[str, str]]:
    root = host_dir(state_dir, host) / "root"
    binds = []
    Path("/var/lib/clusterctl").mkdir(mode=0o755, exist_ok=True)  # a mount point for hosts
    for target in PRIVATE_DIRS:
        if not Path(target).is_dir():
            continue
        if state_dir.is_relative_to(target) and target in SKIPPABLE_DIRS:
            continue  # would hide the state dir (sshd config, host keys) inside the host
        binds.append((str(root / target.lstrip("/")), target))
    if Path("/etc/hosts").is_file() and not Path("/etc/hosts").is_symlink():
        binds.append((str(host_dir(state_dir, host) / "etc-hosts"), "/etc/hosts"))
    binds += users.file_binds(host_dir(state_dir, host))  # its own users and sudoers
    return binds


def prepare_host(
    state_dir: Path, naming: Naming, host: LabHost, client_pub: str, hosts_file: str
) -> None:
    hdir = host_dir(state_dir, host)
    root = hdir / "root"
    (hdir / "ssh").mkdir(parents=True, mode=0o700)
    for target in PRIVATE_DIRS:
        dst = root / target.lstrip("/")
        if target in COPIED_DIRS and Path(target).is_dir():
            dst.parent.mkdir(parents=True, exist_ok=True)
            run(["cp", "-a", target, str(dst)])
        else:
            dst.mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "root").chmod(0o700)
    for skel in (".bashrc", ".profile"):
        with contextlib.suppress(OSError):
            shutil.copy2(Path("/etc/skel") / skel, root / "root" / skel)
    write_file(hdir / "etc-hosts", hosts_file)
    users.prepare_files(hdir)
    # Debian's packages log under /var/log/PACKAGE.
    for sub in (*(d.package for d in DRIVERS.values()), "app"):
        (root / "var/log" / sub).mkdir(exist_ok=True)

    # SSH: per-host host key, the lab client key authorised for root.
    ssh = hdir / "ssh"
    keygen(ssh / "ssh_host_ed25519_key", f"root@{host.name}")
    write_file(ssh / "authorized_keys", client_pub, 0o600)
    write_file(
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
    write_file(bindir / "lab-service", hostfiles.render_lab_service(), 0o755)

    start: list[list[str]]
    if host.role == "backend":
        app = root / "srv/app"
        (app / "bin").mkdir(parents=True)
        rel = app / "releases" / INITIAL_RELEASE
        rel.mkdir(parents=True)
        (rel / "VERSION").write_text(INITIAL_RELEASE + "\n")
        (app / "current").symlink_to(f"releases/{INITIAL_RELEASE}")
        here = Path(__file__).parent
        shebang = f"#!{python_path()}\n"
        write_file(app / "bin/app.py", shebang + (here / "backend_app.py").read_text(), 0o755)
        write_file(app / "bin/deploy", shebang + (here / "host_deploy.py").read_text(), 0o755)
        cfg = {"address": host.address, "port": APP_PORT, "python": python_path()}
        write_file(app / "app.json", json.dumps(cfg, indent=2) + "\n")
        start = [["/srv/app/bin/deploy", "--start"]]
    else:
        configure_frontend(root, host)
        start = [["/srv/lab/bin/lab-service", host.kind, "start"]]

    write_file(
        hdir / "init.sh",
        hostfiles.render_init(
            host=host.name,
            ready=str(hdir / "ready"),
            binds=bind_mounts(state_dir, host),
            start=start,
            sshd_config=str(ssh / "sshd_config"),
        ),
        0o755,
    )


def configure_frontend(root: Path, host: LabHost) -> None:
    for rel, text in driver_for(host.kind).lab_seed(root, host.name).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_file(root / rel, text)


def create_bridge(naming: Naming, state: State) -> None:
    state.record("links", naming.bridge, "bridge")
    run(["ip", "link", "add", naming.bridge, "type", "bridge"])
    disable_ipv6(naming.bridge)
    run(["ip", "addr", "add", f"{naming.gateway}/24", "dev", naming.bridge])
    run(["ip", "link", "set", naming.bridge, "up"])


def create_netns(naming: Naming, host: LabHost, state: State) -> None:
    state.record("netns", host.netns, None)
    run(["ip", "netns", "add", host.netns])
    state.record("netns", host.netns, ns_inode(host.netns))
    veth = naming.veth(host.name)
    state.record("links", veth, "veth")
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns])
    disable_ipv6(veth)
    run(["ip", "link", "set", veth, "master", naming.bridge, "up"])
    run(
        ["ip", "-n", host.netns, "-batch", "-"],
        input_text=f"addr add {host.address}/24 dev eth0\nlink set lo up\n",
    )


def start_host(naming: Naming, state_dir: Path, host: LabHost, state: State) -> None:
    hdir = host_dir(state_dir, host)
    env = {
        "PATH": SYS_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "CLUSTERCTL_LAB_ID": naming.tag,
    }
    # Disable IPv6 on eth0 before it comes up, then bring it up, then the init.
    run(
        [
            "ip", "netns", "exec", host.netns,
            "sysctl", "-q", "-w", "net.ipv6.conf.eth0.disable_ipv6=1",
        ],
        check=False,
    )  # fmt: skip
    run(["ip", "-n", host.netns, "link", "set", "eth0", "up"])
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
