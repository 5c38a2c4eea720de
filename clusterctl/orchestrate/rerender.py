"""A node's state changed by re-rendering: plan with these state overrides, then apply.

nginx without its Lua balancer has no runtime interface: a drained node is a node rendered
`down` (or `drain`) in the config nginx runs, put live by a graceful reload. That is not a
runtime command but a whole apply (gather, plan, apply), so it lives here, above execution:
execute/admin.py only reads what such a front end runs and counts its connections.
"""

from __future__ import annotations

import dataclasses
import shlex

from clusterctl.drivers import driver_for
from clusterctl.execute.admin import AdminError, nginx_live_states
from clusterctl.execute.apply import apply_host
from clusterctl.execute.gather import gather
from clusterctl.execute.ssh import Remote
from clusterctl.facts import HostFacts, LiveFile
from clusterctl.model.schema import Frontend, Inventory
from clusterctl.plan import plan_host
from clusterctl.render import render_frontend


def with_states(inv: Inventory, states: dict[str, str]) -> Inventory:
    """The inventory with some nodes' admin states changed in every pool: a pure override."""
    pools = tuple(
        dataclasses.replace(
            p,
            servers=tuple(
                dataclasses.replace(s, state=states[s.name]) if s.name in states else s
                for s in p.servers
            ),
        )
        for p in inv.pools
    )
    return dataclasses.replace(inv, pools=pools)


def _live_config(files: dict[str, LiveFile], fe: Frontend) -> bytes | None:
    live = files.get(driver_for(fe.kind).paths(fe).config)
    return live.content if live is not None and live.exists else None


def nginx_drift(inv: Inventory, fe: Frontend, facts: HostFacts, live: dict[str, str]) -> list[str]:
    """Files nginx runs that this inventory, with the live server states, would change."""
    return [c.path for c in plan_host(with_states(inv, live), fe, facts).changes]


def checked(remote: Remote, inv: Inventory, fe: Frontend) -> tuple[HostFacts, dict[str, str]]:
    """The host's facts and live states, once the live config is known to be this inventory's."""
    secret = {p: f.secret for p, f in render_frontend(inv, fe).items()}
    facts = gather(remote, fe, secret)
    live = nginx_live_states(inv, fe, _live_config(facts.files, fe))
    drift = nginx_drift(inv, fe, facts, live)
    if drift:
        src = shlex.quote(inv.source) if inv.source else "INVENTORY.yaml"
        raise AdminError(
            f"{fe.name}: nginx runs a config that this inventory would change beyond server "
            f"states ({', '.join(drift)}); a drain puts no unreviewed change live: review and "
            f"apply it first: clusterctl plan -i {src} --limit {fe.name}"
        )
    return facts, live


def nginx_apply(
    remote: Remote, inv: Inventory, fe: Frontend, node: str, state: str, others: dict[str, str]
) -> None:
    """Re-render with `node` in `state` and reload gracefully; nothing else may change.

    Every other node keeps the state nginx runs it in now (a node drained by an earlier
    `clusterctl drain` stays drained), then `others` (states this process set) on top. The live
    config must be what this inventory renders with those states: a drain never puts an
    unreviewed change live, so when they differ the drain is refused with a pointer to plan.
    """
    facts, live = checked(remote, inv, fe)
    runtime = {n: st for n, st in live.items() if n != node}
    wanted = with_states(inv, {**runtime, **others, node: state})
    result = apply_host(remote, wanted, fe, plan_host(wanted, fe, facts))
    if result.status not in ("changed", "unchanged"):
        raise AdminError(
            f"{fe.name}: nginx reload with the new server state failed: {result.message}"
        )
