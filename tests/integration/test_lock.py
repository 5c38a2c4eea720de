"""Issue #9, the cluster lock over real SSH: a majority of the lab's six hosts (three front ends,
three backends) holds it, so one host may be down; a holder that died is taken over, a holder
that lives is not; its own failures (a full disk, a lost host at release, a lock dir without a
record) are loud and come with the command that clears them.

One lab (`tlock`) for the module. A holder "on another machine" runs in its own UTS namespace
with another hostname, which is all that tells two machines apart to the lock (with the boot id
and pid namespace, which it shares here). A holder that is killed is stopped at apply's own
confirmation prompt on a terminal (a pty), as an operator's laptop that went away would be.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.labfixtures import (
    CLUSTERCTL,
    Lab,
    Run,
    acceptance_inventory,
    cli,
    needs_root,
    own_lab,
)

pytestmark = [pytest.mark.lab, needs_root]

LAB = "tlock"
LOCK = "/var/lib/clusterctl/lock"
ALL = ["lb1", "lb2", "lb3", "be1", "be2", "be3"]


def other_machine(hostname: str) -> list[str]:
    """A prefix that runs a command as if on another machine: its own UTS namespace."""
    return ["unshare", "--uts", "sh", "-c", f'hostname {hostname} && exec "$@"', "sh"]


OTHER_MACHINE = other_machine("otherbox")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with own_lab(LAB, tmp_path_factory.mktemp(LAB)) as the_lab:
        the_lab.write(acceptance_inventory(the_lab.info))
        assert apply(the_lab).rc == 0
        yield the_lab


@pytest.fixture
def clean(lab: Lab) -> Iterator[Lab]:
    """Every test starts and ends with no lock anywhere and every host reachable."""
    yield lab
    for h in ALL:
        up(lab, h)
    for h in ALL:
        lab.ssh(h, f"rm -rf {LOCK}")


def apply(lab: Lab, *extra: str, env: dict[str, str] | None = None) -> Run:
    return cli("apply", "-i", str(lab.inventory), "--yes", *extra, env=env)


def show(lab: Lab) -> Run:
    return cli("lock", "show", "-i", str(lab.inventory))


def change(lab: Lab, tag: str) -> None:
    """A pending change (a new route), so that apply has something to confirm."""
    data = acceptance_inventory(lab.info)
    data["services"][0]["routes"].append({"path": f"/{tag}", "pool": "course"})
    lab.write(data)


def records(lab: Lab, hosts: list[str] = ALL) -> dict[str, dict[str, Any] | None]:
    """Each host's lock record, straight from the host (None: no lock there)."""
    out: dict[str, dict[str, Any] | None] = {}
    for h in hosts:
        text = lab.ssh(h, f"cat {LOCK}/info 2>/dev/null || true").out.strip()
        out[h] = json.loads(text) if text else None
    return out


def down(lab: Lab, host: str) -> None:
    """The host is gone: no route to it from here, as when it crashed behind a router. New
    connections fail at once; a session already open hangs, as TCP does on a dead link."""
    subprocess.run(["ip", "route", "add", "unreachable", f"{lab.address(host)}/32"], check=True)


def up(lab: Lab, host: str) -> None:
    subprocess.run(
        ["ip", "route", "del", "unreachable", f"{lab.address(host)}/32"],
        capture_output=True,
        check=False,
    )


@contextlib.contextmanager
def at_the_prompt(
    lab: Lab, holder: str, hostname: str | None = None, lease: str | None = None
) -> Iterator[int]:
    """`clusterctl apply` on a terminal, stopped at "Apply these changes?" with the lock held;
    the pid it runs as (SIGKILL it to lose the holder). Killed at the end if still alive."""
    argv = [CLUSTERCTL, "apply", "-i", str(lab.inventory)]
    if hostname:  # another machine: its own hostname (unshare execs, the pid stays the same)
        argv = [*other_machine(hostname), *argv]
    env = {**os.environ, "NO_COLOR": "1", "CLUSTERCTL_LOCK_HOLDER": holder}
    if lease:
        env["CLUSTERCTL_LOCK_LEASE"] = lease
    pid, fd = pty.fork()
    if pid == 0:  # the child: become the command
        try:
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while b"Apply these changes?" not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                assert chunk, f"apply ended before its prompt: {seen.decode(errors='replace')}"
                seen += chunk
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)


# ------------------------------------------------------------------------------ two machines

