"""Issue #4, the fault list: every fault made real on a lab host, then the same three checks.

After each fault: every front end still serves (HTTP 200 through it), its live config passes
the server's own validator (run over SSH), and the next `plan` shows exactly what is left.

One lab (`tf1`) for the module. Each test starts from the base inventory (the acceptance one:
pools app and course, a /course route, a TLS service), applied if the test before left the hosts
with anything else, and undoes its fault on the hosts whatever happens.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clusterctl.execute import lock as lockmod
from clusterctl.execute.endpoints import frontend_endpoints
from clusterctl.execute.runner import cluster_lock
from clusterctl.execute.ssh import Remote
from clusterctl.model import load
from tests.integration.labfixtures import (
    CONFIG,
    Lab,
    Run,
    acceptance_inventory,
    cli,
    http_get,
    needs_root,
    own_lab,
    page_path,
    results_table,
    wait_serving,
)

pytestmark = [pytest.mark.lab, needs_root]

LAB = "tf1"
STEPS = ("validate", "upload", "backup", "rename", "reload", "probe")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with own_lab(LAB, tmp_path_factory.mktemp(LAB)) as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def base_inventory(lab: Lab) -> dict[str, Any]:
    data = acceptance_inventory(lab.info)
    lab.write(data)
    run = apply(lab)
    assert run.rc == 0, run
    for fe in lab.frontends:
        wait_serving(fe.address)
    return data


@pytest.fixture(scope="module")
def base_files(lab: Lab, base_inventory: dict[str, Any]) -> dict[str, dict[str, str]]:
    """What the hosts hold once the base inventory is applied: host -> path -> sha256."""
    return {fe.name: shas(lab.snapshot(fe.name)) for fe in lab.frontends}


@pytest.fixture
def base(
    lab: Lab, base_inventory: dict[str, Any], base_files: dict[str, dict[str, str]]
) -> Iterator[dict[str, Any]]:
    """A fresh copy of the base inventory, applied if the test before left anything else."""
    lab.write(base_inventory)
    if {fe.name: shas(lab.snapshot(fe.name)) for fe in lab.frontends} != base_files or any(
        lab.temp_files(fe.name) for fe in lab.frontends
    ):
        run = apply(lab)
        assert run.rc == 0, run
    try:
        yield copy.deepcopy(base_inventory)
    finally:
        lab.write(base_inventory)


def apply(lab: Lab, *extra: str, env: dict[str, str] | None = None) -> Run:
    return cli("apply", "-i", str(lab.inventory), "--yes", *extra, env=env)


def plan(lab: Lab, *extra: str) -> Run:
    return cli("plan", "-i", str(lab.inventory), *extra)


def with_route(data: dict[str, Any], path: str) -> dict[str, Any]:
    data["services"][0].setdefault("routes", []).append({"path": path, "pool": "course"})
    return data


def goes_to_course(address: str, path: str) -> bool:
    """Whether `path` is routed to the course pool (be3 alone) rather than spread by `app`."""
    return {http_get(address, path).backend for _ in range(6)} == {"be3"}


def failure_of(run: Run, host: str) -> str:
    """What the final `error:` line says about `host` (the whole message, not the table cell)."""
    line = next(ln for ln in run.err.splitlines() if ln.startswith("error: "))
    parts = re.split(r"; (?=lb\d+: )|(?<=not applied: )", line)
    for part in parts:
        if part.startswith(f"{host}: "):
            return part[len(host) + 2 :]
    raise AssertionError(f"{host} not named in {line!r}")


def left(lab: Lab, want_rc: int | None = None) -> dict[str, dict[str, Any]]:
    """Per host what plan says is left: status, changed paths, pending reload, temp files."""
    run = plan(lab, "--output", "json", "--detailed-exitcode")
    if want_rc is not None:
        assert run.rc == want_rc, run
    data = json.loads(run.out)
    return {
        h["host"]: {
            "status": h["status"],
            "changes": sorted(f["path"] for f in h["files"] if f["action"] != "unchanged"),
            "pending": h["pending_reload"],
            "temps": h["stale_temps"],
        }
        for h in data["hosts"]
    }


def clean(status: str = "unchanged") -> dict[str, Any]:
    return {"status": status, "changes": [], "pending": False, "temps": []}


def assert_all_serve_valid(lab: Lab) -> None:
    for fe in lab.frontends:
        wait_serving(fe.address)
        check = lab.validate(fe.name)
        assert check.rc == 0, f"{fe.name}: the live config is invalid: {check}"


def snapshots(lab: Lab) -> dict[str, dict[str, dict[str, Any]]]:
    return {fe.name: lab.snapshot(fe.name) for fe in lab.frontends}


def shas(snap: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {path: st["sha256"] for path, st in snap.items()}


def converge(lab: Lab) -> None:
    run = apply(lab)
    assert run.rc == 0, run
    assert set(results_table(run).values()) == {"changed"}, run


# ------------------------------------------------------------------------------ (a) validation


def test_a_key_that_is_not_the_certificate_s_changes_nothing(
    lab: Lab, base: dict[str, Any]
) -> None:
    """A TLS key that is not the certificate's: refused before any host is touched, with the
    inventory position of the key, and no host reloads."""
    other_key = lab.workdir / "other.key"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(other_key)],
        check=True, capture_output=True,
    )  # fmt: skip
    base["services"][1]["tls"]["key"] = "other.key"
    lab.write(base)
    before = snapshots(lab)
    pids = {fe.name: lab.pids(fe.name) for fe in lab.frontends}

    run = apply(lab)
    assert run.rc == 1, run
    assert re.search(r"inventory\.yaml:\d+:\d+: services\[1\]\.tls\.key: ", run.err), run
    assert snapshots(lab) == before  # not a byte, not an inode, not an mtime
    assert lab.not_reloaded(pids) == {}
    assert_all_serve_valid(lab)


def test_a_module_missing_on_one_host(lab: Lab, base: dict[str, Any]) -> None:
    """The Apache host's mod_headers.so is unreadable (a broken package): `apache2 -t` says so;
    the other front ends are applied."""
    module = "/usr/lib/apache2/modules/mod_headers.so"
    lab.write(with_route(base, "/a2"))
    lab.ssh("lb3", f"mount --bind /dev/null {module}")
    try:
        before = lab.snapshot("lb3")
        run = apply(lab)
        assert run.rc == 1, run
        assert results_table(run) == {"lb1": "changed", "lb2": "changed", "lb3": "failed"}, run
        words = failure_of(run, "lb3")
        assert words.startswith("validate (apache2):")
        assert f"Cannot load {module} into server" in words
        assert lab.snapshot("lb3") == before
        for fe in lab.frontends:
            wait_serving(fe.address)
    finally:
        lab.ssh("lb3", f"umount {module}", check=False)
    # The live config was never the problem: with the module back it validates as it is.
    assert_all_serve_valid(lab)
    assert left(lab, 2) == {
        "lb1": clean(),
        "lb2": clean(),
        "lb3": {"status": "change", "changes": [CONFIG["apache"]], "pending": False, "temps": []},
    }


# ------------------------------------------------------------------------------ (b) reload


@contextlib.contextmanager
def squatters(lab: Lab, port: int) -> Iterator[dict[str, int]]:
    """A process of someone else's listening on `port` on every front end."""
    listen = (
        "import socket, time\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('0.0.0.0', {port})); s.listen(8); time.sleep(600)\n"
    )
    pids: dict[str, int] = {}
    try:
        for fe in lab.frontends:
            out = lab.ssh(
                fe.name,
                f'setsid python3 -c "{listen}" </dev/null >/dev/null 2>&1 & echo $!; '
                f"for i in $(seq 50); do ss -Htln 'sport = :{port}' | grep -q . && exit 0; "
                "sleep 0.1; done; exit 1",
            ).out
            pids[fe.name] = int(out.split()[0])
        yield pids
    finally:
        for host, pid in pids.items():
            lab.ssh(host, f"kill {pid}", check=False)


