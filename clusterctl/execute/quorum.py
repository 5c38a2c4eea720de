"""The cluster lock over a majority of the cluster's hosts, front ends and backends together.

A lock whose copies sit on more than half of all the cluster's hosts (counted whether they
answer or not) can be held by one run only: two majorities always share a host, and a host
holds one copy at a time (lock.py). So any one host may be down, the lock's own included, and
the lock still works. With an even count, exactly half wins when it includes the first front
end: two halves cannot both contain it.

Runs that start at the same moment may each take a few hosts. Neither then has a majority;
the one that sorts first by (record time, id) keeps its copies and retries briefly, the others
let theirs go and back off with jitter. Both read the same records, so they agree who is first.
"""

from __future__ import annotations

import random
import shlex
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from clusterctl import progress as waits
from clusterctl.errors import ClusterctlError
from clusterctl.execute import lock as lk
from clusterctl.execute.endpoints import frontend_endpoints, server_endpoints
from clusterctl.execute.ssh import Endpoint, Remote, SSHError
from clusterctl.model.schema import Inventory
from clusterctl.remote_paths import LOCK_DIR

T = TypeVar("T")
TIE_GRACE = 5.0  # how long the first in line waits for the others to let go
OP_TIMEOUT = 8.0  # one lock step on one host: a script that waits at most 5 s for the guard
# Hosts asked at once: every host of most clusters (as apply's --forks), so fifty hosts' lock
# steps, and the handshakes of the sessions apply goes on with, are one wave, not four.
MAX_AT_ONCE = 64


def is_quorum(count: int, total: int, with_tiebreaker: bool) -> bool:
    return total > 0 and (2 * count > total or (2 * count == total and with_tiebreaker))


def need_text(total: int) -> str:
    half = total // 2
    if total % 2:
        return f"{half + 1} of {total} hosts"
    return f"{half + 1} of {total} hosts (or {half} with the first front end)"


@dataclass(frozen=True)
class Voters:
    """Every host of the cluster once (two names for one address count once), in inventory
    order, front ends first; the first front end breaks an even tie."""

    endpoints: dict[str, Endpoint]
    tiebreaker: str

    @property
    def total(self) -> int:
        return len(self.endpoints)

    def has_quorum(self, names: Collection[str]) -> bool:
        mine = set(names) & set(self.endpoints)
        return is_quorum(len(mine), self.total, self.tiebreaker in mine)


def voters(inv: Inventory, ssh_config: Path | None = None) -> Voters:
    """The front ends, and the backends when clusterctl deploys to them over SSH (a
    `deploy.command` or `deploy.release`): an inventory that only balances to backends that
    are not its hosts must not need them for its lock."""
    out: dict[str, Endpoint] = {}
    seen: set[tuple[str, str, int]] = set()
    both = list(frontend_endpoints(inv, ssh_config).items())
    if inv.deploy.command or inv.deploy.release:
        both += server_endpoints(inv, ssh_config).items()
    for name, ep in both:
        where = (ep.jump.address if ep.jump else "", ep.address, ep.port)
        if name in out or where in seen:
            continue
        seen.add(where)
        out[name] = ep
    return Voters(out, inv.frontends[0].name)


def named(host: str, text: str) -> str:
    """`host: text`, without doubling a host name the text (an SSHError) already starts with."""
    return text if text.startswith(f"{host}:") or text.startswith(f"{host} ") else f"{host}: {text}"


def break_command(inventory: str, what: str) -> str:
    return f"clusterctl lock break -i {shlex.quote(inventory)} {what}"


class Sessions:
    """One SSH session per host, opened on first use and reopened after it broke."""

    def __init__(self, endpoints: Mapping[str, Endpoint]) -> None:
        self._eps = dict(endpoints)
        self._open: dict[str, Remote] = {}
        self._guard = threading.Lock()

    def _one(self, name: str, fn: Callable[[Remote], T]) -> T | ClusterctlError:
        try:
            with self._guard:
                remote = self._open.get(name)
            if remote is None:
                remote = Remote.connect(self._eps[name])
                with self._guard:
                    self._open[name] = remote
            return fn(remote)
        except ClusterctlError as exc:
            with self._guard:
                broken = self._open.pop(name, None)
            if broken is not None:
                broken.close()
            return exc

    def each(
        self, names: Iterable[str], fn: Callable[[Remote], T]
    ) -> dict[str, T | ClusterctlError]:
        """fn on each host at once. A host that does not answer within OP_TIMEOUT (its link
        died under an open session, which TCP would notice only after minutes) is an error,
        and its session is closed, which ends the call stuck on it."""
        todo = list(names)
        if not todo:
            return {}
        pool = ThreadPoolExecutor(max_workers=min(MAX_AT_ONCE, len(todo)))
        futures = {n: pool.submit(self._one, n, fn) for n in todo}
        done, _ = wait(futures.values(), timeout=OP_TIMEOUT)
        pool.shutdown(wait=False)
        out: dict[str, T | ClusterctlError] = {}
        for name, future in futures.items():
            if future in done:
                out[name] = future.result()
                continue
            with self._guard:
                stuck = self._open.pop(name, None)
            if stuck is not None:
                stuck.close()
            out[name] = SSHError(f"{name}: no answer within {OP_TIMEOUT:.0f}s")
        return out

    def close(self) -> None:
        with self._guard:
            remotes, self._open = list(self._open.values()), {}
        for remote in remotes:
            remote.close()