HOLD = """
import json, sys, time
from clusterctl.execute.lock import LockHeld
from clusterctl.execute.runner import cluster_lock
from clusterctl.model import load
inv = load(sys.argv[1])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
try:
    with cluster_lock(inv, "hold") as info:
        got = time.time()
        time.sleep(1.0)
        print(json.dumps({"won": [got, time.time()], "machine": info.machine}))
except LockHeld as exc:
    print(json.dumps({"held": str(exc)}))
"""


def test_two_machines_at_the_same_moment_exclude_each_other(clean: Lab) -> None:
    lab = clean
    for _ in range(2):
        start = time.time() + 1.5  # both are loaded and waiting by then
        runs = {
            "alice@laptop": OTHER_MACHINE,
            "bob@ci": [],
        }
        procs = {
            who: subprocess.Popen(
                [*prefix, sys.executable, "-c", HOLD, str(lab.inventory), str(start)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "CLUSTERCTL_LOCK_HOLDER": who},
            )
            for who, prefix in runs.items()
        }
        out = {}
        for who, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=90)
            assert proc.returncode == 0, stderr
            out[who] = json.loads(stdout)
        winners = [w for w, o in out.items() if "won" in o]
        assert len(winners) == 1, out
        (loser,) = set(out) - set(winners)
        assert f"the cluster lock is held by {winners[0]}" in out[loser]["held"], out
        assert f"lock break -i {lab.inventory}" in out[loser]["held"]
        assert out[winners[0]]["machine"] == (
            "otherbox" if winners[0] == "alice@laptop" else os.uname().nodename
        )
        assert show(lab).out.strip() == "cluster lock: free"


# ------------------------------------------------------------------------------ stale holders


def test_a_killed_apply_is_taken_over_by_the_next_run(clean: Lab) -> None:
    lab = clean
    change(lab, "killed")
    with at_the_prompt(lab, "killed@laptop") as pid:
        refused = apply(lab)  # alive: its lock holds
        assert refused.rc == 1 and "the cluster lock is held by killed@laptop" in refused.err, (
            refused
        )
        os.kill(pid, signal.SIGKILL)
    shown = show(lab)
    assert shown.rc == 0 and "held by killed@laptop" in shown.out, shown
    assert (
        f"stale: its process {pid} on {os.uname().nodename} is gone, the next command takes it over"
        in shown.out
    )
    taken = apply(lab)
    assert taken.rc == 0, taken
    assert "taking over the stale cluster lock held by killed@laptop" in taken.err
    assert f"{', '.join(ALL)}: its process {pid} on {os.uname().nodename} is gone" in taken.err
    assert show(lab).out.strip() == "cluster lock: free"


def test_a_lease_that_ran_out_is_taken_over_one_that_is_renewed_is_not(clean: Lab) -> None:
    lab = clean
    change(lab, "lease")
    with at_the_prompt(lab, "alice@laptop", hostname="otherbox", lease="4") as pid:
        time.sleep(4.5)  # longer than the lease: only its renewals keep it
        refused = apply(lab)
        assert refused.rc == 1 and "held by alice@laptop" in refused.err, refused
        assert all(r is not None and r["machine"] == "otherbox" for r in records(lab).values())
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
    # Another machine's pid proves nothing here: only the lease can run out, and it has not.
    early = show(lab)
    assert "held by alice@laptop" in early.out and "stale" not in early.out, early
    time.sleep(max(0.0, killed + 4 + 2 - time.monotonic()))
    taken = apply(lab)
    assert taken.rc == 0, taken
    assert "taking over the stale cluster lock held by alice@laptop" in taken.err
    assert "its lease of 4s ran out" in taken.err


# ------------------------------------------------------------------------------ a host down


def test_with_one_host_down_apply_limit_takes_the_lock_and_works(clean: Lab) -> None:
    lab = clean
    change(lab, "onedown")
    down(lab, "lb1")  # the first front end: the old lock's only host
    with at_the_prompt(lab, "alice@laptop") as pid:
        refused = apply(lab, "--limit", "lb2,lb3")
        assert refused.rc == 1 and "held by alice@laptop" in refused.err, refused
        assert "(on 5 of 6 hosts: lb2, lb3, be1, be2, be3)" in refused.err
        os.kill(pid, signal.SIGKILL)
    run = apply(lab, "--limit", "lb2,lb3")
    assert run.rc == 0, run
    assert "taking over the stale cluster lock held by alice@laptop" in run.err
    assert run.err.count("lb1: cannot reach") == 1 and "lb1: lb1:" not in run.err
    assert records(lab, ALL[1:]) == dict.fromkeys(ALL[1:])  # given back everywhere
    # Without --limit the lost host is named, once, in the summary (an SSHError names it already).
    whole = apply(lab)
    assert whole.rc == 1 and "1 of 3 front ends not applied: lb1: cannot reach" in whole.err, whole
    assert "lb1: lb1:" not in whole.err
    up(lab, "lb1")
    assert show(lab).out.strip() == "cluster lock: free"


