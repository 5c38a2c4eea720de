"""Rolling upgrade: for each batch of nodes, drain -> wait -> maint -> deploy -> check -> restore.

Every front end is told at once; a pool never drops below the floor; any failure stops the
rollout where it is with every other node serving, and the report names the node, the step and
the reason. Progress is recorded on the lock host so `--resume` continues where it stopped.

Drain stops new sessions but HAProxy and Apache still send a drained node the clients pinned to
it by their sticky cookie; once its requests are done the node goes to maint (no request at all,
pinned clients move to another node), so the new release is checked before any user sees it.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clusterctl.errors import ClusterctlError
from clusterctl.execute import admin
from clusterctl.execute.apply import StepFailed
from clusterctl.execute.deploy import check_version, private_check, probe_node, run_deploy
from clusterctl.execute.endpoints import frontend_endpoints, server_endpoints
from clusterctl.execute.ssh import Remote
from clusterctl.facts import STATE_DIR
from clusterctl.model.schema import Frontend, Inventory, Pool, Server
from clusterctl.model.semantics import service_pools


def state_file(cluster: str) -> str:
    """Where a rollout records its progress on the lock host: one file per cluster, so two
    inventories whose front ends share a host never resume from each other's record."""
    return f"{STATE_DIR}/rollout/{cluster}.json"


class RolloutFailed(ClusterctlError):
    def __init__(
        self, node: str, step: str, reason: str, drained: bool, held: str = "drain"
    ) -> None:
        self.node, self.step, self.reason, self.drained = node, step, reason, drained
        self.held = held if drained else "ready"
        if not drained:
            left = f"{node} keeps serving"
        elif held == "maint":
            left = f"{node} is still in maint"
        else:
            left = f"{node} is still drained"
        super().__init__(f"rollout stopped at {node}, step {step}: {reason}; {left}")


@dataclass(frozen=True)
class Event:
    node: str
    step: str  # drain | wait | maint | deploy | check | restore | rollback | done | skip | failed
    status: str  # start | ok | failed
    elapsed: float
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


Emit = Callable[[Event], None]


@dataclass
class Options:
    version: str
    pools: list[str] | None = None
    batch: str | None = None  # None: the inventory's deploy.batch
    drain_timeout: float | None = None
    cut: bool = False
    resume: bool = False


@dataclass
class NodeTimes:
    node: str
    total: float = 0.0
    deploy: float = 0.0
    drain_wait: float = 0.0


@dataclass
class Report:
    version: str
    upgraded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    times: list[NodeTimes] = field(default_factory=list)


def find_server(inv: Inventory, name: str) -> Server:
    for p in inv.pools:
        for s in p.servers:
            if s.name == name:
                return s
    known = sorted({s.name for p in inv.pools for s in p.servers})
    raise ClusterctlError(f"no backend server named {name!r} (known: {', '.join(known)})")


def rollout_pools(inv: Inventory, names: list[str] | None) -> list[Pool]:
    """The pools whose nodes a rollout upgrades: named ones, or those behind http services."""
    if names:
        known = {p.name: p for p in inv.pools}
        missing = [n for n in names if n not in known]
        if missing:
            raise ClusterctlError(f"--pool names unknown pool(s) {', '.join(missing)}")
        return [known[n] for n in names]
    seen: dict[str, Pool] = {}
    for svc in inv.services:
        if svc.mode == "http":
            for p in service_pools(inv, svc):
                seen.setdefault(p.name, p)
    return list(seen.values())


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


def plan_batches(inv: Inventory, opts: Options) -> list[list[Server]]:
    """Nodes in batches that never take any pool below deploy.min_available serving nodes."""
    pools = rollout_pools(inv, opts.pools)
    nodes: dict[str, Server] = {}
    for p in pools:
        for s in p.servers:
            nodes.setdefault(s.name, s)
    order = list(nodes.values())
    size = batch_size(opts.batch or str(inv.deploy.batch), len(order))
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    floor = inv.deploy.min_available
    for batch in batches:
        names = {s.name for s in batch}
        # Every pool that holds a node of the batch, also pools outside the selection:
        # nodes shared between pools count against each of them.
        for p in inv.pools:
            if not names & {s.name for s in p.servers}:
                continue
            serving = [
                s for s in p.servers if not s.backup and s.state == "ready" and s.name not in names
            ]
            if len(serving) < floor:
                raise ClusterctlError(
                    f"a batch of {', '.join(sorted(names))} would leave pool {p.name} with "
                    f"{len(serving)} serving node(s), below deploy.min_available {floor}; "
                    f"use a smaller --batch"
                )
    return batches


