"""One driver per front-end kind."""

from __future__ import annotations

from clusterctl.drivers.apache import ApacheDriver
from clusterctl.drivers.base import Driver
from clusterctl.drivers.haproxy import HAProxyDriver
from clusterctl.drivers.keepalived import KeepalivedDriver
from clusterctl.drivers.nginx import NginxDriver

DRIVERS: dict[str, Driver] = {d.kind: d for d in (HAProxyDriver(), NginxDriver(), ApacheDriver())}
DRIVERS["keepalived"] = KeepalivedDriver()


def driver_for(kind: str) -> Driver:
    """The driver of a kind; an unknown kind is an error, never another kind's path."""
    try:
        return DRIVERS[kind]
    except KeyError:
        from clusterctl.errors import ClusterctlError

        known = ", ".join(sorted(DRIVERS))
        raise ClusterctlError(f"unknown front-end kind {kind!r} (known: {known})") from None
