"""The testinfra checks of `clusterctl verify`: a pytest module, one test per host and file.

Run it through `clusterctl verify -i INVENTORY` (or `run_verify`), which tells it the inventory
in CLUSTERCTL_VERIFY_INVENTORY (a lab by name: CLUSTERCTL_VERIFY_LAB), the hosts to check in
CLUSTERCTL_VERIFY_LIMIT and the release every backend must serve in CLUSTERCTL_VERIFY_RELEASE.
A molecule scenario's tests can `from clusterctl.verify.checks import *` to run them all.

Every failure is one message naming the host and what is wrong, raised with pytest.fail
(pytrace=False): no traceback, so no local variable (a rendered private key) is ever shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from clusterctl.drivers import driver_for
from clusterctl.errors import ClusterctlError
from clusterctl.facts import manifest_path
from clusterctl.model.queries import host_port
from clusterctl.plan import prunable
from clusterctl.verify import vrrp
from clusterctl.verify.plugin import HOST_PROPERTY, RELEASE_PROPERTY, ROLE_PROPERTY
from clusterctl.verify.probes import fail as _fail
from clusterctl.verify.probes import http_probe, listening, reach, tcp_connect
from clusterctl.verify.targets import (
    BackendTarget,
    Connections,
    Expected,
    FrontendTarget,
    Listener,
    Settings,
    Targets,
    expected_files,
    make_targets,
    server_present,
    server_version,
)
from clusterctl.verify.vrrp import keepalived as keepalived
from clusterctl.verify.vrrp import test_keepalived_running as test_keepalived_running
from clusterctl.verify.vrrp import (
    test_vrrp_address_on_one_member as test_vrrp_address_on_one_member,
)

__all__ = [
    "conn",
    "pytest_generate_tests",
    "record_host",
    "rendered",
    "test_admin_port_closed_to_other_hosts",
    "test_apache_balancer_manager_local_only",
    "test_backend_health_and_release",
    "test_frontend_listening",
    "test_frontend_server_running",
    "test_haproxy_admin_socket_private",
    "test_installed_file",
    *vrrp.__all__,
]


def targets() -> Targets:
    try:
        return make_targets(Settings.from_env())
    except ClusterctlError as exc:
        raise pytest.UsageError(f"clusterctl verify: {exc}") from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per front end, per installed file, per backend (ids name the host)."""
    names = set(metafunc.fixturenames)
    per_host = {"frontend", "haproxy_frontend", "apache_frontend", "rendered_file", "backend"}
    if not names & (per_host | {"vrrp_member", "vrrp_group"}):
        return
    t = targets()
    if "frontend" in names:
        metafunc.parametrize("frontend", [fe.name for fe in t.frontends])
    # By what the driver says the kind has, not by its name: a runtime API on an admin socket
    # (HAProxy), a balancer-manager page (Apache).
    if "haproxy_frontend" in names:
        metafunc.parametrize("haproxy_frontend", [fe.name for fe in t.frontends if fe.admin_socket])
    if "apache_frontend" in names:
        manager = [fe.name for fe in t.frontends if fe.control == "balancer-manager"]
        metafunc.parametrize("apache_frontend", manager)
    if "rendered_file" in names:
        files = t.files()
        metafunc.parametrize("rendered_file", files, ids=[f"{h}:{p}" for h, p in files])
    if "backend" in names:
        metafunc.parametrize("backend", [b.name for b in t.backends])
    if "vrrp_member" in names:
        metafunc.parametrize("vrrp_member", vrrp.vrrp_members(t))
    if "vrrp_group" in names:
        metafunc.parametrize("vrrp_group", vrrp.vrrp_groups(t))


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def conn() -> Iterator[Connections]:
    """testinfra hosts over strict ssh, closed (control masters stopped) at the end."""
    connections = Connections.open(targets())
    try:
        yield connections
    finally:
        connections.close()


class Rendered:
    """Per front end, every file as apply renders it for the server version the host runs."""

    def __init__(self, conn: Connections) -> None:
        self.conn = conn
        self._files: dict[str, dict[str, Expected]] = {}

    def files(self, name: str) -> dict[str, Expected]:
        if name not in self._files:
            t = self.conn.targets
            fe = t.frontend(name)
            version = server_version(self.conn.frontend(name), fe.kind)
            present = server_present(self.conn.frontend(name), fe.kind)
            self._files[name] = expected_files(t.inventory, fe, version, present)
        return self._files[name]


@pytest.fixture(scope="session")
def rendered(conn: Connections) -> Rendered:
    return Rendered(conn)