class Cluster:
    """Open SSH sessions to every front end and every node of a rollout."""

    def __init__(self, inv: Inventory, stack: ExitStack) -> None:
        self.inv = inv
        self.frontends: dict[str, Remote] = {}
        fe_eps = frontend_endpoints(inv)
        with ThreadPoolExecutor(max_workers=16) as pool:
            remotes = list(pool.map(lambda fe: Remote.connect(fe_eps[fe.name]), inv.frontends))
        for fe, remote in zip(inv.frontends, remotes, strict=True):
            self.frontends[fe.name] = stack.enter_context(remote)
        self._node_eps = server_endpoints(inv)
        self._nodes: dict[str, Remote] = {}
        self._stack = stack
        # Runtime states set by this rollout; nginx renders them all in one config, so changes
        # on one front end are serialised.
        self.states: dict[str, str] = {}
        self._guard = threading.Lock()
        self._fe_locks = {fe.name: threading.Lock() for fe in inv.frontends}

    def set_state(self, node: str, state: str) -> None:
        with self._guard:
            self.states[node] = state
            others = {k: v for k, v in self.states.items() if k != node and v != "ready"}

        def one(fe: Frontend, remote: Remote) -> None:
            with self._fe_locks[fe.name]:
                admin.set_state(remote, self.inv, fe, node, state, others)

        self.each_frontend(one)

    def node(self, name: str) -> Remote:
        # Batches upgrade nodes in parallel threads: one session per node, registered once.
        if name not in self._nodes:
            remote = Remote.connect(self._node_eps[name])
            with self._guard:
                self._nodes[name] = self._stack.enter_context(remote)
        return self._nodes[name]

    def each_frontend(self, fn: Callable[[Frontend, Remote], Any]) -> list[Any]:
        fes = list(self.inv.frontends)
        with ThreadPoolExecutor(max_workers=max(1, len(fes))) as pool:
            return list(pool.map(lambda fe: fn(fe, self.frontends[fe.name]), fes))


@contextmanager
def open_cluster(inv: Inventory) -> Iterator[Cluster]:
    with ExitStack() as stack:
        yield Cluster(inv, stack)


def wait_idle(
    cluster: Cluster, node: str, timeout: float, cut: bool, emit: Emit, step: str = "wait"
) -> float:
    """Wait until no front end has a request in flight on the node; the seconds waited."""
    inv = cluster.inv
    t1 = time.monotonic()
    while True:
        counts = cluster.each_frontend(lambda fe, r: admin.node_sessions(r, inv, fe, node))
        left = sum(counts)
        if left == 0:
            waited = time.monotonic() - t1
            emit(Event(node, step, "ok", waited, "no active sessions left"))
            return waited
        if time.monotonic() - t1 > timeout:
            if cut:
                waited = time.monotonic() - t1
                emit(Event(node, step, "ok", waited, f"cut {left} straggling session(s)"))
                return waited
            raise StepFailed(step, f"{left} session(s) still active after {timeout:.0f}s")
        time.sleep(0.25)


def drain(cluster: Cluster, node: str, timeout: float, cut: bool, emit: Emit) -> float:
    """Steps 1 and 2: drain on every front end at once, then wait for its sessions to end."""
    t0 = time.monotonic()
    emit(Event(node, "drain", "start", 0.0))
    cluster.set_state(node, "drain")
    emit(Event(node, "drain", "ok", time.monotonic() - t0))
    return wait_idle(cluster, node, timeout, cut, emit)


def maint(cluster: Cluster, node: str, timeout: float, cut: bool, emit: Emit) -> float:
    """Step 3: no request at all, sticky ones included; wait for any that slipped in."""
    emit(Event(node, "maint", "start", 0.0))
    cluster.set_state(node, "maint")
    return wait_idle(cluster, node, timeout, cut, emit, "maint")


def restore(cluster: Cluster, node: str, emit: Emit, timeout: float = 60.0) -> None:
    """Step 5: ready on every front end, then wait until each reports the node up."""
    inv = cluster.inv
    t0 = time.monotonic()
    emit(Event(node, "restore", "start", 0.0))
    cluster.set_state(node, "ready")
    while True:
        ups = cluster.each_frontend(lambda fe, r: admin.node_up(r, inv, fe, node))
        if all(ups):
            emit(Event(node, "restore", "ok", time.monotonic() - t0))
            return
        if time.monotonic() - t0 > timeout:
            down = [fe.name for fe, up in zip(inv.frontends, ups, strict=True) if not up]
            raise StepFailed(
                "restore", f"not reported up by {', '.join(down)} after {timeout:.0f}s"
            )
        time.sleep(0.25)


def _save_state(cluster: Cluster, state: dict[str, Any]) -> None:
    lock_host = cluster.frontends[cluster.inv.frontends[0].name]
    lock_host.sh(
        r'mkdir -p -- "$(dirname -- "$1")" && printf "%s\n" "$2" > "$1.tmp" && mv -f -- "$1.tmp" "$1"',
        state_file(cluster.inv.cluster),
        json.dumps({"cluster": cluster.inv.cluster, **state}, indent=2),
    )


def load_state(cluster: Cluster) -> dict[str, Any] | None:
    lock_host = cluster.frontends[cluster.inv.frontends[0].name]
    res = lock_host.sh('cat -- "$1" 2>/dev/null', state_file(cluster.inv.cluster))
    try:
        data = json.loads(res.out) if res.out.strip() else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _reason(exc: ClusterctlError) -> str:
    text = str(exc)
    return text.removeprefix(f"{exc.step}: ") if isinstance(exc, StepFailed) else text


