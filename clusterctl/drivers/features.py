"""What the proxy features add to every kind's view and files: WebSocket tunnels, the
unavailable page, the metrics listener and the access log.

Each template prints these values its own way (templates/*/features*.j2); this module only
turns the model into them, so the three kinds agree on what each feature means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clusterctl.files import File
from clusterctl.model.semantics import frontend_services, service_pools

if TYPE_CHECKING:
    from clusterctl.drivers.base import Driver
    from clusterctl.model.schema import Frontend, Inventory

# The page a service shows when none is given: plain, so it says nothing about the site.
DEFAULT_PAGE = (
    b'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>503 Service Unavailable'
    b"</title></head>\n<body><h1>Service Unavailable</h1>\n"
    b"<p>The service is down for maintenance or overloaded. Please try again shortly.</p>\n"
    b"</body></html>\n"
)
# The URL the page is served under on nginx and Apache, inside the site's own URL space: a
# name no application uses, and only for the internal redirect of an error (nginx: internal).
PAGE_URL = "/.clusterctl-unavailable.html"


def page_path(driver: Driver, fe: Frontend, service: str) -> str:
    """Where a service's unavailable page lives on the host: beside the config."""
    return f"{driver.paths(fe).config.rsplit('/', 1)[0]}/clusterctl-pages/{service}.html"


def view(inv: Inventory, fe: Frontend, driver: Driver, root: str) -> dict[str, Any]:
    """The values the templates print for the features, merged into the driver's view."""
    services = [s for s in frontend_services(inv, fe) if s.mode == "http"]
    tunnel: dict[str, int] = {}
    for svc in frontend_services(inv, fe):
        for pool in service_pools(inv, svc):
            tunnel[pool.name] = max(tunnel.get(pool.name, 0), svc.timeouts.tunnel)
    return {
        "tunnel": tunnel,
        "pages": {
            s.name: {
                "path": root + page_path(driver, fe, s.name),
                "retry_after": max(1, -(-s.unavailable.retry_after // 1000)),
            }
            for s in services
        },
        "page_url": PAGE_URL,
        "maintenance": sorted(p.name for p in inv.pools if p.maintenance),
        "metrics": fe.metrics,
        "syslog": fe.syslog,
    }


def files(inv: Inventory, fe: Frontend, driver: Driver) -> dict[str, File]:
    """The unavailable pages of the front end's http services."""
    out: dict[str, File] = {}
    for svc in frontend_services(inv, fe):
        if svc.mode != "http":
            continue
        ref = svc.unavailable.page
        content = inv.files.get(ref, DEFAULT_PAGE) if ref else DEFAULT_PAGE
        out[page_path(driver, fe, svc.name)] = File(content)
    return out
