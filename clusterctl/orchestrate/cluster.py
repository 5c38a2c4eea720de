"""The cluster as a rollout, a drain or a restore sees it: open sessions, live states, node steps.

Every front end is told at once and every front end's outcome is kept: a step that fails on
two front ends names both, not only the first. Waits follow each front end on its own: a node
is drained once every front end has reached zero sessions, not only when all of them show zero
at the same moment, which steady sticky traffic may never allow.

A state change costs one round trip per front end, all at once, over the sessions the rollout
keeps open: the change, HAProxy's state file and the read of the front end's own view go as
one remote command (admin_views.set_state_read), starting from the last view that session
read; that read back is the wait's first look, so a node already idle (or already reported
up by the health checks) waits for nothing more.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from clusterctl.drivers.control import Live, ServerView
from clusterctl.execute import admin
from clusterctl.execute.admin_views import node_pools, read_live, set_state_read
from clusterctl.execute.apply import StepFailed
from clusterctl.execute.endpoints import frontend_endpoints, server_endpoints
from clusterctl.execute.group import run_group
from clusterctl.execute.ssh import Remote
from clusterctl.model.schema import Frontend, Inventory
from clusterctl.orchestrate import rerender
from clusterctl.ui import plural

PROGRESS_EVERY = 2.0  # seconds between progress events during a wait
# Between two looks at the front ends while waiting: each look is a round trip over the open
# sessions, so a short pause costs little and ends the wait soon after the state changed.
POLL = 0.05

# What a rollout event says about its step; `--output json` consumers match on these words.
EventStatus = Literal["start", "ok", "failed", "progress"]


@dataclass(frozen=True)
class Event:
    node: str
    # drain | wait | maint | deploy | check | restore | rollback | done | skip | failed | out
    # | summary (the last one: node "", data says what was upgraded, skipped, where it stopped)
    step: str
    status: EventStatus
    elapsed: float
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)  # when it happened (seconds since the epoch)


Emit = Callable[[Event], None]


def event_json(e: Event) -> str:
    """One JSON line; `time` is UTC with milliseconds (2026-12-01T23:59:01.250Z)."""
    fields = asdict(e)
    at = fields.pop("at")
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return json.dumps(
        {"time": stamp}
        | {k: (round(v, 3) if isinstance(v, float) else v) for k, v in fields.items()}
    )


class Cluster:
    """Open SSH sessions to every front end and every node of a rollout."""

    def __init__(self, inv: Inventory, stack: ExitStack) -> None:
        self.inv = inv
        self.frontends: dict[str, Remote] = {}
        fe_eps = frontend_endpoints(inv)
        opened = run_group(
            inv.frontends, lambda fe: fe.name, lambda fe: Remote.connect(fe_eps[fe.name])
        )
        for outcome in opened.outcomes:
            if outcome.value is not None:
                self.frontends[outcome.host] = stack.enter_context(outcome.value)
        opened.values()  # every front end that could not be reached, named together
        self._node_eps = server_endpoints(inv)
        self._nodes: dict[str, Remote] = {}
        self._stack = stack
        # Runtime states set by this process; nginx renders them all in one config, so changes
        # by re-render on one front end are serialised.
        self.states: dict[str, str] = {}
        self._guard = threading.Lock()
        self._fe_locks = {fe.name: threading.Lock() for fe in inv.frontends}
        # Each front end's runtime control, asked once: a rollout holds the lock, so nothing
        # re-renders it into another one meanwhile (and a control gone away fails its command).
        self._controls: dict[str, str] = {}
        # The last view each runtime front end reported over its session: a state change
        # starts from it (its pools, Apache's nonce) instead of reading first.
        self._lives: dict[str, Live] = {}

    def control(self, fe: Frontend, remote: Remote) -> str:
        how = self._controls.get(fe.name)
        if how is None:
            how = self._controls[fe.name] = admin.control(fe, remote)
        return how

    def views(self, fe: Frontend, remote: Remote) -> list[ServerView]:
        """One look at what the front end reports now (one round trip)."""
        how = self.control(fe, remote)
        if how == "rerender":
            return admin.views(remote, self.inv, fe, how)
        live = read_live(remote, fe)
        self._lives[fe.name] = live
        return list(live.views)

    def set_state(self, node: str, state: str) -> dict[str, list[ServerView]]:
        """`node` to `state` on every front end at once; each runtime front end's view after
        the change, read in the same round trip as the change (by front end name)."""
        with self._guard:
            self.states[node] = state
            others = {k: v for k, v in self.states.items() if k != node and v != "ready"}

        def one(fe: Frontend, remote: Remote) -> list[ServerView] | None:
            if not node_pools(self.inv, fe, node):
                return None
            if self.control(fe, remote) == "rerender":
                with self._fe_locks[fe.name]:
                    rerender.nginx_apply(remote, self.inv, fe, node, state, others)
                return None
            live = set_state_read(remote, fe, node, state, self._lives.get(fe.name))
            self._lives[fe.name] = live
            return list(live.views)

        seen = self.each_frontend(one)
        return {
            fe.name: views
            for fe, views in zip(self.inv.frontends, seen, strict=True)
            if views is not None
        }

    def node(self, name: str) -> Remote:
        # Batches upgrade nodes in parallel threads: one session per node, registered once.
        with self._guard:
            known = self._nodes.get(name)
        if known is not None:
            return known
        remote = Remote.connect(self._node_eps[name])
        with self._guard:
            self._nodes[name] = self._stack.enter_context(remote)
        return remote

    def reconnect(self, name: str) -> Remote:
        """A fresh session to a node whose session was lost (the old one is closed)."""
        with self._guard:
            old = self._nodes.pop(name, None)
        if old is not None:
            old.close()
        return self.node(name)

    def each_frontend(self, fn: Callable[[Frontend, Remote], Any]) -> list[Any]:
        """fn on every front end at once; every failure is reported, not only the first."""
        return run_group(
            self.inv.frontends, lambda fe: fe.name, lambda fe: fn(fe, self.frontends[fe.name])
        ).values()


@contextmanager
def open_cluster(inv: Inventory) -> Iterator[Cluster]:
    with ExitStack() as stack:
        yield Cluster(inv, stack)


def preflight(cluster: Cluster) -> None:
    """Every front end can take runtime changes now; checked before anything is changed."""
    inv = cluster.inv

    def one(fe: Frontend, remote: Remote) -> None:
        # A front end changed by re-rendering must run exactly this inventory's config.
        if cluster.control(fe, remote) == "rerender":
            rerender.checked(remote, inv, fe)

    cluster.each_frontend(one)


def live_out(cluster: Cluster) -> dict[str, str]:
    """Nodes that some front end reports out of service now (drain, maint or down), and where."""
    views = cluster.each_frontend(cluster.views)
    where: dict[str, list[str]] = {}
    for chunk in views:
        for v in chunk:
            why = v.state if v.state != "ready" else ("down" if v.health == "down" else "")
            if why:
                where.setdefault(v.server, [])
                label = f"{why} on {v.frontend}"
                if label not in where[v.server]:
                    where[v.server].append(label)
    return {node: ", ".join(labels) for node, labels in where.items()}


def _look(
    cluster: Cluster, seen: dict[str, list[ServerView]], fe: Frontend, remote: Remote
) -> list[ServerView]:
    """The front end's view: the one its state change read back, once, else a new look."""
    views = seen.pop(fe.name, None)
    return views if views is not None else cluster.views(fe, remote)


