"""Server versions: what each front end runs decides which syntax it gets."""

from __future__ import annotations

from clusterctl.model.schema import Frontend

# Open-source nginx gained `sticky cookie` and the `drain` server flag in 1.29.6.
NGINX_STICKY_COOKIE = (1, 29, 6)


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def kind_version(fe: Frontend) -> tuple[int, ...]:
    """The version to render for: the inventory's, else the driver's default."""
    if fe.version:
        return parse_version(fe.version)
    from clusterctl.drivers import driver_for  # the drivers import this module

    return driver_for(fe.kind).default_version
