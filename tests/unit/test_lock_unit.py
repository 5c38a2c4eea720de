"""The cluster lock without SSH: the quorum rule, stale proofs, record parsing, and the real
lock scripts run by `sh` against a folder per host (a "host" down is one that refuses to
connect), so races, takeovers and failures are checked in milliseconds."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from clusterctl.errors import ClusterctlError
from clusterctl.execute import lock as lk
from clusterctl.execute import quorum, records, runner
from clusterctl.execute.ssh import Endpoint, Remote, Result, SSHError
from clusterctl.facts import STATE_DIR
from clusterctl.model import parse

NAMES = ["lb1", "lb2", "lb3", "be1", "be2"]


class LocalHost:
    """A Remote whose `sh` runs the script here, with STATE_DIR moved under this host's folder."""

    def __init__(self, root: Path, name: str, path: str | None, world: Hosts) -> None:
        self.root, self.ep, self.path, self.world = root, Endpoint(name, "192.0.2.1"), path, world

    def sh(self, script: str, *args: str, stdin: bytes | None = None, sudo: bool = True) -> Result:
        if self.ep.name in self.world.down:  # an open session to a host that went away
            raise SSHError(f"{self.ep.name}: connection lost running sh: Socket is closed")
        moved = [args[0].replace(STATE_DIR, str(self.root), 1), *args[1:]]
        env = {**os.environ, "PATH": self.path} if self.path else None
        proc = subprocess.run(
            ["sh", "-c", script, "clusterctl", *moved],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        )
        return Result(tuple(moved), proc.returncode, proc.stdout, proc.stderr)

    def close(self) -> None:
        pass


class Hosts:
    """Folders standing in for hosts; `down` ones refuse to connect, as SSHError says it."""

    def __init__(self, base: Path, names: list[str]) -> None:
        self.base, self.down, self.path = base, set[str](), ""
        for n in names:
            (base / n).mkdir()
        self.voters = quorum.Voters({n: Endpoint(n, "192.0.2.1") for n in names}, names[0])

    def remote(self, name: str) -> Remote:
        if name in self.down:
            raise SSHError(f"{name}: cannot reach 192.0.2.1:22: [Errno 113] No route to host")
        return cast(Remote, LocalHost(self.base / name, name, self.path or None, self))

    def lock_dir(self, name: str) -> Path:
        return self.base / name / "lock"

    def record(self, name: str) -> lk.LockInfo | None:
        info = self.lock_dir(name) / "info"
        return lk.parse_record(info.read_text()) if info.exists() else None

    def plant(self, info: lk.LockInfo, names: list[str], age: int = 0) -> None:
        for n in names:
            lk.acquire(self.remote(n), info)
            if age:
                os.utime(self.lock_dir(n) / "info", (time.time() - age, time.time() - age))


@pytest.fixture
def hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Hosts:
    world = Hosts(tmp_path, NAMES)

    class FakeRemote:
        @staticmethod
        def connect(ep: Endpoint) -> Remote:
            return world.remote(ep.name)

    monkeypatch.setattr(quorum, "Remote", FakeRemote)
    monkeypatch.setattr(quorum, "TIE_GRACE", 3.0)
    return world


def foreign(
    lease: float = 60.0, since: float | None = None, lock_id: str = "a1ce0000b0b0"
) -> lk.LockInfo:
    return lk.LockInfo(lock_id, "alice@laptop", since or time.time(), "apply", "laptop",
                       "b00t", "pid:[1]", 4242, 77, lease)  # fmt: skip