def assert_rolled_back_everywhere(lab: Lab, run: Run, before: dict[str, Any]) -> None:
    """Every front end reported rolled back, holds the bytes it held before and serves."""
    assert run.rc == 1, run
    assert results_table(run) == dict.fromkeys(("lb1", "lb2", "lb3"), "rolled back"), run
    after = snapshots(lab)
    assert {h: shas(s) for h, s in after.items()} == {h: shas(s) for h, s in before.items()}
    assert_all_serve_valid(lab)


def test_b_a_taken_port_is_refused_before_the_reload(lab: Lab, base: dict[str, Any]) -> None:
    """Another process listens on the new service's port: the bind preflight (plan's facts)
    names it and nothing is replaced or reloaded. (A port taken after the plan, when only the
    reload can tell, is rolled back: test_apply_preflight.)"""
    port = 8181
    base["services"].append({"name": "extra", "listen": [{"port": port}], "default_pool": "app"})
    lab.write(base)
    before = snapshots(lab)
    pids = {fe.name: lab.pids(fe.name) for fe in lab.frontends}
    with squatters(lab, port) as held:
        run = apply(lab)
        assert run.rc == 1, run
        assert results_table(run) == dict.fromkeys(("lb1", "lb2", "lb3"), "failed"), run
        for fe in lab.frontends:
            assert failure_of(run, fe.name) == (
                f"preflight: 0.0.0.0:{port}: 0.0.0.0:{port} is already in use by python3 "
                f"(pid {held[fe.name]})"
            )
        assert snapshots(lab) == before
        assert lab.not_reloaded(pids) == {}
        assert_all_serve_valid(lab)
        assert left(lab, 1) == {
            # The new service's own unavailable page comes with it (pages are per service).
            fe.name: {"status": "refused", "changes": sorted([CONFIG[fe.kind], page_path(fe.kind, "extra")]),
                      "pending": False, "temps": []}
            for fe in lab.frontends
        }  # fmt: skip
    converge(lab)  # with the port free again, the same change goes through
    for fe in lab.frontends:
        assert http_get(fe.address, "/", port=port).status == 200