def views_of(results: Mapping[str, lk.HostView | ClusterctlError]) -> dict[str, lk.HostView]:
    return {
        h: r if isinstance(r, lk.HostView) else lk.HostView(h, "error", detail=str(r))
        for h, r in results.items()
    }


def holders(views: Mapping[str, lk.HostView]) -> dict[str, tuple[lk.LockInfo, list[str]]]:
    """Each lock id seen, its record and the hosts that carry it."""
    out: dict[str, tuple[lk.LockInfo, list[str]]] = {}
    for host, v in views.items():
        if v.info is not None and v.state in ("held", "ours"):
            out.setdefault(v.info.id, (v.info, []))[1].append(host)
    return out


def held_message(views: Mapping[str, lk.HostView], vs: Voters, inventory: str, mine: str) -> str:
    """Why the lock cannot be had now, and every way out, with real arguments."""
    parts = []
    for lock_id, (info, hosts) in holders(views).items():
        if lock_id != mine:
            parts.append(
                f"the cluster lock is {info.describe()} (on {len(hosts)} of {vs.total} hosts: "
                f"{', '.join(hosts)}); wait with --lock-wait SECONDS, or if it is stale: "
                f"{break_command(inventory, lock_id)}"
            )
    blank = [h for h, v in views.items() if v.state == "unrecorded"]
    if blank:
        parts.append(
            f"{', '.join(blank)} {'has' if len(blank) == 1 else 'have'} a lock with no readable "
            f"record ({LOCK_DIR}); if no clusterctl runs: {break_command(inventory, '--no-record')}"
        )
    bad = [v for v in views.values() if v.state in ("error", "writefail")]
    if bad:
        parts.append(
            f"the lock needs {need_text(vs.total)}; "
            + "; ".join(named(v.host, v.detail) for v in bad)
        )
    return "; ".join(parts) or f"the cluster lock needs {need_text(vs.total)}"


