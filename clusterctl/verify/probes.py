"""Probes run on a checked host through testinfra (a TCP connect, an HTTP GET, a listener), and
how a check fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from clusterctl.errors import HostUnreachable

if TYPE_CHECKING:
    from clusterctl.verify.targets import Listener


def tcp_connect(host: Any, address: str, port: int, timeout: int = 5) -> int:
    """Exit status of a TCP connect from `host`: 0 connected, else refused/unreachable/timeout."""
    res = host.run(
        "timeout %s bash -c %s %s %s",
        str(timeout),
        'exec 3<>"/dev/tcp/$0/$1"',
        address,
        str(port),
    )
    return int(res.rc)


def http_probe(host: Any, url: str, header: str) -> tuple[int, str | None, str]:
    """(status, value of `header`, error) of GET `url` asked on `host` itself."""
    res = host.run("curl -sS --max-time 5 -o /dev/null -D - -- %s", url)
    status = 0
    value = None
    want = header.lower() + ":"
    for line in res.stdout.splitlines():
        if line.startswith("HTTP/"):
            parts = line.split()
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        elif line.lower().startswith(want):
            value = line.split(":", 1)[1].strip()
    return status, value, res.stderr.strip()


def listening(sockets: list[str], want: Listener) -> bool:
    """Whether `want` is served by one of testinfra's listening sockets (tcp://ADDR:PORT)."""
    found = set()
    for s in sockets:
        if not s.startswith("tcp://"):
            continue
        addr, _, port = s[len("tcp://") :].rpartition(":")
        if port.isdigit():
            found.add((addr.strip("[]"), int(port)))
    wildcard = {("0.0.0.0", want.port), ("::", want.port)}  # noqa: S104 - a listening socket
    if want.address == "*":
        return bool(found & wildcard)
    if (want.address, want.port) in found:
        return True
    family_any = ("::", want.port) if ":" in want.address else ("0.0.0.0", want.port)  # noqa: S104
    return family_any in found or ("::", want.port) in found


def fail(message: str) -> NoReturn:
    """Fail the check with one message and no traceback (no local variable is ever shown)."""
    pytest.fail(message, pytrace=False)


@contextmanager
def reach(name: str) -> Iterator[None]:
    """A host ssh cannot run commands on fails the check in one line naming it."""
    try:
        yield
    except HostUnreachable as exc:
        raise pytest.fail.Exception(f"{name}: {exc}", pytrace=False) from None