# ------------------------------------------------------------------------------ (c) probe


@contextlib.contextmanager
def nonlocal_bind(lab: Lab) -> Iterator[None]:
    """net.ipv4.ip_nonlocal_bind=1 on every front end (per network namespace), as keepalived
    pairs set it so a server can bind a virtual address the other node holds."""
    for fe in lab.frontends:
        lab.ssh(fe.name, "sysctl -qw net.ipv4.ip_nonlocal_bind=1")
    try:
        yield
    finally:
        for fe in lab.frontends:
            lab.ssh(fe.name, "sysctl -qw net.ipv4.ip_nonlocal_bind=0", check=False)


def test_c_probe_fails_after_a_good_reload_and_rolls_back(lab: Lab, base: dict[str, Any]) -> None:
    """A service on a virtual address this host does not hold: every server binds it (non-local
    bind allowed), validation and reload pass, and nothing answers there: the probe fails."""
    vip = lab.spare_address(240)
    base["services"].append(
        {"name": "vip", "listen": [{"address": vip, "port": 8088}], "default_pool": "app"}
    )
    lab.write(base)
    before = snapshots(lab)
    with nonlocal_bind(lab):
        run = apply(lab)
        assert_rolled_back_everywhere(lab, run, before)
        for fe in lab.frontends:
            words = failure_of(run, fe.name)
            assert words.startswith(f"probe: http://{vip}:8088/ does not answer: curl: "), words
        for fe in lab.frontends:  # rolled back for real: nothing bound on the vip any more
            assert not lab.ssh(fe.name, "ss -Htln 'sport = :8088'").out.strip()
        assert left(lab, 2) == {
            fe.name: {"status": "change",
                      "changes": sorted([CONFIG[fe.kind], page_path(fe.kind, "vip")]),
                      "pending": False, "temps": []}
            for fe in lab.frontends
        }  # fmt: skip


# ------------------------------------------------------------------------------ (d) killed


def break_stale_lock(lab: Lab, holder: str) -> None:
    """What an operator does with `clusterctl lock show` then `lock break ID` (in-process)."""
    inv = load(lab.inventory)
    with Remote.connect(frontend_endpoints(inv)["lb1"]) as remote:
        info = lockmod.show(remote)
        if info is not None and info.holder == holder:
            assert lockmod.release(remote, info.id)


