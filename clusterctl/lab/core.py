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

This module holds the public up/down/info/status; the rooms beside it hold the rest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clusterctl.drivers import DRIVERS
from clusterctl.lab import vrrp as lab_vrrp
from clusterctl.lab.hosts import (
    APP_PORT,
    PRIVATE_DIRS,
    SKIPPABLE_DIRS,
    create_bridge,
    create_netns,
    host_dir,
    keygen,
    plan_hosts,
    prepare_host,
    start_host,
)
from clusterctl.lab.inventory import write_inventory
from clusterctl.lab.naming import Naming, validate_name
from clusterctl.lab.probes import (
    frontend_service,
    http_health,
    liveness_problems,
    ssh_banner,
    subnet_conflict,
    wait_ready,
)
from clusterctl.lab.state import LABS_ROOT, STATE_VERSION, State, lab_lock, locate, ref_path
from clusterctl.lab.system import require_binaries, require_root, write_file
from clusterctl.lab.teardown import teardown
from clusterctl.lab.types import HostStatus, LabError, LabHost, LabInfo

# Names callers reach through this module (tests, bench/): kept where they always were.
__all__ = [
    "APP_PORT",
    "FRONTEND_KINDS",
    "LABS_ROOT",
    "HostStatus",
    "LabError",
    "LabHost",
    "LabInfo",
    "Naming",
    "down",
    "info",
    "status",
    "up",
]

FRONTEND_KINDS = tuple(k for k, d in DRIVERS.items() if d.proxy)
MAX_FRONTENDS = 89  # .11 .. .99
MAX_BACKENDS = 99  # .101 .. .199

# Tests inject faults here: called with a stage name ("bridge", "netns:be1",
# "started:be1", "ready", "inventory") as ``up`` progresses.
_fault_hook: Callable[[str], None] | None = None


def _checkpoint(stage: str) -> None:
    hook = _fault_hook
    if hook is not None:
        hook(stage)


