"""The inventory model: schema, loading with positions, and cross-checks."""

from clusterctl.model.loader import load, parse, resolve_local
from clusterctl.model.schema import (
    SSH,
    TLS,
    Deploy,
    Frontend,
    Health,
    Inventory,
    Listen,
    Pool,
    Route,
    Server,
    Service,
    Sticky,
)

__all__ = [
    "SSH",
    "TLS",
    "Deploy",
    "Frontend",
    "Health",
    "Inventory",
    "Listen",
    "Pool",
    "Route",
    "Server",
    "Service",
    "Sticky",
    "load",
    "parse",
    "resolve_local",
]
