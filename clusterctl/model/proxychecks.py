"""Checks for the proxy features' values (metrics sources, HAProxy's log target).

Scalar checks like checks.py's, kept apart so that file stays about the values every kind
shares. Each returns the normalised value or raises CheckFailed; nothing here reads the model.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from clusterctl.model.checks import CheckFailed, _plain_text, show
from clusterctl.model.queries import host_port

# Loopback only: a metrics listener tells anyone who can reach it how busy every pool is.
LOOPBACK_SOURCES = ("127.0.0.0/8", "::1/128")


def source(value: Any) -> str:
    """An address or network (CIDR) a metrics listener accepts requests from."""
    s = _plain_text(value)
    if "%" in s:
        raise CheckFailed(f"{show(s)}: IPv6 zone indexes like %eth0 are not supported")
    try:
        return str(ipaddress.ip_network(s, strict=True))
    except ValueError:
        pass
    try:
        near = ipaddress.ip_network(s, strict=False)
    except ValueError:
        raise CheckFailed(
            f"{show(s)} is not an IP address or network (e.g. 127.0.0.1 or 192.0.2.0/24)"
        ) from None
    raise CheckFailed(f"{show(s)} has host bits set; write the network {str(near)!r}")


def sources(value: Any) -> tuple[str, ...]:
    """A non-empty list of addresses or networks."""
    if not isinstance(value, list) or not value:
        raise CheckFailed("expected a non-empty list of addresses or networks (e.g. [127.0.0.1])")
    return tuple(source(v) for v in value)


_SOCKET = re.compile(r"/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
_HOSTPORT = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):([0-9]{1,5})")


def syslog(value: Any) -> str:
    """Where HAProxy sends its logs: a Unix datagram socket (/dev/log) or IP:port over UDP."""
    s = _plain_text(value)
    if _SOCKET.fullmatch(s) and ".." not in s.split("/"):
        return s
    m = _HOSTPORT.fullmatch(s)
    if m:
        host = m.group(1) or m.group(2)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        port = int(m.group(3))
        if ip is not None and (ip.version == 6) == bool(m.group(1)) and 1 <= port <= 65535:
            return host_port(str(ip), port)
    raise CheckFailed(
        f"{show(s)} is not a syslog target: a Unix socket path (/dev/log) or an IP and a UDP "
        "port (127.0.0.1:514, [::1]:514)"
    )