@pytest.fixture
def base_written(lab: Lab, base_inventory: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The base inventory written but not applied: each killed-apply test starts from whatever
    the one before converged to (its own extra route), which is as good a start as any."""
    lab.write(base_inventory)
    try:
        yield copy.deepcopy(base_inventory)
    finally:
        lab.write(base_inventory)
        # A failed test must not leave its dead apply's lock behind for the next one.
        with Remote.connect(frontend_endpoints(load(lab.inventory))["lb1"]) as remote:
            info = lockmod.show(remote)
            if info is not None and info.holder.startswith("killed-after-"):
                lockmod.release(remote, info.id)


@pytest.mark.parametrize("step", STEPS)
def test_d_apply_killed_after_each_step(lab: Lab, base_written: dict[str, Any], step: str) -> None:
    """`--forks 1`: lb1 goes first and apply dies right after `step` on it, as a killed CI job
    would (os._exit: no cleanup, SSH connections dropped); lb2 and lb3 are never touched."""
    route = f"/killed-{step}"
    if step == "backup":  # this one goes back to the inventory the hosts have: make it base
        assert apply(lab).rc == 0
    lab.write(with_route(copy.deepcopy(base_written), route))
    before = snapshots(lab)
    holder = f"killed-after-{step}"

    run = apply(lab, "--forks", "1", env={"CLUSTERCTL_FAULT_EXIT_AFTER": step,
                                           "CLUSTERCTL_LOCK_HOLDER": holder})  # fmt: skip
    assert run.rc == 137, run

    assert_all_serve_valid(lab)
    during = snapshots(lab)
    assert during["lb2"] == before["lb2"] and during["lb3"] == before["lb3"]
    config = CONFIG["haproxy"]
    temp = "/etc/haproxy/.haproxy.cfg.clusterctl-new"
    swapped = step in ("rename", "reload", "probe")
    assert (shas(during["lb1"]) != shas(before["lb1"])) == swapped
    assert lab.temp_files("lb1") == ([temp] if step in ("upload", "backup") else [])
    # The new route serves once the reload happened (and only then).
    assert goes_to_course(lab.address("lb1"), route) == (step in ("reload", "probe"))

    state = left(lab, 2)
    for host in ("lb2", "lb3"):
        assert state[host] == {"status": "change", "changes": [CONFIG[lab.kind(host)]],
                               "pending": False, "temps": []}  # fmt: skip
    if step == "validate":
        assert state["lb1"] == {"status": "change", "changes": [config], "pending": False,
                                "temps": []}  # fmt: skip
    elif step in ("upload", "backup"):
        assert state["lb1"] == {"status": "change", "changes": [config], "pending": False,
                                "temps": [temp]}  # fmt: skip
    else:
        assert state["lb1"] == {"status": "reload pending", "changes": [], "pending": True,
                                "temps": []}  # fmt: skip
    if step == "upload":
        assert f"left-over temporary file to remove: {temp}" in plan(lab).out
    if step == "rename":
        assert "reload pending: an earlier apply swapped files but did not reload" in plan(lab).out

    # The dead apply's cluster lock (what the lock's own tests cover) is broken as by an operator.
    break_stale_lock(lab, holder)

    if step == "backup":
        # Back to the inventory the hosts have: only the left-over temporary file is left.
        lab.write(base_written)
        assert left(lab, 2) == {
            "lb1": {"status": "clean up", "changes": [], "pending": False, "temps": [temp]},
            "lb2": clean(),
            "lb3": clean(),
        }
    run = apply(lab)
    assert run.rc == 0, run
    if swapped:  # the next apply finishes the reload; then there is nothing left to do
        assert "finished a pending reload" in run.out
        assert plan(lab, "--detailed-exitcode").rc == 0
    after = snapshots(lab)
    for fe in lab.frontends:  # and in between, every file was whole: the old or the new one
        for path, st in during[fe.name].items():
            assert st["sha256"] in (before[fe.name][path]["sha256"], after[fe.name][path]["sha256"])
    assert not lab.temp_files("lb1")
    assert_all_serve_valid(lab)


# ------------------------------------------------------------------------------ (e) unreachable


def test_e_one_unreachable_front_end_among_several(lab: Lab, base: dict[str, Any]) -> None:
    """lb9 is in the inventory but nothing answers at its address (a lab address no host has,
    with the lab's known_hosts): the others are applied, lb9 is named, the exit is non-zero."""
    ghost = lab.spare_address(250)
    base["frontends"].append(
        {
            "name": "lb9",
            "kind": "nginx",
            "address": ghost,
            "reload": ["/srv/lab/bin/lab-service", "nginx", "reload"],
            "start": ["/srv/lab/bin/lab-service", "nginx", "start"],
        }
    )
    lab.write(with_route(base, "/e"))
    run = apply(lab)
    assert run.rc == 1, run
    assert results_table(run) == {
        "lb1": "changed",
        "lb2": "changed",
        "lb3": "changed",
        "lb9": "failed",
    }, run
    assert f"cannot reach {ghost}:22" in failure_of(run, "lb9"), run
    assert "1 of 4 front ends not applied" in run.err
    assert_all_serve_valid(lab)
    for fe in lab.frontends:
        assert goes_to_course(fe.address, "/e")
    # plan: exit 1 (a host it cannot see is an error), lb9 named, the others done.
    unreachable = plan(lab, "--output", "json", "--detailed-exitcode")
    assert unreachable.rc == 1, unreachable
    data = json.loads(unreachable.out)
    assert data["summary"] == "0 hosts to change, 3 unchanged, 1 unreachable"
    ghost_plan = next(h for h in data["hosts"] if h["host"] == "lb9")
    assert (
        ghost_plan["status"] == "unreachable" and f"cannot reach {ghost}:22" in ghost_plan["error"]
    )
    assert {h["host"]: h["status"] for h in data["hosts"] if h["host"] != "lb9"} == {
        "lb1": "unchanged",
        "lb2": "unchanged",
        "lb3": "unchanged",
    }


# ------------------------------------------------------------------------------ (f) disk


@contextlib.contextmanager
def read_only_and_full(lab: Lab) -> Iterator[None]:
    """lb1: /etc/haproxy read-only (its bind remounted ro inside lb1's mount namespace).
    lb2: /etc/nginx on a 1 MiB tmpfs holding a copy of it, filled to the last block."""
    lab.ssh("lb1", "mount -o remount,bind,ro /etc/haproxy")
    try:
        lab.ssh(
            "lb2",
            "set -e; d=$(mktemp -d /run/full.XXXXXX); mount -t tmpfs -o size=1m full $d; "
            "cp -a /etc/nginx/. $d/; dd if=/dev/zero of=$d/.filler bs=4k 2>/dev/null || true; "
            "mount --move $d /etc/nginx; rmdir $d; df -h /etc/nginx | tail -1",
        )
        try:
            yield
        finally:
            lab.ssh("lb2", "umount /etc/nginx || umount -l /etc/nginx", check=False)
    finally:
        lab.ssh("lb1", "mount -o remount,bind,rw /etc/haproxy", check=False)


def test_f_read_only_and_full_targets(lab: Lab, base: dict[str, Any]) -> None:
    lab.write(with_route(base, "/f"))
    before = snapshots(lab)
    with read_only_and_full(lab):
        run = apply(lab)
        assert run.rc == 1, run
        assert results_table(run) == {"lb1": "failed", "lb2": "failed", "lb3": "changed"}, run
        lb1, lb2 = failure_of(run, "lb1"), failure_of(run, "lb2")
        assert lb1.startswith("upload /etc/haproxy/.haproxy.cfg.clusterctl-new:"), lb1
        assert "Read-only file system" in lb1
        assert lb2.startswith("upload /etc/nginx/.nginx.conf.clusterctl-new:"), lb2
        assert "No space left on device" in lb2
        for host in ("lb1", "lb2"):  # (lb2's files are copies on the tmpfs: same bytes)
            assert shas(lab.snapshot(host)) == shas(before[host])
            assert not lab.temp_files(host), "a failed upload leaves no partial file"
        assert_all_serve_valid(lab)
        assert left(lab, 2) == {
            "lb1": {"status": "change", "changes": [CONFIG["haproxy"]], "pending": False,
                    "temps": []},
            "lb2": {"status": "change", "changes": [CONFIG["nginx"]], "pending": False,
                    "temps": []},
            "lb3": clean(),
        }  # fmt: skip
    for host in ("lb1", "lb2"):  # the real folders, back in view: untouched
        assert lab.snapshot(host) == before[host]


# ------------------------------------------------------------------------------ (g) the lock


def test_g_a_second_apply_meets_the_lock(lab: Lab, base: dict[str, Any]) -> None:
    """Someone else's apply holds the cluster lock (a live process): apply refuses, naming the
    holder, and changes nothing; with --lock-wait it waits for the holder, then applies. (How
    the lock itself is kept, taken over and broken: test_lock.)"""
    inv = load(lab.inventory)
    taken, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def hold() -> None:
        os.environ["CLUSTERCTL_LOCK_HOLDER"] = "alice@laptop"
        try:
            with cluster_lock(inv, "apply", notify=lambda _: None):
                taken.set()
                release.wait(60)
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)
            taken.set()
        finally:
            os.environ.pop("CLUSTERCTL_LOCK_HOLDER", None)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(30) and not failures, failures
        lab.write(with_route(base, "/g"))
        before = snapshots(lab)
        refused = apply(lab)
        assert refused.rc == 1, refused
        assert "held by alice@laptop" in refused.err and "--lock-wait" in refused.err, refused
        assert snapshots(lab) == before

        threading.Timer(3, release.set).start()
        started = time.monotonic()
        waited = apply(lab, "--lock-wait", "30")
        assert waited.rc == 0, waited
        assert time.monotonic() - started >= 3
        assert set(results_table(waited).values()) == {"changed"}
    finally:
        release.set()
        holder.join(30)