def wait_idle(
    cluster: Cluster,
    node: str,
    timeout: float,
    cut: bool,
    emit: Emit,
    step: str = "wait",
    seen: dict[str, list[ServerView]] | None = None,
) -> float:
    """Wait until every front end has reached zero requests in flight on the node.

    `seen`: views the state change read back (set_state); each is the first look at its
    front end, so a node already idle costs no round trip more."""
    inv = cluster.inv
    t1 = time.monotonic()
    pending = {fe.name for fe in inv.frontends}
    left: dict[str, int] = {}
    last_progress = t1
    first = dict(seen or {})

    def count(fe: Frontend, remote: Remote) -> int:
        if fe.name not in pending or not node_pools(inv, fe, node):
            return 0
        return admin.sessions_in(inv, fe, node, _look(cluster, first, fe, remote))

    while True:
        counts = cluster.each_frontend(count)
        left = {}
        for fe, n in zip(inv.frontends, counts, strict=True):
            if fe.name not in pending:
                continue
            if n == 0:
                pending.discard(fe.name)
            else:
                left[fe.name] = n
        now = time.monotonic()
        if not pending:
            emit(Event(node, step, "ok", now - t1, "no active sessions left"))
            return now - t1
        open_text = ", ".join(f"{fe} {n}" for fe, n in sorted(left.items()))
        if now - t1 > timeout:
            total = sum(left.values())
            if cut:
                emit(
                    Event(node, step, "ok", now - t1, f"cut {plural(total, 'straggling session')}")
                )
                return now - t1
            raise StepFailed(
                step, f"{plural(total, 'session')} still active after {timeout:.0f}s ({open_text})"
            )
        if now - last_progress >= PROGRESS_EVERY:
            last_progress = now
            emit(Event(node, step, "progress", now - t1, f"sessions still open: {open_text}"))
        time.sleep(POLL)


def drain(cluster: Cluster, node: str, timeout: float, cut: bool, emit: Emit) -> float:
    """Drain on every front end at once, then wait for its sessions to end."""
    t0 = time.monotonic()
    emit(Event(node, "drain", "start", 0.0))
    seen = cluster.set_state(node, "drain")
    emit(Event(node, "drain", "ok", time.monotonic() - t0))
    return wait_idle(cluster, node, timeout, cut, emit, seen=seen)


def maint(cluster: Cluster, node: str, timeout: float, cut: bool, emit: Emit) -> float:
    """No request at all, sticky ones included; wait for any that slipped in."""
    emit(Event(node, "maint", "start", 0.0))
    seen = cluster.set_state(node, "maint")
    return wait_idle(cluster, node, timeout, cut, emit, "maint", seen)


def restore(
    cluster: Cluster, node: str, emit: Emit, timeout: float = 60.0, state: str = "ready"
) -> None:
    """Back to `state` on every front end; for ready, wait until each reports the node up.

    The wait follows what each front end's own health check says (admin.up_in): the first
    look is the view read back with the change, then one look at every front end each POLL
    seconds; it ends at the first look where every one has it up."""
    inv = cluster.inv
    t0 = time.monotonic()
    emit(Event(node, "restore", "start", 0.0, "" if state == "ready" else f"back to {state}"))
    seen = cluster.set_state(node, state)

    def up(fe: Frontend, remote: Remote) -> bool:
        return not node_pools(inv, fe, node) or admin.up_in(_look(cluster, seen, fe, remote), node)

    while state == "ready":
        ups = cluster.each_frontend(up)
        if all(ups):
            break
        if time.monotonic() - t0 > timeout:
            down = [fe.name for fe, ok in zip(inv.frontends, ups, strict=True) if not ok]
            raise StepFailed(
                "restore", f"not reported up by {', '.join(down)} after {timeout:.0f}s"
            )
        time.sleep(POLL)
    emit(Event(node, "restore", "ok", time.monotonic() - t0))