@pytest.fixture
def dead() -> Iterator[lk.LockInfo]:
    """A record of this machine whose process is gone (a child that exited and was reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    me = lk.this_machine()
    yield lk.LockInfo("deadbeef0001", "ci@runner", time.time(), "apply", me.hostname,
                      me.boot_id, me.pidns, proc.pid, 0, 60.0)  # fmt: skip


def take(
    world: Hosts, command: str = "apply", wait: float = 0.0
) -> tuple[quorum.ClusterLock, list[str]]:
    said: list[str] = []
    held = quorum.ClusterLock(world.voters, lk.new_lock(command), "/srv/my inv.yaml", said.append)
    held.acquire(wait)
    return held, said


# -- the quorum rule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "total", "tie", "want"),
    [(1, 1, True, True), (0, 1, True, False), (1, 2, True, True), (1, 2, False, False),
     (2, 3, False, True), (1, 3, True, False), (2, 4, True, True), (2, 4, False, False),
     (3, 5, False, True), (2, 5, True, False), (3, 6, True, True), (4, 6, False, True),
     (0, 0, True, False)],
)  # fmt: skip
def test_quorum_is_a_majority_or_half_with_the_first_front_end(
    count: int, total: int, tie: bool, want: bool
) -> None:
    assert quorum.is_quorum(count, total, tie) is want


@pytest.mark.parametrize("total", range(1, 8))
def test_two_disjoint_sets_of_hosts_never_both_hold_the_lock(total: int) -> None:
    names = [f"h{i}" for i in range(total)]
    vs = quorum.Voters({n: Endpoint(n, "192.0.2.1") for n in names}, "h0")
    for owner in itertools.product((0, 1, 2), repeat=total):  # 2: nobody (down, unrecorded)
        a = [n for n, o in zip(names, owner, strict=True) if o == 0]
        b = [n for n, o in zip(names, owner, strict=True) if o == 1]
        assert not (vs.has_quorum(a) and vs.has_quorum(b)), (a, b)
    # ... and losing any one host still leaves a quorum (from 3 hosts on).
    if total >= 3:
        for lost in names:
            assert vs.has_quorum([n for n in names if n != lost])


VOTERS_INV = """\
cluster: t
frontends:
  - {name: lb1, kind: haproxy, address: 192.0.2.10}
  - {name: lb2, kind: nginx, address: 192.0.2.11}
pools:
  - name: app
    servers:
      - {name: be1, address: 192.0.2.21, port: 8080}
      - {name: be2, address: 192.0.2.11, port: 8080}
  - name: api
    servers: [{name: be1, address: 192.0.2.21, port: 8080}, {name: be3, address: 192.0.2.23, port: 8080}]
services:
  - {name: web, listen: [{port: 80}], default_pool: app}
