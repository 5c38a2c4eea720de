"""One driver per front-end kind."""

from __future__ import annotations

from clusterctl.drivers.apache import ApacheDriver
from clusterctl.drivers.base import Driver
from clusterctl.drivers.haproxy import HAProxyDriver
from clusterctl.drivers.nginx import NginxDriver

DRIVERS: dict[str, Driver] = {d.kind: d for d in (HAProxyDriver(), NginxDriver(), ApacheDriver())}


def driver_for(kind: str) -> Driver:
    return DRIVERS[kind]
