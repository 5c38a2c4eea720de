"""Which nodes a rollout or a drain takes out, and when: pure, from the inventory and live states.

The floor (`deploy.min_available`) is counted against the nodes that serve *now*: a node the
front ends report drained, in maint or down is out, whatever the inventory says, and so is a
node the inventory declares drained or in maint. Every refusal says what would fix it.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from clusterctl.errors import ClusterctlError
from clusterctl.errors import FloorError as FloorError
from clusterctl.model.queries import find_server as find_server
from clusterctl.model.queries import rollout_pools as rollout_pools
from clusterctl.model.schema import Inventory, Pool, Server
from clusterctl.ui import plural

# node -> why it is out of service now ("maint on lb1", "drain in the inventory")
Out = Mapping[str, str]


@dataclass
class Options:
    version: str
    pools: list[str] | None = None
    batch: str | None = None  # None: the inventory's deploy.batch
    drain_timeout: float | None = None
    cut: bool = False
    resume: bool = False
    nodes: list[str] | None = None  # only these nodes (of the pools above); None: all
    force: bool = False  # deploy even on nodes that serve the version already
    skip: frozenset[str] = frozenset()  # nodes found serving the version already


def selected_nodes(nodes: Mapping[str, Server], wanted: list[str]) -> list[str]:
    """`--limit` names among the nodes the rollout covers; an unknown or blank one is an error."""
    names = [n.strip() for n in wanted if n.strip()]
    known = ", ".join(sorted(nodes))
    if not names:
        raise ClusterctlError(f"--limit names nothing; name one or more of: {known}")
    unknown = [n for n in names if n not in nodes]
    if unknown:
        raise ClusterctlError(
            f"--limit names {'a node' if len(unknown) == 1 else 'nodes'} this rollout does not "
            f"cover: {', '.join(unknown)} (its nodes: {known})"
        )
    return list(dict.fromkeys(names))


def batch_size(spec: str, total: int) -> int:
    try:
        if spec.endswith("%"):
            pct = float(spec[:-1])
            if not 0 < pct <= 100:
                raise ValueError
            return max(1, math.floor(total * pct / 100))
        n = int(spec)
        if n < 1:
            raise ValueError
        return n
    except ValueError:
        raise ClusterctlError(
            f"--batch {spec!r} must be a count (1, 2) or a percentage (25%)"
        ) from None


def declared_out(inv: Inventory) -> dict[str, str]:
    """Nodes the inventory itself keeps out of service."""
    return {
        s.name: f"{s.state} in the inventory"
        for p in inv.pools
        for s in p.servers
        if s.state != "ready"
    }


def _inv_arg(inv: Inventory) -> str:
    return shlex.quote(inv.source) if inv.source else "INVENTORY.yaml"


def floor_problem(inv: Inventory, taking: Iterable[str], out: Out) -> tuple[Pool, int] | None:
    """The first pool that `taking` out (with `out` already out) leaves below the floor."""
    names = set(taking)
    floor = inv.deploy.min_available
    for p in inv.pools:
        # Every pool that holds a node taken out counts, also pools outside the selection.
        if not names & {s.name for s in p.servers}:
            continue
        serving = [
            s for s in p.servers if not s.backup and s.name not in names and s.name not in out
        ]
        if len(serving) < floor:
            return p, len(serving)
    return None


def _out_in(pool: Pool, out: Out, taking: set[str]) -> str:
    gone = [
        f"{s.name} ({out[s.name]})" for s in pool.servers if s.name in out and s.name not in taking
    ]
    return f"; already out: {', '.join(gone)}" if gone else ""


def check_floor(
    inv: Inventory, taking: Iterable[str], out: Out, *, fix: str, batch: int = 1, hint: str = ""
) -> None:
    """Refuse to take `taking` out when a pool would drop below deploy.min_available.

    `fix` is the flag that overrides the check for this command (drain's --force); `hint` is
    the better advice when there is one (a smaller --batch that keeps the floor).
    """
    names = sorted(set(taking))
    found = floor_problem(inv, names, out)
    if found is None:
        return
    pool, serving = found
    floor = inv.deploy.min_available
    head = (
        f"{'a batch of ' if batch > 1 else ''}{', '.join(names)} would leave pool {pool.name} "
        f"with {plural(serving, 'serving node')}{_out_in(pool, out, set(names))}, below "
        f"deploy.min_available {floor}"
    )
    if hint:
        raise FloorError(f"{head}; {hint}")
    restorable = [s.name for s in pool.servers if s.name in out and s.name not in names]
    advice = []
    if restorable:
        advice.append(
            f"put a node back first: clusterctl restore -i {_inv_arg(inv)} {restorable[0]}"
        )
    advice.append(f"lower deploy.min_available in {_inv_arg(inv)}")
    if fix:
        # A whole command ("clusterctl drain -i inv.yaml web1 --force") is run, a flag passed.
        verb = "run" if fix.startswith("clusterctl ") else "pass"
        advice.append(f"{verb} {fix} to go below the floor knowingly")
    raise FloorError(f"{head}; {'; or '.join(advice)}")


def _first_failure(
    inv: Inventory, batches: list[list[Server]], out: Out
) -> tuple[list[str], dict[str, str]] | None:
    """The first batch that breaks the floor, with what is out at that point; None if none.

    A node is counted out until its own batch restores it, unless the inventory keeps it out.
    """
    declared = declared_out(inv)
    now = dict(out)
    for batch in batches:
        names = [s.name for s in batch]
        if floor_problem(inv, names, now) is not None:
            return names, now
        for n in names:
            if n not in declared:
                now.pop(n, None)
    return None


def plan_batches(inv: Inventory, opts: Options, out: Out | None = None) -> list[list[Server]]:
    """Nodes in batches that never take any pool below deploy.min_available serving nodes.

    Nodes already out of service (live, or by the inventory) go first: upgrading them costs no
    capacity.
    """
    out = declared_out(inv) if out is None else out
    pools = rollout_pools(inv, opts.pools)
    nodes: dict[str, Server] = {}
    for p in pools:
        for s in p.servers:
            nodes.setdefault(s.name, s)
    if opts.nodes is not None:
        nodes = {n: nodes[n] for n in selected_nodes(nodes, opts.nodes)}
    nodes = {n: s for n, s in nodes.items() if n not in opts.skip}
    order = sorted(nodes.values(), key=lambda s: s.name not in out)
    if not order:
        return []
    size = batch_size(opts.batch or str(inv.deploy.batch), len(order))
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    failed = _first_failure(inv, batches, out)
    if failed is not None:
        names, now = failed
        one_by_one = size > 1 and _first_failure(inv, [[s] for s in order], out) is None
        hint = "use a smaller --batch (--batch 1 keeps the floor)" if one_by_one else ""
        check_floor(inv, names, now, fix="", batch=len(names), hint=hint)
    return batches
