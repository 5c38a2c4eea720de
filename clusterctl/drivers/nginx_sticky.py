"""Sticky sessions on nginx before 1.29.6 without the Lua balancer (a host that lacks
libnginx-mod-http-lua; with it, nginx_lua.py pins by the same cookie), in the cookie format
HAProxy and Apache share.

Every kind pins a client with the cookie `<name>=.<server>`: Apache's stickysession reads
the route after the first dot, HAProxy matches the value it gave the server. Open-source
nginx before 1.29.6 has no sticky directive, so the config does the pinning itself: each
server gets an upstream of its own (the server, then the pool's other ready servers as
backups, so a down server's clients are still served), a map turns the cookie into that
upstream, and split_clients (by weight, over the ready servers) picks one for a client
without a valid cookie, which the response then tells the client in the same format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clusterctl.model.schema import Pool, Server


@dataclass(frozen=True)
class StickyPlan:
    index: int
    # server name -> the members of its own upstream: (server, is a backup there)
    upstreams: tuple[tuple[str, tuple[tuple[Server, bool], ...]], ...]
    # split_clients lines for a client without a valid cookie: (share, server name)
    split: tuple[tuple[str, str], ...]


def split_shares(servers: list[Server]) -> tuple[tuple[str, str], ...]:
    """Shares of new clients by weight, as split_clients percentages; the last takes the rest.

    Rounded down to hundredths so the listed shares never pass 100%.
    """
    total = sum(s.weight for s in servers)
    out = [(f"{s.weight * 10000 // total / 100:.2f}%", s.name) for s in servers[:-1]]
    return (*out, ("*", servers[-1].name)) if servers else ()


def sticky_plan(pool: Pool, index: int) -> StickyPlan:
    """The per-server upstreams and the split for `pool` (which has a sticky cookie)."""
    ready = [s for s in pool.servers if s.state == "ready"]
    fresh = [s for s in ready if not s.backup] or ready
    upstreams = []
    for s in pool.servers:
        if s.state == "maint":
            continue  # its cookie pins nothing: such a client is placed afresh
        others = [o for o in ready if o is not s]
        # Primaries before the pool's backups, both only as this server's fallbacks.
        fallbacks = [o for o in others if not o.backup] + [o for o in others if o.backup]
        upstreams.append((s.name, ((s, False), *((o, True) for o in fallbacks))))
    return StickyPlan(index, tuple(upstreams), split_shares(fresh))