def read_until(fd: int, marker: bytes | None, timeout: float = 60) -> bytes:
    """What a pty shows until `marker` appears (or, with None, until the command ends)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while marker is None or marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, seen.decode(errors="replace")
        ready, _, _ = select.select([fd], [], [], left)
        try:
            chunk = os.read(fd, 65536) if ready else b""
        except OSError:  # EIO: the command ended
            chunk = b""
        if ready and not chunk:
            assert marker is None, f"ended before {marker!r}: {seen.decode(errors='replace')}"
            break
        seen += chunk
    return seen


def test_a_release_that_fails_fails_the_command_with_the_way_out(clean: Lab) -> None:
    lab = clean
    change(lab, "release")
    argv = [CLUSTERCTL, "apply", "-i", str(lab.inventory), "--limit", "lb1"]
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execvpe(CLUSTERCTL, argv, {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
        finally:
            os._exit(127)
    try:
        seen = read_until(fd, b"Apply these changes?")
        lock_id = records(lab, ["lb3"])["lb3"]["id"]  # type: ignore[index]
        down(lab, "lb3")  # lost while the command runs: its copy cannot be given back
        os.write(fd, b"y\n")
        seen += read_until(fd, None, timeout=120)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        up(lab, "lb3")
    text = seen.decode(errors="replace")
    flat = " ".join(text.split())
    assert os.waitstatus_to_exitcode(status) == 1, text
    assert "lb1: changed" in flat or "lb1 │ changed" in flat, text
    assert f"the cluster lock {lock_id} is still held on lb3 (lb3: " in flat, text
    assert f"clear it with: clusterctl lock break -i {lab.inventory} {lock_id}" in flat, text
    assert records(lab, ["lb3"])["lb3"]["id"] == lock_id  # type: ignore[index]
    broken = cli("lock", "break", "-i", str(lab.inventory), lock_id)
    assert broken.rc == 0 and f"lock {lock_id} broken on 1 of 6 hosts (lb3)" in broken.out, broken


# ------------------------------------------------------------------------------ the lock's own failures


@contextlib.contextmanager
def full_state_dir(lab: Lab, hosts: list[str]) -> Iterator[None]:
    """/var/lib/clusterctl on a 1 MiB tmpfs holding a copy of it, filled to the last block."""
    for h in hosts:
        lab.ssh(
            h,
            "set -e; d=$(mktemp -d /run/full.XXXXXX); mount -t tmpfs -o size=1m full $d; "
            "cp -a /var/lib/clusterctl/. $d/; dd if=/dev/zero of=$d/.filler bs=4k 2>/dev/null || true; "
            "mount --move $d /var/lib/clusterctl; rmdir $d",
        )
    try:
        yield
    finally:
        for h in hosts:
            lab.ssh(h, "umount /var/lib/clusterctl || umount -l /var/lib/clusterctl", check=False)


def test_a_record_that_cannot_be_written_fails_cleanly(clean: Lab) -> None:
    lab = clean
    change(lab, "full")
    before = {
        h: lab.ssh(h, "cat /etc/haproxy/haproxy.cfg /etc/nginx/nginx.conf 2>/dev/null; true").out
        for h in ("lb1", "lb2")
    }
    with full_state_dir(lab, ["lb1", "lb2", "lb3"]):
        run = apply(lab)
        assert run.rc == 1, run
        flat = " ".join(run.err.split())
        for h in ("lb1", "lb2", "lb3"):
            assert (
                f"{h}: cannot write the lock record: cat: write error: No space left on device"
                in flat
            ), run
        assert "the lock needs 4 of 6 hosts" in flat
        assert records(lab) == dict.fromkeys(ALL)  # cleaned up everywhere, the full ones too
        for h in ("lb1", "lb2"):
            assert (
                lab.ssh(
                    h, "cat /etc/haproxy/haproxy.cfg /etc/nginx/nginx.conf 2>/dev/null; true"
                ).out
                == before[h]
            )
    # One full host (a backend: a front end would also fail apply's own staging there): the
    # others carry the lock, with a warning.
    with full_state_dir(lab, ["be2"]):
        run = apply(lab)
        assert run.rc == 0, run
        assert (
            "warning: the cluster lock holds on 5 of 6 hosts; be2: cannot write the lock record"
            in run.err
        )


def test_a_lock_without_a_record_is_held_and_can_be_broken(clean: Lab, tmp_path: Path) -> None:
    lab = clean
    for h in ("lb1", "be1", "be3"):  # half the hosts, the tie-breaking first front end among them
        lab.ssh(h, f"mkdir -p {LOCK}")
    shown = show(lab)
    assert shown.rc == 0, shown
    hint = f"clusterctl lock break -i {lab.inventory} --no-record"
    assert shown.out.strip() == (
        f"cluster lock: held on lb1, be1, be3 by a lock with no readable record ({LOCK}); "
        f"if no clusterctl runs, break it with: {hint}"
    )
    refused = apply(lab)
    assert refused.rc == 1, refused
    assert hint in " ".join(refused.err.split())
    helptext = " ".join(cli("lock", "break", "--help").out.split())
    assert "--no-record" in helptext and "no readable record" in helptext
    # The hint as printed, pasted in another folder (its inventory path is absolute).
    broken = subprocess.run(
        [CLUSTERCTL, *hint.split()[1:]], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert broken.returncode == 0, broken.stderr
    assert (
        "the lock with no readable record broken on 3 of 6 hosts (lb1, be1, be3)" in broken.stdout
    )
    assert show(lab).out.strip() == "cluster lock: free"


def test_with_one_backend_down_rollout_of_the_others_works(clean: Lab) -> None:
    """be1 gone: the lock (5 of 6) and the rollout's record (written to the 5) still work for
    a rollout of pool course (be3 alone here, so the floor is 0)."""
    lab = clean
    data = acceptance_inventory(lab.info)
    data["pools"][0]["servers"] = [s for s in data["pools"][0]["servers"] if s["name"] != "be3"]
    data.setdefault("deploy", {})["min_available"] = 0
    lab.write(data)
    assert apply(lab).rc == 0
    down(lab, "be1")
    run = cli("rollout", "-i", str(lab.inventory), "--version", "7.7-lock", "--pool", "course")
    up(lab, "be1")
    assert run.rc == 0, run
    assert "rolled out 7.7-lock to be3" in run.out
    assert "warning: the cluster lock holds on 5 of 6 hosts; be1: cannot reach" in run.err
    saved = records_of(lab, f"/var/lib/clusterctl/rollout/{LAB}.json")
    assert saved["be1"] is None and all(saved[h] for h in ALL if h != "be1"), saved


def records_of(lab: Lab, path: str) -> dict[str, str | None]:
    return {h: lab.ssh(h, f"cat {path} 2>/dev/null || true").out.strip() or None for h in ALL}


# ------------------------------------------------------------------------------ the rollout record


def test_the_rollout_record_survives_the_loss_of_any_one_host(clean: Lab) -> None:
    """Written with lb1 (its old home) down, read back with be2 down and lb1 holding an older
    copy: the newest wins, by its sequence number."""
    lab = clean
    from clusterctl.execute import records as rec
    from clusterctl.execute.endpoints import frontend_endpoints, server_endpoints
    from clusterctl.execute.ssh import Remote
    from clusterctl.model import load

    inv = load(lab.inventory)
    eps = {**frontend_endpoints(inv), **server_endpoints(inv)}
    path = f"/var/lib/clusterctl/rollout/{LAB}-test.json"

    def opener(name: str) -> rec.Opener:
        return lambda: Remote.connect(eps[name])

    hosts = {n: opener(n) for n in ALL}
    try:
        rec.save_record(hosts, "lb1", path, {"version": "1", "done": []})
        down(lab, "lb1")
        rec._down.clear()
        rec.save_record(hosts, "lb1", path, {"version": "1", "done": ["be1"]})
        up(lab, "lb1")
        down(lab, "be2")
        rec._down.clear()
        rec._last_seq.clear()  # as a new process would: nothing known but what the hosts say
        assert rec.load_record(hosts, "lb1", path) == {"version": "1", "done": ["be1"]}
        assert '"done": []' in lab.ssh("lb1", f"cat {path}").out  # lb1 has the older copy
    finally:
        up(lab, "be2")
        for h in ALL:
            lab.ssh(h, f"rm -f {path}")