def upgrade_node(cluster: Cluster, server: Server, opts: Options, emit: Emit) -> NodeTimes:
    """Drain, wait, maint, deploy, check, restore one node; RolloutFailed names where it stopped."""
    inv = cluster.inv
    name = server.name
    times = NodeTimes(name)
    t0 = time.monotonic()
    timeout = (
        opts.drain_timeout if opts.drain_timeout is not None else inv.deploy.drain_timeout / 1000
    )
    try:
        node = cluster.node(name)
        _, previous = probe_node(node, inv.deploy, server)
    except ClusterctlError as exc:
        raise RolloutFailed(name, "probe", str(exc), drained=False) from None

    step = "drain"
    try:
        times.drain_wait = drain(cluster, name, timeout, opts.cut, emit)
        step = "maint"
        times.drain_wait += maint(cluster, name, timeout, opts.cut, emit)
    except ClusterctlError as exc:
        step = exc.step if isinstance(exc, StepFailed) else step
        emit(Event(name, step, "failed", time.monotonic() - t0, _reason(exc)))
        # Nothing was deployed: put the node back so it keeps serving, then stop.
        try:
            restore(cluster, name, emit)
        except ClusterctlError as again:
            raise RolloutFailed(
                name, step, f"{_reason(exc)}; putting it back failed too: {again}", drained=True
            ) from None
        raise RolloutFailed(name, step, _reason(exc), drained=False) from None

    step = "deploy"
    try:
        emit(Event(name, "deploy", "start", 0.0))
        times.deploy = run_deploy(node, inv.deploy, opts.version, server, _base(inv))
        emit(Event(name, "deploy", "ok", times.deploy))
        step = "check"
        t_check = time.monotonic()
        private_check(node, inv.deploy, opts.version, server)
        emit(Event(name, "check", "ok", time.monotonic() - t_check))
    except ClusterctlError as exc:
        step = exc.step if isinstance(exc, StepFailed) else step
        emit(Event(name, step, "failed", time.monotonic() - t0, _reason(exc)))
        held = "maint"
        if previous and previous != opts.version:
            emit(Event(name, "rollback", "start", 0.0, f"back to {previous}"))
            try:
                run_deploy(node, inv.deploy, previous, server, _base(inv))
                private_check(node, inv.deploy, previous, server)
                # The old release answers again: the clients pinned to it may come back.
                cluster.set_state(name, "drain")
                held = "drain"
                emit(Event(name, "rollback", "ok", 0.0, f"back on {previous}, drained"))
            except ClusterctlError as again:
                emit(Event(name, "rollback", "failed", 0.0, f"{again}; {name} stays in maint"))
        raise RolloutFailed(name, step, _reason(exc), drained=True, held=held) from None

    try:
        restore(cluster, name, emit)
    except ClusterctlError as exc:
        raise RolloutFailed(name, "restore", _reason(exc), drained=True) from None
    times.total = time.monotonic() - t0
    emit(Event(name, "done", "ok", times.total))
    return times


def _base(inv: Inventory) -> Path:
    """The inventory's folder: relative artifact paths start there."""
    return Path(inv.source).parent if inv.source else Path.cwd()


def run(inv: Inventory, opts: Options, emit: Emit) -> Report:
    check_version(opts.version)
    batches = plan_batches(inv, opts)
    report = Report(opts.version)
    with open_cluster(inv) as cluster:
        done: set[str] = set()
        if opts.resume:
            state = load_state(cluster)
            if state and state.get("version") == opts.version:
                done = set(state.get("done", []))
        state = {"version": opts.version, "done": sorted(done), "status": "running"}
        _save_state(cluster, state)
        for batch in batches:
            todo = [s for s in batch if s.name not in done]
            for s in batch:
                if s.name in done:
                    report.skipped.append(s.name)
                    emit(Event(s.name, "skip", "ok", 0.0, "already upgraded (--resume)"))
            if not todo:
                continue
            with ThreadPoolExecutor(max_workers=len(todo)) as pool:
                futures = [pool.submit(upgrade_node, cluster, s, opts, emit) for s in todo]
            failure: RolloutFailed | None = None
            for future in futures:
                try:
                    t = future.result()
                except RolloutFailed as exc:
                    failure = failure or exc
                    continue
                # Nodes of the batch that made it are recorded even when another did not,
                # so --resume does not upgrade them twice.
                report.upgraded.append(t.node)
                report.times.append(t)
                done.add(t.node)
            state["done"] = sorted(done)
            if failure is not None:
                state.update(
                    status="failed",
                    failed={
                        "node": failure.node,
                        "step": failure.step,
                        "reason": failure.reason,
                        "drained": failure.drained,
                        "held": failure.held,
                    },
                )
                _save_state(cluster, state)
                emit(
                    Event(
                        failure.node,
                        "failed",
                        "failed",
                        0.0,
                        str(failure),
                        {"step": failure.step, "drained": failure.drained, "held": failure.held},
                    )
                )
                raise failure
            _save_state(cluster, state)
        state["status"] = "complete"
        _save_state(cluster, state)
    return report


def event_json(e: Event) -> str:
    return json.dumps(
        {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(e).items()}
    )