class ClusterLock:
    """Taking, keeping (a lease renewed every lease/3) and giving back the cluster lock."""

    def __init__(
        self, vs: Voters, info: lk.LockInfo, inventory: str, notify: Callable[[str], None]
    ) -> None:
        self.voters, self.info, self.inventory, self.notify = vs, info, inventory, notify
        self.sessions = Sessions(vs.endpoints)
        self.taken: set[str] = set()
        self.lost: dict[str, str] = {}
        self._renewed: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._said_lost = False

    # -- taking ---------------------------------------------------------------------------

    def _try(self, names: Iterable[str]) -> dict[str, lk.HostView]:
        views = views_of(self.sessions.each(names, lambda r: lk.try_acquire(r, self.info)))
        return self._take_stale(views)

    def _take_stale(self, views: dict[str, lk.HostView]) -> dict[str, lk.HostView]:
        me = lk.this_machine()
        for lock_id, (info, hosts) in holders(views).items():
            if lock_id == self.info.id:
                continue
            stale = lk.stale_reason(info, [views[h].age for h in hosts], me)
            if stale is None:
                continue
            reason, min_age = stale
            got = views_of(
                self.sessions.each(
                    hosts,
                    lambda r, i=lock_id, a=min_age: lk.try_acquire(r, self.info, i, a),  # type: ignore[misc]
                )
            )
            views.update(got)
            won = [h for h, v in got.items() if v.state == "ours"]
            if won:
                self.notify(
                    f"taking over the stale cluster lock {info.describe()} on "
                    f"{', '.join(won)}: {reason}"
                )
        return views

    def _first_in_line(self, views: Mapping[str, lk.HostView]) -> bool:
        others = {i: hs for i, (_, hs) in holders(views).items() if i != self.info.id}
        if not self.taken or any(self.voters.has_quorum(hs) for hs in others.values()):
            return False
        reachable = {h for h, v in views.items() if v.state in ("held", "ours", "free")}
        if not self.voters.has_quorum(reachable | self.taken):
            return False  # too many hosts do not answer: waiting on the others cannot help
        return all(self.info.key() < views[hs[0]].info.key() for hs in others.values())  # type: ignore[union-attr]

    def acquire(self, wait: float) -> None:
        start = time.monotonic()
        deadline = start + wait
        names = list(self.voters.endpoints)
        views = self._try(names)
        noted = start - waits.EVERY  # the first wait is said at once
        while True:
            self.taken |= {h for h, v in views.items() if v.state == "ours"}
            if self.voters.has_quorum(self.taken):
                broken = [v for v in views.values() if v.state in ("error", "writefail")]
                if broken:  # held, but with less margin than it should have: say so
                    self.notify(
                        f"warning: the cluster lock holds on {len(self.taken)} of "
                        f"{self.voters.total} hosts; "
                        + "; ".join(named(v.host, v.detail) for v in broken)
                    )
                now = time.monotonic()
                self._renewed = dict.fromkeys(self.taken, now)
                self._thread = threading.Thread(target=self._renew_loop, daemon=True)
                self._thread.start()
                return
            now = time.monotonic()
            if self._first_in_line(views) and now < max(deadline, start + TIE_GRACE):
                time.sleep(random.uniform(0.1, 0.3))
                views.update(self._try([h for h in names if h not in self.taken]))
                continue
            message = held_message(views, self.voters, self.inventory, self.info.id)
            problem = self._give_back()
            if now >= deadline:
                self.sessions.close()
                raise lk.LockHeld(message + (f"; {problem}" if problem else ""))
            if waits.lock_wait is not None and now - noted >= waits.EVERY:
                noted = now
                waits.lock_wait(
                    f"waiting for the cluster lock ({now - start:.0f}s of {wait:g}s): {message}"
                )
            time.sleep(min(random.uniform(0.3, 1.5), max(0.0, deadline - now)))
            views = self._try(names)

    # -- keeping --------------------------------------------------------------------------

    def _renew_loop(self) -> None:
        lease = self.info.lease or lk.DEFAULT_LEASE
        while not self._stop.wait(max(0.5, lease / 3)):
            self.renew_once(lease)

    def renew_once(self, lease: float) -> None:
        got = views_of(self.sessions.each(sorted(self.taken), lambda r: lk.renew(r, self.info.id)))
        now = time.monotonic()
        for host, v in got.items():
            if v.state == "renewed":  # our record is intact: nobody took this host meanwhile
                self._renewed[host] = now
                self.lost.pop(host, None)
                continue
            if v.state in ("held", "free", "unrecorded"):
                self.lost[host] = "taken over or broken" + (
                    f" ({v.info.describe()})" if v.info else ""
                )
                self.taken.discard(host)
            elif now - self._renewed.get(host, now) > lease:
                self.lost[host] = f"not renewed for {lease:.0f}s: {v.detail}"
        if not self.voters.has_quorum(self.taken - set(self.lost)) and not self._said_lost:
            self._said_lost = True
            self.notify(f"warning: {self.lost_text()}")

    def lost_text(self) -> str:
        return (
            f"the cluster lock {self.info.id} was lost while the command ran ("
            + "; ".join(named(h, w) for h, w in sorted(self.lost.items()))
            + "); another run may change the cluster at the same time: check with clusterctl plan"
        )

    # -- giving back ----------------------------------------------------------------------

    def _give_back(self) -> str | None:
        got = views_of(
            self.sessions.each(sorted(self.taken), lambda r: lk.release_view(r, self.info.id))
        )
        failed = [v for v in got.values() if v.state in ("error", "writefail")]
        self.taken = {v.host for v in failed}
        if not failed:
            return None
        return (
            f"the cluster lock {self.info.id} is still held on "
            + ", ".join(v.host for v in failed)
            + " ("
            + "; ".join(named(v.host, v.detail) for v in failed)
            + f"); clear it with: {break_command(self.inventory, self.info.id)}"
        )

    def release(self) -> str | None:
        """Give every copy back; what went wrong (to be reported loudly) or None."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.info.lease))
        lost = self.lost_text() if not self.voters.has_quorum(self.taken - set(self.lost)) else ""
        try:
            problem = self._give_back()
        finally:
            self.sessions.close()
        return "; ".join(p for p in (lost, problem) if p) or None


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
