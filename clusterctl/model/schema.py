"""The inventory's shape: typed, frozen dataclasses, one per YAML mapping.

Each field declares its check (from checks.py) in its metadata; the generic loader in
loader.py walks these declarations, so the schema is written once and the loader, the
validation and the "every field has a validator" guard all read it from here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from clusterctl.model import checks as c
from clusterctl.model import pathcheck as pc
from clusterctl.model import proxychecks as px

KINDS = ("haproxy", "nginx", "apache")
STATES = ("ready", "drain", "maint")
BALANCE = ("roundrobin", "leastconn", "source", "random", "first")


def opt(check: c.Check | None, default: Any = None, doc: str = "") -> Any:
    """A field with a check and a default; checks are None only for nested mappings."""
    return field(default=default, metadata={"check": check, "doc": doc})


def req(check: c.Check | None, doc: str = "") -> Any:
    return field(metadata={"check": check, "doc": doc, "required": True})


def many(doc: str = "", required: bool = False) -> Any:
    """A list of nested mappings."""
    return field(default=(), metadata={"check": None, "doc": doc, "required": required})


class Pos(NamedTuple):
    """Where a value sits in the inventory file (1-based); a tuple: the loader makes one for
    every value, and a frozen dataclass is several times slower to create."""

    file: str
    line: int
    col: int


def meta() -> Any:
    """Positions of the mapping and its keys/values, filled by the loader; not part of the model."""
    return field(default_factory=dict, compare=False, repr=False, metadata={"internal": True})


@dataclass(frozen=True, kw_only=True)
class SSH:
    user: str | None = opt(c.USER, doc="login user (default: root)")
    port: int | None = opt(c.PORT, doc="SSH port (default 22)")
    identity: str | None = opt(pc.ssh_path, doc="private key file")
    known_hosts: str | None = opt(pc.ssh_path, doc="known_hosts file (default ~/.ssh/known_hosts)")
    sudo: bool | None = opt(c.boolean, doc="use sudo for privileged steps")
    jump: str | None = opt(c.jump_host, doc="jump (bastion) host: [user@]host[:port]")
    jump_user: str | None = opt(c.USER, doc="user on the jump host")
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class Defaults:
    ssh: SSH = opt(None, default=SSH())
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class Paths:
    config: str | None = opt(pc.remote_path, doc="main config file")
    tls_dir: str | None = opt(pc.remote_path, doc="folder for certificates and keys")
    admin_socket: str | None = opt(pc.remote_path, doc="HAProxy runtime API socket")
    state_file: str | None = opt(pc.remote_path, doc="HAProxy server-state file")
    pid_file: str | None = opt(pc.remote_path, doc="server pid file")
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class Metrics:
    port: int = req(c.PORT, "port of the front end's metrics listener")
    address: str = opt(c.listen_address, default="127.0.0.1", doc="address it listens on")
    path: str = opt(c.url_path, default="/metrics", doc="URL path of the metrics")
    allow: tuple[str, ...] = opt(
        px.sources, default=px.LOOPBACK_SOURCES, doc="addresses or networks allowed to read them"
    )
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class Frontend:
    name: str = req(c.NAME, "host name as clusterctl calls it")
    kind: str = req(c.choice(*KINDS), "haproxy | nginx | apache")
    address: str = req(c.address, "address to reach it over SSH")
    version: str | None = opt(c.VERSION, doc="server version to render for")
    ssh: SSH = opt(None, default=SSH())
    paths: Paths = opt(None, default=Paths())
    outside_paths: tuple[str, ...] = opt(
        pc.remote_paths,
        default=(),
        doc="folders or files outside the kind's own folders that paths.* may name",
    )
    reload: tuple[str, ...] | None = opt(c.argv(), doc="graceful reload command")
    start: tuple[str, ...] | None = opt(c.argv(), doc="start command, when it is not running")
    services: tuple[str, ...] | None = opt(c.names, doc="services this front end serves")
    hard_stop_after: int = opt(c.duration, default=300_000, doc="HAProxy: bound on old workers")
    admin_port: int = opt(c.PORT, default=8081, doc="Apache: balancer-manager port, 127.0.0.1")
    peer_port: int = opt(
        c.PORT, default=10000, doc="HAProxy: 127.0.0.1 port that keeps stick tables over reloads"
    )
    metrics: Metrics | None = opt(
        None, doc="metrics listener (HAProxy Prometheus, nginx stub_status, Apache mod_status)"
    )
    syslog: str = opt(px.syslog, default="/dev/log", doc="HAProxy: where its logs go")
    at: dict[str, Pos] = meta()
    # Not in the inventory: of the driver's probe files (a module it can load), those the host
    # has, from its facts (None: not gathered). plan.effective_frontend fills it in.
    present: tuple[str, ...] | None = field(
        default=None, compare=False, repr=False, metadata={"internal": True}
    )


@dataclass(frozen=True, kw_only=True)
class Server:
    name: str = req(c.NAME)
    address: str = req(c.address)
    port: int = req(c.PORT)
    weight: int = opt(c.integer(1, 100), default=1)
    backup: bool = opt(c.boolean, default=False)
    state: str = opt(c.choice(*STATES), default="ready")
    maxconn: int | None = opt(
        c.integer(1, 1_000_000), doc="HAProxy: connections at once to it; the rest wait queued"
    )
    ssh: SSH = opt(None, default=SSH())
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class Sticky:
    cookie: str = req(c.cookie, "cookie the front end sets to pin a client")
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class Health:
    type: str = opt(c.choice("http", "tcp", "mysql"), default="http")
    path: str = opt(c.url_path, default="/health")
    host: str | None = opt(c.hostname, doc="Host header for the check")
    expect: int = opt(c.integer(100, 599), default=200)
    interval: int = opt(c.duration, default=2000)
    timeout: int = opt(c.duration, default=1000)
    rise: int = opt(c.integer(1, 100), default=2)
    fall: int = opt(c.integer(1, 100), default=3)
    max_fails: int = opt(c.integer(0, 100), default=3)
    fail_timeout: int = opt(c.duration, default=10_000)
    user: str | None = opt(c.DB_USER, doc="MySQL user for mysql checks")
    port: int | None = opt(c.PORT, doc="HAProxy: check this port, not the server's (clustercheck)")
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class Pool:
    name: str = req(c.NAME)
    balance: str = opt(c.choice(*BALANCE), default="roundrobin")
    sticky: Sticky | None = opt(None)
    health: Health | None = opt(None)
    keepalive: int = opt(c.integer(0, 1024), default=16)
    failback: bool = opt(
        c.boolean,
        default=False,
        doc="HAProxy tcp pool with a backup: a primary back up takes over again at once",
    )
    maintenance: bool = opt(
        c.boolean, default=False, doc="answer every request with the unavailable page (503)"
    )
    servers: tuple[Server, ...] = many(required=True)
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class Listen:
    port: int = req(c.PORT)
    address: str = opt(c.listen_address, default="*")
    tls: bool = opt(c.boolean, default=False)
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class TLS:
    certificate: str = req(pc.local_path, "certificate chain (PEM), local file")
    key: str = req(pc.local_path, "private key (PEM), local file; secret")
    redirect: bool = opt(c.boolean, default=True, doc="redirect HTTP to HTTPS")
    hsts: int = opt(c.duration_or_off, default=31_536_000_000, doc="HSTS max-age; 0s: off")
    profile: str = opt(c.choice("intermediate", "modern"), default="intermediate")
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class Route:
    pool: str = req(c.NAME)
    path: str | None = opt(c.url_path)
    host: str | None = opt(c.hostname)
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    connect: int = opt(c.duration, default=5000)
    client: int = opt(c.duration, default=60_000)
    server: int = opt(c.duration, default=60_000)
    tunnel: int = opt(
        c.duration, default=3_600_000, doc="HAProxy: idle bound on a WebSocket once upgraded"
    )
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class Unavailable:
    page: str | None = opt(pc.local_path, doc="HTML page (local file, UTF-8, at most 8 KiB)")
    retry_after: int = opt(c.duration, default=30_000, doc="Retry-After sent with the 503")
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class Service:
    name: str = req(c.NAME)
    mode: str = opt(c.choice("http", "tcp"), default="http")
    listen: tuple[Listen, ...] = many(required=True)
    tls: TLS | None = opt(None)
    routes: tuple[Route, ...] = many()
    default_pool: str = req(c.NAME)
    timeouts: Timeouts = opt(None, default=Timeouts())
    max_body: int = opt(c.size, default=10 * 1024 * 1024)
    forwarded: bool = opt(c.boolean, default=True)
    unavailable: Unavailable = opt(None, default=Unavailable())
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class DeployCheck:
    path: str = opt(c.url_path, default="/health")
    port: int | None = opt(c.PORT, doc="default: the server's port")
    expect: int = opt(c.integer(100, 599), default=200)
    version_header: str = opt(c.HEADER, default="X-Release")
    timeout: int = opt(c.duration, default=30_000)
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class Release:
    """The built-in release strategy: an artifact unpacked into root/releases/<version>."""

    root: str = req(pc.remote_path, "application folder on each node (releases/, current)")
    artifact: str = req(pc.local_path, "local .tar.gz of a release; {version} is filled in")
    restart: tuple[str, ...] = req(c.argv("version", "server"), "restarts the app on the node")
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class Deploy:
    command: tuple[str, ...] | None = opt(c.argv("version", "server"))
    release: Release | None = opt(None)
    health: DeployCheck = opt(None, default=DeployCheck())
    drain_timeout: int = opt(c.duration, default=60_000)
    batch: int = opt(c.integer(1, 1000), default=1)
    min_available: int = opt(c.integer(0, 1000), default=1)
    keep_releases: int = opt(c.integer(1, 100), default=5)
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class Inventory:
    cluster: str = req(c.NAME)
    defaults: Defaults = opt(None, default=Defaults())
    frontends: tuple[Frontend, ...] = many(required=True)
    pools: tuple[Pool, ...] = many(required=True)
    services: tuple[Service, ...] = many(required=True)
    deploy: Deploy = opt(None, default=Deploy())
    vrrp: tuple[_vrrp.Group, ...] = many("front ends sharing a virtual address (keepalived)")
    at: dict[str, Pos] = meta()
    # Contents of the TLS files named in services, read by the loader (render stays pure).
    files: dict[str, bytes] = field(
        default_factory=dict, compare=False, repr=False, metadata={"internal": True}
    )
    source: str = field(default="", compare=False, metadata={"internal": True})


def model_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The user-facing fields of a schema class (not positions or loaded file contents)."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


# Last: the vrrp section's classes use this module's field helpers (the annotation above is
# resolved only when the loader reads the hints).
from clusterctl.model import vrrp as _vrrp  # noqa: E402