@pytest.fixture(autouse=True)
def record_host(request: pytest.FixtureRequest) -> None:
    """Tag each test with its host, for the per-host summary."""
    params: dict[str, Any] = getattr(getattr(request.node, "callspec", None), "params", {})
    t = targets()
    kinds = {fe.name: fe.kind for fe in t.frontends}
    for key in ("frontend", "haproxy_frontend", "apache_frontend", "rendered_file", "vrrp_member"):
        if key in params:
            value = params[key]
            name = value[0] if isinstance(value, tuple) else str(value)
            request.node.user_properties.append((HOST_PROPERTY, name))
            request.node.user_properties.append((ROLE_PROPERTY, kinds.get(name, "frontend")))
            return
    for key, role in (("backend", "backend"), ("vrrp_group", "vrrp")):
        if key in params:
            request.node.user_properties.append((HOST_PROPERTY, str(params[key])))
            request.node.user_properties.append((ROLE_PROPERTY, role))


def _fe(conn: Connections, name: str) -> FrontendTarget:
    return next(fe for fe in conn.targets.frontends if fe.name == name)


def _be(conn: Connections, name: str) -> BackendTarget:
    return next(b for b in conn.targets.backends if b.name == name)


def _tcp_sockets(sockets: list[str]) -> str:
    return ", ".join(s[len("tcp://") :] for s in sockets if s.startswith("tcp://")) or "none"


# ------------------------------------------------------------------------------ front ends


def test_frontend_server_running(frontend: str, conn: Connections) -> None:
    """The server process (haproxy, nginx, apache2) runs on the front end."""
    process = driver_for(_fe(conn, frontend).kind).processes[0]
    with reach(frontend):
        running = conn.frontend(frontend).process.filter(comm=process)
    if not running:
        _fail(f"{frontend}: no {process} process is running")


def test_frontend_listening(frontend: str, conn: Connections) -> None:
    """Every port of every service the front end serves is listening."""
    fe = _fe(conn, frontend)
    with reach(frontend):
        sockets = conn.frontend(frontend).socket.get_listening_sockets()
    missing = [ln for ln in fe.listeners if not listening(sockets, ln)]
    if missing:
        want = ", ".join(host_port(ln.address, ln.port) for ln in missing)
        _fail(
            f"{frontend} ({fe.kind}): nothing listens on {want}; listening: {_tcp_sockets(sockets)}"
        )


def _file_problems(conn: Connections, name: str, exp: Expected) -> list[str]:
    f = conn.frontend(name).file(exp.path)
    if not f.exists:
        return ["missing"]
    if not f.is_file:
        return ["not a regular file"]
    problems: list[str] = []
    mode = int(f.mode)
    if mode != exp.mode:
        problems.append(f"mode {mode:04o}, expected {exp.mode:04o}")
    owner, group = str(f.user), str(f.group)
    if (owner, group) != (exp.owner, exp.group):
        problems.append(f"owner {owner}:{group}, expected {exp.owner}:{exp.group}")
    live_sha = str(f.sha256sum)
    if live_sha != exp.sha256:
        if exp.secret:
            problems.append(
                f"content differs (sha256 {live_sha} on the host, {exp.sha256} rendered; "
                "secret: content not shown)"
            )
        else:
            problems.append("content differs from the rendered file:\n" + exp.diff(f.content, name))
    return problems


def test_installed_file(
    rendered_file: tuple[str, str], conn: Connections, rendered: Rendered
) -> None:
    """The file on the host is what clusterctl renders, byte for byte, with its owner and mode.

    Secret files (private keys) are compared by checksum only; their content is never shown.
    """
    name, path = rendered_file
    with reach(name):
        problems = _file_problems(conn, name, rendered.files(name)[path])
    if problems:
        _fail(f"{name}: {path}: " + "; ".join(problems))


def test_no_file_left_behind(frontend: str, conn: Connections, rendered: Rendered) -> None:
    """No file an earlier apply installed (its manifest on the host) is still there once the
    inventory stops rendering it (TLS turned off leaves no key behind)."""
    fe = conn.targets.frontend(frontend)
    with reach(frontend):
        host = conn.frontend(frontend)
        manifest = host.file(manifest_path(frontend))
        listed = manifest.content_string.splitlines() if manifest.exists else []
        wanted = rendered.files(frontend)
        left = [
            p for p in listed if p not in wanted and prunable(fe, p) and bool(host.file(p).exists)
        ]
    if left:
        _fail(
            f"{frontend}: installed by clusterctl and no longer rendered: {', '.join(left)} "
            "(clusterctl apply removes them)"
        )


