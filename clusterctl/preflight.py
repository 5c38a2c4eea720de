"""Bind preflight: would the new config start on this host? Pure: rendered config against facts.

The kinds' validators do not answer that. `haproxy -c` and `apache2 -t` never bind, so a
listener on an address the host does not have passes them, and the reload then fails (HAProxy
keeps its old workers after pausing them; Apache's graceful restart exits). So before anything
is replaced, every address a listener binds must be one of the host's (or non-local binding is
enabled for its family), and every port must be free or held by the running server itself.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from clusterctl.drivers import driver_for
from clusterctl.facts import Network, Socket
from clusterctl.model.queries import host_port

WILDCARD = "*"


@dataclass(frozen=True, order=True)
class Bind:
    """One address and port the server binds: address "*" for every IPv4 address, else the
    address as the config writes it, without brackets."""

    address: str
    port: int

    def __str__(self) -> str:
        host = "0.0.0.0" if self.address == WILDCARD else self.address  # noqa: S104
        return host_port(host, self.port)


def _split(spec: str) -> Bind | None:
    spec = spec.split("@", 1)[-1]  # haproxy's ipv4@/ipv6@ prefixes
    if spec.isdigit():
        return Bind(WILDCARD, int(spec))
    if spec.startswith("["):
        host, _, port = spec[1:].partition("]:")
    else:
        host, _, port = spec.rpartition(":")
    if not port.isdigit():
        return None
    if host in ("", "*", "0.0.0.0"):  # noqa: S104
        host = WILDCARD
    return Bind(host, int(port))


def config_binds(kind: str, text: str) -> list[Bind]:
    """The TCP listeners of a rendered config (unix sockets and the like are not ours)."""
    rx = driver_for(kind).bind_rx
    if rx is None:
        return []
    found = (_split(m.group(1)) for m in rx.finditer(text))
    return sorted({b for b in found if b is not None})


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _is_local(address: str, net: Network) -> bool:
    ip = _ip(address)
    if ip is None or net.addresses is None or ip.is_unspecified:
        return True  # "::" is every address; one we cannot judge, the validator will
    for ifname, cidr in net.addresses:
        try:
            iface = ipaddress.ip_interface(cidr)
        except ValueError:
            continue
        # Every address of loopback's prefix is local (127.0.0.2 binds), elsewhere only its own.
        if iface.ip == ip or (ifname == "lo" and ip in iface.network):
            return True
    return net.nonlocal_bind[1 if ip.version == 6 else 0]


def _overlaps(bind: Bind, sock: Socket) -> bool:
    """Whether binding `bind` collides with the listening socket `sock` (same port)."""
    if bind.port != sock.port:
        return False
    held = sock.address
    if held == "*":  # an IPv6 socket that takes IPv4 too
        return True
    held_ip = _ip(held)
    if bind.address == WILDCARD:
        return held_ip is None or held_ip.version == 4
    want = _ip(bind.address)
    if want is None or held_ip is None:
        return bind.address == held.strip("[]")
    if want.version != held_ip.version:
        return False
    return held_ip.is_unspecified or want.is_unspecified or held_ip == want


def _holders(sock: Socket) -> str:
    if not sock.users:
        return "a process clusterctl cannot see"
    return ", ".join(f"{n} (pid {p})" for n, p in sorted(set(sock.users)))


def problems(kind: str, config: str, net: Network) -> list[str]:
    """Why `config` would not start on a host with `net`, one reason per listener; [] if none."""
    found: list[str] = []
    if net.addresses is not None:
        have = sorted({cidr.split("/", 1)[0] for _, cidr in net.addresses})
        for b in config_binds(kind, config):
            if b.address == WILDCARD or _is_local(b.address, net):
                continue
            family = "ipv6" if ":" in b.address else "ipv4"
            found.append(
                f"{b}: {b.address} is not an address of this host "
                f"(it has {', '.join(have)}; net.{family}.ip_nonlocal_bind is 0)"
            )
    if net.sockets is not None:
        for b in config_binds(kind, config):
            for sock in net.sockets:
                if not _overlaps(b, sock) or net.server_pids & {p for _, p in sock.users}:
                    continue
                found.append(
                    f"{b}: {sock.address}:{sock.port} is already in use by {_holders(sock)}"
                )
    return list(dict.fromkeys(found))


def named_dirs(kind: str, text: str) -> list[str]:
    """The folders a rendered config writes into (they must exist before it is loaded)."""
    rx = driver_for(kind).writes_rx
    if rx is None:
        return []
    found = set()
    for m in rx.finditer(text):
        path = m.group(1).strip("\"'")
        if path.startswith("/") and "/" in path[1:]:
            found.add(path.rsplit("/", 1)[0])
    return sorted(found)