def up(
    name: str = "lab",
    backends: int = 3,
    frontends: list[str] | None = None,
    state_dir: Path | None = None,
    vip: bool = False,
) -> LabInfo:
    """Build lab ``name`` (or return the running one with ``already_running=True``); with
    ``vip``, its front ends share a virtual address (keepalived, lab/vrrp.py)."""
    kinds = list(FRONTEND_KINDS) if frontends is None else list(frontends)
    validate_name(name)
    bad = [k for k in kinds if k not in FRONTEND_KINDS]
    if bad:
        raise LabError(f"unknown front-end kind {bad[0]!r}: use {', '.join(FRONTEND_KINDS)}")
    if not 0 <= backends <= MAX_BACKENDS:
        raise LabError(f"backends must be between 0 and {MAX_BACKENDS}, not {backends}")
    if len(kinds) > MAX_FRONTENDS:
        raise LabError(f"at most {MAX_FRONTENDS} front ends, not {len(kinds)}")
    require_root()
    require_binaries(kinds + (["keepalived"] if vip else []))
    if vip and len(kinds) < 2:
        raise LabError("--vip needs two or more front ends (e.g. --frontends haproxy,haproxy)")
    naming = Naming(name)

    with lab_lock(name):
        existing_dir = locate(name)
        existing = State.load(existing_dir)
        if existing is not None and existing.data.get("phase") == "running":
            info = LabInfo.from_dict(existing.data["info"])
            problems = liveness_problems(existing)
            if problems:
                raise LabError(
                    f"lab {name!r} exists but is broken ({problems}); "
                    f"run `clusterctl lab down {name}` and try again"
                )
            info.already_running = True
            return info
        # Leftovers of a crashed or interrupted `up`: remove them first.
        teardown(naming, existing_dir, existing)

        sdir = (state_dir or LABS_ROOT / name).absolute()
        hidden = [d for d in PRIVATE_DIRS if sdir.is_relative_to(d) and d not in SKIPPABLE_DIRS]
        if hidden:
            raise LabError(f"state dir {sdir} is inside {hidden[0]}, which lab hosts replace")
        if sdir.exists() and any(sdir.iterdir()):
            raise LabError(f"state dir {sdir} exists and is not empty; pick another or remove it")
        conflict = subnet_conflict(naming)
        if conflict:
            raise LabError(
                f"subnet {naming.subnet} of lab {name!r} is already in use ({conflict}); "
                "pick another lab name"
            )
        sdir.mkdir(parents=True, exist_ok=True)
        sdir.chmod(0o700)
        (sdir / ".clusterctl-lab").write_text(name + "\n")
        if sdir != LABS_ROOT / name:
            write_file(ref_path(name), str(sdir) + "\n")
        hosts = plan_hosts(naming, backends, kinds)
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
        if vip:
            info.vrrp = lab_vrrp.groups(naming, name, info.frontends)
        state = State(
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
                teardown(naming, sdir, state)
            if isinstance(exc, LabError | KeyboardInterrupt | SystemExit):
                raise
            raise LabError(f"lab {name!r} failed to start: {exc}") from exc
        return info


def _build(naming: Naming, info: LabInfo, state: State) -> None:
    sdir = info.state_dir
    keygen(info.ssh_key_path, f"clusterctl-lab-{info.name}")
    client_pub = info.ssh_key_path.with_suffix(".pub").read_text()
    hosts_file = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" + "".join(
        f"{h.address}\t{h.name}\n" for h in info.hosts
    )
    create_bridge(naming, state)
    _checkpoint("bridge")

    def build_host(host: LabHost) -> None:
        prepare_host(sdir, naming, host, client_pub, hosts_file)
        create_netns(naming, host, state)
        _checkpoint(f"netns:{host.name}")
        start_host(naming, sdir, host, state)
        _checkpoint(f"started:{host.name}")

    with ThreadPoolExecutor(max_workers=max(1, len(info.hosts))) as pool:
        futures = [pool.submit(build_host, h) for h in info.hosts]
        first_error: BaseException | None = None
        for fut in futures:
            exc = fut.exception()
            if exc is not None and first_error is None:
                first_error = exc
        if first_error is not None:
            raise first_error
    wait_ready(sdir, info.hosts, state)
    _checkpoint("ready")

    lines = []
    for host in info.hosts:
        pub = (host_dir(sdir, host) / "ssh/ssh_host_ed25519_key.pub").read_text().split()
        lines.append(f"{host.address} {pub[0]} {pub[1]}\n")
    write_file(info.known_hosts_path, "".join(lines))

    write_inventory(info, info.inventory_path)
    _checkpoint("inventory")
    if info.vrrp:
        lab_vrrp.start(info)
    state.set("info", info.to_dict())
    state.set("phase", "running")


def down(name: str = "lab") -> None:
    """Remove lab ``name`` completely; a no-op if nothing of it exists."""
    validate_name(name)
    require_root()
    naming = Naming(name)
    with lab_lock(name):
        state_dir = locate(name)
        state = State.load(state_dir)
        if state is not None:
            state.set("phase", "deleting")
        teardown(naming, state_dir, state)


def info(name: str = "lab") -> LabInfo:
    """The LabInfo of a running lab (raises LabError if there is none)."""
    validate_name(name)
    state = State.load(locate(name))
    if state is None or state.data.get("phase") != "running":
        raise LabError(
            f"no lab named {name!r} is running; start it with `clusterctl lab up {name}`"
        )
    return LabInfo.from_dict(state.data["info"])


def status(name: str = "lab") -> list[HostStatus]:
    """Per-host health of lab ``name``."""
    lab = info(name)
    state = State.load(lab.state_dir)
    pids = state.data.get("pids", {}) if state else {}

    def check(host: LabHost) -> HostStatus:
        banner = ssh_banner(host.address)
        if host.role == "backend":
            code, body = http_health(host.address, APP_PORT)
            service = code == 200
            detail = f"http {code} {body}" if code else f"http down: {body}"
        else:
            service, detail = frontend_service(host, int(pids.get(host.name, 0)))
        return HostStatus(
            host.name, host.role, host.kind, host.address, banner is not None, service, detail
        )

    with ThreadPoolExecutor(max_workers=max(1, len(lab.hosts))) as pool:
        return list(pool.map(check, lab.hosts))