"""


def test_voters_are_every_host_once_front_ends_first(tmp_path: Path) -> None:
    deploys = VOTERS_INV + 'deploy: {command: ["/srv/app/bin/deploy", "{version}"]}\n'
    vs = quorum.voters(parse(deploys, str(tmp_path / "i.yaml")), ssh_config=tmp_path / "none")
    # be2 is lb2's machine (same address): one machine, one vote.
    assert list(vs.endpoints) == ["lb1", "lb2", "be1", "be3"]
    assert vs.tiebreaker == "lb1" and vs.total == 4
    assert quorum.need_text(4) == "3 of 4 hosts (or 2 with the first front end)"
    assert quorum.need_text(5) == "3 of 5 hosts"
    # Without a deploy strategy the backends are not clusterctl's hosts: they get no vote.
    alone = quorum.voters(parse(VOTERS_INV, str(tmp_path / "i.yaml")), ssh_config=tmp_path / "none")
    assert list(alone.endpoints) == ["lb1", "lb2"] and alone.tiebreaker == "lb1"


def test_host_names_are_never_doubled() -> None:
    said = "lb2: cannot reach 192.0.2.11:22: timed out"
    assert quorum.named("lb2", said) == said
    assert (
        quorum.named("lb2", "cannot write the lock record") == "lb2: cannot write the lock record"
    )
    assert quorum.named("lb2", "lb2 (jump x): refused") == "lb2 (jump x): refused"


def test_the_break_command_names_the_real_inventory() -> None:
    assert quorum.break_command("/srv/my inv.yaml", "abc") == (
        "clusterctl lock break -i '/srv/my inv.yaml' abc"
    )


# -- records and replies ---------------------------------------------------------------------


def test_a_record_round_trips_and_an_older_one_still_parses() -> None:
    info = lk.new_lock("rollout 1.2")
    assert lk.parse_record(info.to_json()) == info
    assert info.lease == lk.DEFAULT_LEASE and info.pid == os.getpid() and info.pid_start > 0
    old = lk.parse_record(
        '{"id": "feedc0ffee42", "holder": "a@b", "since": 1.5, "command": "apply"}'
    )
    assert old == lk.LockInfo("feedc0ffee42", "a@b", 1.5, "apply")
    assert old.lease == 0 and old.pid == 0  # never stale by time, never provably dead
    for bad in (
        "",
        "{",
        "[]",
        '{"id": "x"}',
        '{"id": "x", "holder": "h", "since": "soon", "command": "c"}',
    ):
        assert lk.parse_record(bad) is None


def test_replies_become_views() -> None:
    info = foreign()
    assert lk.parse_reply("h", "ACQUIRED\n").state == "ours"
    assert lk.parse_reply("h", "FREE\n").state == "free"
    assert lk.parse_reply("h", "RELEASED\n").state == "released"
    held = lk.parse_reply("h", f"HELD 17\n{info.to_json()}\n", "mine")
    assert (held.state, held.info, held.age) == ("held", info, 17.0)
    assert lk.parse_reply("h", f"HELD 3\n{info.to_json()}\n", info.id).state == "ours"
    blank = lk.parse_reply("h", "HELD 3\nnot json\n")
    assert (blank.state, blank.raw) == ("unrecorded", "not json")
    assert lk.parse_reply("h", "UNRECORDED\n").state == "unrecorded"
    full = lk.parse_reply("h", "WRITEFAIL cannot write the lock record: No space left on device\n")
    assert (full.state, full.detail) == (
        "writefail",
        "cannot write the lock record: No space left on device",
    )
    assert (
        lk.parse_reply("h", "ERROR cannot open the lock guard /x\n").detail
        == "cannot open the lock guard /x"
    )
    assert lk.parse_reply("h", "").state == "error"


def test_the_lease_can_be_set_but_not_to_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTERCTL_LOCK_LEASE", "5")
    assert lk.new_lock("x").lease == 5
    for bad in ("0", "-1", "soon", "1e9"):
        monkeypatch.setenv("CLUSTERCTL_LOCK_LEASE", bad)
        with pytest.raises(ClusterctlError, match="CLUSTERCTL_LOCK_LEASE must be seconds"):
            lk.new_lock("x")


# -- stale proofs ----------------------------------------------------------------------------


def test_a_dead_holder_on_this_machine_is_stale(dead: lk.LockInfo) -> None:
    me = lk.this_machine()
    assert lk.stale_reason(dead, [0.0], me) == (
        f"its process {dead.pid} on {me.hostname} is gone",
        0,
    )
    alive = lk.LockInfo(**{**dead.__dict__, "pid": os.getpid(), "pid_start": lk._own_start()})
    assert lk.stale_reason(alive, [0.0], me) is None
    # The same pid on another machine, another boot or in another pid namespace proves nothing.
    for field, value in (("machine", "elsewhere"), ("boot_id", "other-boot"), ("pidns", "pid:[9]")):
        other = lk.LockInfo(**{**dead.__dict__, field: value})
        assert lk.stale_reason(other, [0.0], me) is None, field


def test_a_lease_runs_out_only_when_every_copy_outlived_it() -> None:
    me = lk.this_machine()
    info = foreign(lease=60)
    assert lk.stale_reason(info, [75.0, 61.0], me) == (
        "its lease of 60s ran out 1s ago without a renewal",
        60,
    )
    assert lk.stale_reason(info, [75.0, 12.0], me) is None  # renewed on one host: alive
    assert lk.stale_reason(info, [59.0], me) is None
    assert lk.stale_reason(foreign(lease=0), [1e6], me) is None  # an old record has no lease
    assert lk.stale_reason(info, [], me) is None


def test_process_alive_knows_gone_reused_and_zombie_pids(dead: lk.LockInfo) -> None:
    assert lk.process_alive(os.getpid(), lk._own_start())
    assert not lk.process_alive(dead.pid, 0)
    assert not lk.process_alive(os.getpid(), lk._own_start() + 1)  # the pid was reused
    zombie = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while lk.process_alive(zombie.pid, 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not lk.process_alive(zombie.pid, 0)  # exited, not yet reaped
    finally:
        zombie.wait()


# -- the scripts on one host -----------------------------------------------------------------


def test_one_host_take_renew_release(hosts: Hosts) -> None:
    r = hosts.remote("lb1")
    mine, other = lk.new_lock("apply"), foreign()
    assert lk.try_acquire(r, mine).state == "ours"
    assert hosts.record("lb1") == mine
    seen = lk.try_acquire(r, other)
    assert (seen.state, seen.info) == ("held", mine)
    assert lk.renew(r, mine.id).state == "renewed"
    assert lk.renew(r, other.id).state == "held"
    assert lk.release_view(r, other.id).state == "held"  # never someone else's
    assert lk.release(r, mine.id)
    assert not hosts.lock_dir("lb1").exists()
    assert lk.release_view(r, mine.id).state == "free"
    assert lk.show(r) is None


def test_a_takeover_replaces_only_the_lock_it_judged_stale(hosts: Hosts) -> None:
    r = hosts.remote("lb1")
    old, mine = foreign(lease=5), lk.new_lock("apply")
    hosts.plant(old, ["lb1"], age=30)
    assert lk.try_acquire(r, mine, "0123456789ab", 5).state == "held"  # another id: kept
    lk.renew(r, old.id)  # the holder came back meanwhile: its lease is fresh again
    assert lk.try_acquire(r, mine, old.id, 5).state == "held"
    os.utime(hosts.lock_dir("lb1") / "info", (time.time() - 30, time.time() - 30))
    assert lk.try_acquire(r, mine, old.id, 5).state == "ours"
    assert hosts.record("lb1") == mine


def test_a_record_that_cannot_be_written_fails_and_leaves_nothing(
    hosts: Hosts, tmp_path: Path
) -> None:
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "cat").write_text(
        '#!/bin/sh\n[ $# -eq 0 ] && { echo "cat: write error: No space left on device" >&2; exit 1; }\n'
        'exec /bin/cat "$@"\n'
    )
    (shim / "cat").chmod(0o755)
    hosts.path = f"{shim}:{os.environ['PATH']}"
    view = lk.try_acquire(hosts.remote("lb1"), lk.new_lock("apply"))
    assert view.state == "writefail", view
    assert view.detail == "cannot write the lock record: cat: write error: No space left on device"
    assert not hosts.lock_dir("lb1").exists()


def test_a_guard_that_cannot_be_opened_is_an_error_not_a_lock(hosts: Hosts) -> None:
    (hosts.base / "lb1" / "lock.guard").mkdir()
    view = lk.try_acquire(hosts.remote("lb1"), lk.new_lock("apply"))
    assert view.state == "error" and "cannot open the lock guard" in view.detail, view
    assert not hosts.lock_dir("lb1").exists()


def test_an_unrecorded_lock_is_broken_only_while_it_stays_unrecorded(hosts: Hosts) -> None:
    r = hosts.remote("lb1")
    hosts.lock_dir("lb1").mkdir()
    view = lk.look(r)
    assert view.state == "unrecorded"
    assert lk.break_unrecorded(r, "something else it had").state == "unrecorded"
    assert lk.break_unrecorded(r, view.raw).state == "released"
    mine = lk.new_lock("apply")
    lk.acquire(r, mine)
    assert lk.break_unrecorded(r, "").state == "held"  # a real lock is never broken this way
    assert hosts.record("lb1") == mine


# -- the quorum lock -------------------------------------------------------------------------


def test_the_lock_is_taken_on_every_host_and_given_back(hosts: Hosts) -> None:
    held, said = take(hosts)
    assert held.taken == set(NAMES) and said == []
    assert all(hosts.record(n) == held.info for n in NAMES)
    assert held.release() is None
    assert not any(hosts.lock_dir(n).exists() for n in NAMES)


def test_any_one_host_down_the_lock_still_works(hosts: Hosts) -> None:
    for down in NAMES:
        hosts.down = {down}
        held, said = take(hosts)
        assert held.taken == set(NAMES) - {down}
        assert said == [
            "warning: the cluster lock holds on 4 of 5 hosts; "
            f"{down}: cannot reach 192.0.2.1:22: [Errno 113] No route to host"
        ]
        assert held.release() is None


def test_too_many_hosts_down_is_refused_naming_each_once(hosts: Hosts) -> None:
    hosts.down = {"lb2", "be1", "be2"}
    with pytest.raises(lk.LockHeld) as err:
        take(hosts)
    text = str(err.value)
    assert "the lock needs 3 of 5 hosts" in text
    for n in ("lb2", "be1", "be2"):
        assert text.count(f"{n}: cannot reach") == 1 and f"{n}: {n}:" not in text
    assert not any(hosts.lock_dir(n).exists() for n in NAMES)  # what it took is given back


def count_rounds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many hosts each acquire round asked (a retry is one more entry)."""
    rounds: list[int] = []
    real = quorum.ClusterLock._try

    def counted(self: quorum.ClusterLock, names: Any) -> dict[str, lk.HostView]:
        names = list(names)
        rounds.append(len(names))
        return real(self, names)

    monkeypatch.setattr(quorum.ClusterLock, "_try", counted)
    return rounds


