"""Run plan and apply across front ends with bounded parallelism, one result per host.

Like fabric's Group: a partial failure keeps every host's outcome; nothing is hidden.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from clusterctl.errors import ClusterctlError
from clusterctl.execute import lock as lockmod
from clusterctl.execute import lockreport, quorum
from clusterctl.execute.apply import HostResult, StepFailed, apply_host
from clusterctl.execute.endpoints import frontend_endpoints
from clusterctl.execute.gather import gather
from clusterctl.execute.group import run_group
from clusterctl.execute.ssh import Endpoint, Remote, shared_sessions
from clusterctl.model import vrrp
from clusterctl.model.schema import Frontend, Inventory
from clusterctl.plan import HostPlan, Plan, plan_host, render_host, unreachable

Progress = Callable[[str, str], None]

# Hosts worked on at once (the CLI's --forks default too): every host of most clusters, each
# its own thread waiting on its own SSH session; a bound all the same for very large ones.
DEFAULT_FORKS = 50


def _quiet(host: str, step: str) -> None:
    pass


def select(inv: Inventory, limit: list[str] | None) -> list[Frontend]:
    if not limit:
        return list(inv.frontends)
    names = {fe.name for fe in inv.frontends}
    unknown = [n for n in limit if n not in names]
    if unknown:
        raise ClusterctlError(
            f"--limit names unknown front end(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})"
        )
    return [fe for fe in inv.frontends if fe.name in limit]


def _plan_one(inv: Inventory, fe: Frontend, ep: Endpoint) -> HostPlan:
    try:
        with Remote.connect(ep) as remote:
            # The one render of this command (with the run's staging root, see plan.Rendered):
            # which paths to look at and which are secret, then what the plan stages and installs.
            rendered = render_host(inv, fe)
            secret = {p: f.secret for p, f in rendered.live.items()}
            facts = gather(remote, fe, secret)
        return plan_host(inv, fe, facts, rendered_as=rendered)
    except ClusterctlError as exc:
        return unreachable(fe, str(exc))


def make_plan(
    inv: Inventory,
    limit: list[str] | None = None,
    forks: int = DEFAULT_FORKS,
    ssh_config: Path | None = None,
) -> Plan:
    targets = select(inv, limit)
    targets += vrrp.units(inv, [fe.name for fe in targets])  # members' keepalived
    eps = vrrp.with_units(inv, frontend_endpoints(inv, ssh_config))
    # _plan_one turns a host's failure into its plan ("unreachable"): every host has one.
    group = run_group(targets, _name, lambda fe: _plan_one(inv, fe, eps[fe.name]), forks)
    return Plan(tuple(group.values()))


def _name(fe: Frontend) -> str:
    return fe.name


def _inventory_path(inv: Inventory) -> str:
    """The inventory as the break command must name it: absolute, so it runs from anywhere."""
    return str(Path(inv.source).resolve()) if inv.source else "inventory.yaml"


def show_lock(inv: Inventory, ssh_config: Path | None = None) -> list[str]:
    """Every lock on the cluster's hosts, for `lock show`: one line each, then who is silent."""
    vs = quorum.voters(inv, ssh_config)
    sessions = quorum.Sessions(vs.endpoints)
    try:
        views = lockreport.survey(vs, sessions)
    finally:
        sessions.close()
    lines = lockreport.report_lines(views, vs, _inventory_path(inv), lockmod.this_machine())
    if not vs.has_quorum([h for h, v in views.items() if v.state != "error"]):
        # Too few answers to know whether anyone holds it: an error, not "free".
        raise ClusterctlError("cannot tell who holds the cluster lock: " + "; ".join(lines))
    return lines


def break_lock(inv: Inventory, lock_id: str | None, ssh_config: Path | None = None) -> list[str]:
    """Remove the lock with this id, or with None the lock dirs without a readable record."""
    vs = quorum.voters(inv, ssh_config)
    sessions = quorum.Sessions(vs.endpoints)
    try:
        return lockreport.break_lock(vs, sessions, _inventory_path(inv), lock_id)
    finally:
        sessions.close()


@contextmanager
def cluster_lock(
    inv: Inventory,
    command: str,
    wait: float = 0.0,
    ssh_config: Path | None = None,
    notify: Callable[[str], None] = quorum.say,
) -> Iterator[lockmod.LockInfo]:
    """Hold the cluster lock (a majority of all its hosts) while the body runs. A release that
    fails, or a lock lost meanwhile, fails the command with the way out.

    The lock's sessions are shared (ssh.shared_sessions) with what the body opens: the facts
    and apply of a host run over the connection that took its lock."""
    with shared_sessions(), _held_lock(inv, command, wait, ssh_config, notify) as info:
        yield info


@contextmanager
def _held_lock(
    inv: Inventory,
    command: str,
    wait: float,
    ssh_config: Path | None,
    notify: Callable[[str], None],
) -> Iterator[lockmod.LockInfo]:
    held = quorum.ClusterLock(
        quorum.voters(inv, ssh_config), lockmod.new_lock(command), _inventory_path(inv), notify
    )
    held.acquire(wait)
    failure: BaseException | None = None
    try:
        yield held.info
    except BaseException as exc:
        failure = exc
        raise
    finally:
        problem = held.release()
        if problem and (failure is None or isinstance(failure, ClusterctlError)):
            raise lockmod.LockError(f"{failure}; and {problem}" if failure else problem) from None
        if problem:
            notify(f"error: {problem}")  # an interrupt stays what it is, but not silently


def _apply_one(
    inv: Inventory, fe: Frontend, ep: Endpoint, hp: HostPlan, progress: Progress
) -> HostResult:
    started = time.monotonic()
    if hp.error:
        return HostResult(fe.name, "failed", hp.error, 0.0)
    if not hp.needs_work:
        progress(fe.name, "unchanged")
        return HostResult(fe.name, "unchanged", "", 0.0)
    progress(fe.name, "applying")
    try:
        with Remote.connect(ep) as remote:
            result = apply_host(remote, inv, fe, hp)
    except StepFailed as exc:
        result = HostResult(fe.name, "failed", str(exc), round(time.monotonic() - started, 2))
    except ClusterctlError as exc:
        result = HostResult(fe.name, "failed", str(exc), round(time.monotonic() - started, 2))
    progress(fe.name, result.status)
    return result


def execute_plan(
    inv: Inventory,
    plan: Plan,
    forks: int = DEFAULT_FORKS,
    progress: Progress = _quiet,
    ssh_config: Path | None = None,
) -> list[HostResult]:
    eps = vrrp.with_units(inv, frontend_endpoints(inv, ssh_config))
    by_name = {fe.name: fe for fe in (*inv.frontends, *vrrp.units(inv))}
    group = run_group(
        plan.hosts,
        lambda hp: hp.host,
        lambda hp: _apply_one(inv, by_name[hp.host], eps[hp.host], hp, progress),
        forks,
    )
    return group.values()