def test_haproxy_admin_socket_private(haproxy_frontend: str, conn: Connections) -> None:
    """HAProxy's runtime API is a unix socket only root can use: mode 0600, owner root."""
    name = haproxy_frontend
    sock = _fe(conn, name).admin_socket
    with reach(name):
        f = conn.frontend(name).file(sock)
        exists, is_socket = bool(f.exists), bool(f.exists and f.is_socket)
        mode, owner = (int(f.mode), str(f.user)) if is_socket else (0, "")
    if not exists:
        _fail(f"{name}: HAProxy admin socket {sock} does not exist")
    if not is_socket:
        _fail(f"{name}: {sock} is not a unix socket")
    problems = []
    if mode != 0o600:
        problems.append(
            f"mode {mode:04o}, expected 0600 (a reload keeps the socket the previous haproxy "
            "made, with its old mode: restart haproxy, or chmod it)"
        )
    if owner != "root":
        problems.append(f"owner {owner}, expected root")
    if problems:
        _fail(f"{name}: HAProxy admin socket {sock}: " + "; ".join(problems))


def _witness(conn: Connections, fe: FrontendTarget) -> str | None:
    """Another host of the inventory to connect from: a backend first, else a front end."""
    aliases = sorted(conn.endpoints, key=lambda a: (not a.startswith("be."), a))
    for alias in aliases:
        if alias != f"fe.{fe.name}" and conn.endpoints[alias].address != fe.address:
            return alias
    return None


def test_admin_port_closed_to_other_hosts(frontend: str, conn: Connections) -> None:
    """The admin port (Apache's balancer-manager) refuses connections from other hosts."""
    fe = _fe(conn, frontend)
    if fe.admin_port in {ln.port for ln in fe.listeners}:
        pytest.skip(f"{frontend}: port {fe.admin_port} is a service port")
    alias = _witness(conn, fe)
    if alias is None:
        pytest.skip(f"{frontend}: no other host in the inventory to connect from")
    other = alias.split(".", 1)[1]
    public = next((ln for ln in fe.listeners if ln.address in ("*", fe.address)), None)
    with reach(other):
        witness = conn.host(alias)
        admin_rc = tcp_connect(witness, fe.address, fe.admin_port)
        public_rc = tcp_connect(witness, fe.address, public.port) if public is not None else 0
    if admin_rc == 0:
        _fail(
            f"{frontend}: admin port {host_port(fe.address, fe.admin_port)} accepts connections "
            f"from {other}"
        )
    if public is not None and public_rc != 0:
        _fail(
            f"{frontend}: cannot tell whether the admin port is closed: {other} cannot "
            f"reach the service port {host_port(fe.address, public.port)} either"
        )


def test_apache_balancer_manager_local_only(apache_frontend: str, conn: Connections) -> None:
    """balancer-manager listens on 127.0.0.1 only, and answers there only with the token."""
    name = apache_frontend
    port = _fe(conn, name).admin_port
    with reach(name):
        host = conn.frontend(name)
        sockets = host.socket.get_listening_sockets()
        status, _, err = http_probe(host, f"http://127.0.0.1:{port}/balancer-manager", "Server")
    if not listening(sockets, Listener("127.0.0.1", port)):
        _fail(f"{name}: balancer-manager is not listening on 127.0.0.1:{port}")
    if listening(sockets, Listener("*", port)):
        _fail(f"{name}: port {port} listens on every address, not only 127.0.0.1")
    # Up, and refusing a caller without clusterctl's token (kept root-only on the host).
    if status != 403:
        _fail(
            f"{name}: balancer-manager on 127.0.0.1:{port} answered {status or err} to a "
            "request without clusterctl's token (403 expected)"
        )


# ------------------------------------------------------------------------------ backends


def test_backend_health_and_release(
    backend: str, conn: Connections, request: pytest.FixtureRequest
) -> None:
    """The node answers its health URL (asked on the node itself), with the expected release."""
    b = _be(conn, backend)
    with reach(backend):
        status, release, err = http_probe(conn.backend(backend), b.health_url, b.version_header)
    request.node.user_properties.append((RELEASE_PROPERTY, release or "unknown"))
    if status != b.expect:
        said = f"{status}" if status else f"nothing ({err or 'no answer'})"
        _fail(f"{backend}: {b.health_url} answered {said}; expected {b.expect}")
    want = conn.targets.settings.release
    if want is not None and release != want:
        _fail(f"{backend}: serves release {release or 'unknown'}, expected {want}")