def test_a_live_holder_keeps_the_lock_and_is_named_with_the_way_out(
    hosts: Hosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = foreign()
    hosts.plant(alice, ["lb1", "lb2", "be1"])
    rounds = count_rounds(monkeypatch)
    with pytest.raises(lk.LockHeld) as err:
        take(hosts)
    assert rounds == [5]  # a majority elsewhere: one look, no tie to wait out
    text = str(err.value)
    assert f"the cluster lock is {alice.describe()[:40]}" in text
    assert "(on 3 of 5 hosts: lb1, lb2, be1)" in text
    assert "wait with --lock-wait SECONDS" in text
    assert "clusterctl lock break -i '/srv/my inv.yaml' a1ce0000b0b0" in text
    assert "INVENTORY" not in text
    assert [n for n in NAMES if hosts.lock_dir(n).exists()] == ["lb1", "lb2", "be1"]
    assert all(hosts.record(n) == alice for n in ("lb1", "lb2", "be1"))


def test_lock_wait_waits_for_the_holder(hosts: Hosts) -> None:
    alice = foreign()
    hosts.plant(alice, NAMES)

    def finish() -> None:
        time.sleep(0.5)
        for n in NAMES:
            lk.release(hosts.remote(n), alice.id)

    t = threading.Thread(target=finish)
    t.start()
    held, _ = take(hosts, wait=20)
    t.join()
    assert hosts.voters.has_quorum(held.taken)
    assert held.release() is None


def test_a_dead_holder_on_this_machine_is_taken_over_with_a_line(
    hosts: Hosts, dead: lk.LockInfo
) -> None:
    hosts.plant(dead, NAMES)
    held, said = take(hosts)
    assert held.taken == set(NAMES)
    assert said == [
        f"taking over the stale cluster lock {dead.describe()} on {', '.join(NAMES)}: "
        f"its process {dead.pid} on {dead.machine} is gone"
    ]
    assert all(hosts.record(n) == held.info for n in NAMES)
    assert held.release() is None


def test_an_expired_lease_is_taken_over_an_unexpired_one_is_not(hosts: Hosts) -> None:
    gone = foreign(lease=5)
    hosts.plant(gone, NAMES, age=20)
    held, said = take(hosts)
    assert len(said) == 1 and re.search(
        r"its lease of 5s ran out 1[56]s ago without a renewal", said[0]
    )
    assert held.release() is None
    fresh = foreign(lease=5, lock_id="a1ce0000b0b1")
    hosts.plant(fresh, NAMES[:3], age=20)
    os.utime(hosts.lock_dir("lb3") / "info")  # renewed there a moment ago: alive
    with pytest.raises(lk.LockHeld):
        take(hosts)


def test_in_a_split_the_first_in_line_keeps_and_wins(hosts: Hosts) -> None:
    hosts.down = {"be2"}
    later = foreign(since=time.time() + 100)  # sorts after us
    hosts.plant(later, ["be1", "lb3"])

    def lets_go() -> None:
        time.sleep(0.4)
        for n in ("be1", "lb3"):
            lk.release(hosts.remote(n), later.id)

    t = threading.Thread(target=lets_go)
    t.start()
    held, _ = take(hosts)  # no --lock-wait: the tie grace alone
    t.join()
    # It kept its own and got (at least) the first let go, before any --lock-wait.
    assert {"lb1", "lb2"} < held.taken and hosts.voters.has_quorum(held.taken)
    assert held.release() is None


def test_in_a_split_a_later_run_lets_go_at_once(
    hosts: Hosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts.down = {"be2"}
    earlier = foreign(since=time.time() - 100)
    hosts.plant(earlier, ["be1", "lb3"])
    rounds = count_rounds(monkeypatch)
    with pytest.raises(lk.LockHeld, match="on 2 of 5 hosts"):
        take(hosts)
    assert rounds == [5]  # gave its two back after one look
    assert [n for n in NAMES if hosts.lock_dir(n).exists()] == ["lb3", "be1"]


@pytest.mark.parametrize("rounds", [12])
def test_two_runs_at_the_same_moment_never_both_hold(hosts: Hosts, rounds: int) -> None:
    for _ in range(rounds):
        gate = threading.Barrier(2)
        results: dict[int, Any] = {}

        def run(i: int, gate: threading.Barrier = gate, results: dict[int, Any] = results) -> None:
            gate.wait()
            try:
                results[i] = take(hosts)[0]
            except lk.LockHeld as exc:
                results[i] = exc

        threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [r for r in results.values() if isinstance(r, quorum.ClusterLock)]
        assert len(winners) == 1, results
        # The winner holds a majority; the loser left nothing behind.
        assert hosts.voters.has_quorum(winners[0].taken)
        assert {hosts.record(n) for n in NAMES} <= {winners[0].info, None}
        assert winners[0].release() is None


def test_a_failed_release_says_how_to_clear_it(hosts: Hosts) -> None:
    held, _ = take(hosts)
    hosts.down = {"lb2"}
    problem = held.release()
    assert problem is not None
    assert problem.startswith(
        f"the cluster lock {held.info.id} is still held on lb2 (lb2: connection lost"
    )
    assert problem.endswith(
        f"clear it with: clusterctl lock break -i '/srv/my inv.yaml' {held.info.id}"
    )
    assert "lb2: lb2:" not in problem


def test_a_lock_taken_away_while_held_is_reported_as_lost(hosts: Hosts) -> None:
    held, said = take(hosts)
    thief = foreign()
    for n in ("lb1", "lb2", "lb3"):
        lk.release(hosts.remote(n), held.info.id)
    hosts.plant(thief, ["lb1", "lb2", "lb3"])
    held.renew_once(60)
    assert said and said[0].startswith(f"warning: the cluster lock {held.info.id} was lost")
    problem = held.release()
    assert problem is not None and "another run may change the cluster" in problem
    assert all(hosts.record(n) == thief for n in ("lb1", "lb2", "lb3"))  # theirs stays


def test_the_lock_is_renewed_while_the_command_runs(
    hosts: Hosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUSTERCTL_LOCK_LEASE", "1.5")
    old = time.time() - 100
    held, _ = take(hosts)
    for n in NAMES:
        os.utime(hosts.lock_dir(n) / "info", (old, old))
    time.sleep(1.5)  # the lease/3 = 0.5 s renewal has run meanwhile
    assert all((hosts.lock_dir(n) / "info").stat().st_mtime > old + 50 for n in NAMES)
    assert held.release() is None


# -- cluster_lock, show and break, with the inventory's real path ----------------------------

INV = """\
cluster: t
frontends: [{name: lb1, kind: haproxy, address: 192.0.2.10}]
pools: [{name: app, servers: [{name: be1, address: 192.0.2.21, port: 8080}]}]
services: [{name: web, listen: [{port: 80}], default_pool: app}]
"""


@pytest.fixture
def inv_path(tmp_path: Path, hosts: Hosts, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(quorum, "voters", lambda inv, ssh_config=None: hosts.voters)
    path = tmp_path / "my inventory.yaml"
    path.write_text(INV)
    return path


def test_cluster_lock_fails_the_command_when_the_release_fails(
    hosts: Hosts, inv_path: Path
) -> None:
    inv = parse(INV, str(inv_path))
    with (
        pytest.raises(lk.LockError) as err,
        runner.cluster_lock(inv, "apply", notify=print) as info,
    ):
        hosts.down = {"be1"}
    assert f"clusterctl lock break -i '{inv_path}' {info.id}" in str(err.value)
    with (
        pytest.raises(lk.LockError) as err2,
        runner.cluster_lock(inv, "apply", notify=print) as info,
    ):
        hosts.down = {"lb1"}
        raise ClusterctlError("2 of 3 front end(s) not applied")
    text = str(err2.value)
    assert text.startswith("2 of 3 front end(s) not applied; and the cluster lock")
    assert f"lock break -i '{inv_path}' {info.id}" in text


def test_show_and_break_every_kind_of_lock(hosts: Hosts, inv_path: Path, dead: lk.LockInfo) -> None:
    inv = parse(INV, str(inv_path))
    assert runner.show_lock(inv) == ["cluster lock: free"]
    alice = foreign()
    hosts.plant(alice, ["lb1", "lb2", "lb3"])
    hosts.plant(dead, ["be1"])
    hosts.lock_dir("be2").mkdir()  # a lock dir a full disk left without a record
    hosts.down = {"lb3"}
    lines = runner.show_lock(inv)
    assert lines[0].startswith(f"cluster lock: {alice.describe()[:40]}")
    assert re.search(
        r", on 2 of 5 hosts \(lb1, lb2\); lease 60s, renewed \ds ago; to break it: ", lines[0]
    )
    assert lines[0].endswith(f"clusterctl lock break -i '{inv_path}' {alice.id}")
    assert "stale: its process" in lines[1] and "the next command takes it over" in lines[1]
    assert lines[2] == (
        f"cluster lock: held on be2 by a lock with no readable record ({lk.LOCK_DIR}); "
        f"if no clusterctl runs, break it with: clusterctl lock break -i '{inv_path}' --no-record"
    )
    assert lines[3].startswith("  lb3: cannot reach") and len(lines) == 4
    with pytest.raises(ClusterctlError, match="does not have id 0123456789ab"):
        runner.break_lock(inv, "0123456789ab")
    assert runner.break_lock(inv, alice.id) == [
        f"lock {alice.id} broken on 2 of 5 hosts (lb1, lb2)",
        "  not checked, run this again once they answer:",
        "  lb3: cannot reach 192.0.2.1:22: [Errno 113] No route to host",
    ]
    assert (
        runner.break_lock(inv, None)[0]
        == "the lock with no readable record broken on 1 of 5 hosts (be2)"
    )
    assert hosts.record("be1") == dead  # untouched by either break
    with pytest.raises(ClusterctlError, match="no host has a lock without a readable record"):
        runner.break_lock(inv, None)


# -- records on a quorum ---------------------------------------------------------------------


@pytest.fixture
def opener(hosts: Hosts, monkeypatch: pytest.MonkeyPatch) -> dict[str, records.Opener]:
    monkeypatch.setattr(records, "_down", {})
    monkeypatch.setattr(records, "_last_seq", {})
    return {n: (lambda n=n: hosts.remote(n)) for n in NAMES}  # type: ignore[misc]


PATH = f"{STATE_DIR}/rollout/t.json"


def test_a_record_survives_any_one_host(hosts: Hosts, opener: dict[str, records.Opener]) -> None:
    assert records.load_record(opener, "lb1", PATH) is None
    records.save_record(opener, "lb1", PATH, {"version": "1", "done": []})
    hosts.down = {"lb1"}
    records.save_record(opener, "lb1", PATH, {"version": "1", "done": ["be1"]})
    hosts.down = {"be2"}  # lb1 is back with the older copy, be2 (newest) is gone
    records._down.clear()
    assert records.load_record(opener, "lb1", PATH) == {"version": "1", "done": ["be1"]}
    # The copy on lb1 is the old one; the newest wins by its sequence, not by host order.
    assert '"record_seq": 1' in (hosts.base / "lb1" / "rollout/t.json").read_text()


def test_a_record_without_a_quorum_is_an_error(
    hosts: Hosts, opener: dict[str, records.Opener]
) -> None:
    records.save_record(opener, "lb1", PATH, {"version": "1"})
    hosts.down = {"lb1", "lb2", "be1"}
    with pytest.raises(
        records.RecordError,
        match=r"could not save .* on enough hosts \(2 of 5; it needs 3 of 5 hosts\): lb1: cannot reach",
    ):
        records.save_record(opener, "lb1", PATH, {"version": "1"})
    records._down.clear()
    with pytest.raises(records.RecordError, match="only 2 of 5 hosts answered"):
        records.load_record(opener, "lb1", PATH)


def test_newest_copy_and_what_counts_as_an_answer() -> None:
    assert records.parse_copy("ABSENT\n") == (True, None)
    assert records.parse_copy('PRESENT\n{"a": 1}\n') == (True, {"a": 1})
    assert records.parse_copy("PRESENT\n{trunc") == (False, None)  # may have been the newest
    assert records.parse_copy("") == (False, None)
    copies = {"a": (True, {"v": "old"}), "b": (True, {"v": "new", "record_seq": 3}),
              "c": (True, {"v": "mid", "record_seq": 2}), "d": (False, None), "e": (True, None)}  # fmt: skip
    assert records.newest(copies, 5, "a") == {"v": "new", "record_seq": 3}
    with pytest.raises(records.RecordError):
        records.newest({"a": (True, None), "b": (False, None)}, 4, "b")
    assert records.newest({"a": (True, None), "b": (False, None)}, 2, "a") is None


def test_show_with_too_few_answers_is_an_error_not_free(hosts: Hosts, inv_path: Path) -> None:
    inv = parse(INV, str(inv_path))
    hosts.down = {"lb1", "lb2", "be2"}
    with pytest.raises(ClusterctlError) as err:
        runner.show_lock(inv)
    text = str(err.value)
    assert text.startswith(
        "cannot tell who holds the cluster lock: cluster lock: free on the 2 of 5"
    )
    assert text.count("lb1: cannot reach") == 1


def test_a_host_silent_longer_than_the_lease_counts_as_lost_until_it_renews(hosts: Hosts) -> None:
    held, said = take(hosts)
    hosts.down = {"lb1", "lb2", "lb3"}
    held.renew_once(60)
    assert held.lost == {}  # silent, but not for a whole lease yet
    held._renewed = dict.fromkeys(held._renewed, time.monotonic() - 61)
    held.renew_once(60)
    assert set(held.lost) == {"lb1", "lb2", "lb3"} and said[-1].startswith(
        "warning: the cluster lock"
    )
    hosts.down = set()
    held.renew_once(60)  # back, and its copies are still ours: nobody took them
    assert held.lost == {}
    assert held.release() is None


def test_a_host_without_flock_is_told_not_locked(hosts: Hosts, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for tool in ("sh", "mkdir", "dirname", "cat", "date", "stat", "grep", "rm", "mv"):
        (bare / tool).symlink_to(
            subprocess.run(
                ["sh", "-c", f"command -v {tool}"], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
    hosts.path = str(bare)
    view = lk.try_acquire(hosts.remote("lb1"), lk.new_lock("apply"))
    assert (view.state, view.detail) == (
        "error",
        "flock is not installed (apt-get install -y util-linux)",
    )
    assert not hosts.lock_dir("lb1").exists()
