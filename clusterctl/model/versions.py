"""Server versions: what each front end runs decides which syntax it gets."""

from __future__ import annotations

from clusterctl.model.schema import Frontend

# What Debian 12 ships: the version to render for when the inventory names none.
DEFAULT_VERSION = {"haproxy": (2, 6), "nginx": (1, 22, 1), "apache": (2, 4, 62)}
# Open-source nginx gained `sticky cookie` and the `drain` server flag in 1.29.6.
NGINX_STICKY_COOKIE = (1, 29, 6)


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def kind_version(fe: Frontend) -> tuple[int, ...]:
    return parse_version(fe.version) if fe.version else DEFAULT_VERSION[fe.kind]
