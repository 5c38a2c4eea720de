"""Issue #9: a failed apply never stops a front end from serving (the bind preflight).

One lab (`tpf`, one front end of each kind) for the module. A config that would not start is
refused at plan, or on the host right before staging (a port taken while the plan was read),
before anything is replaced, while the front ends serve under load; and a reload that still
fails (a port taken after every check) is rolled back at once with the server's own words.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import shlex
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clusterctl.loadgen import Load, LoadReport
from tests.integration.labfixtures import (
    CLUSTERCTL,
    Lab,
    Run,
    acceptance_inventory,
    cli,
    needs_root,
    own_lab,
    plan_json,
    results_table,
    wait_serving,
)
from tests.integration.test_apply_faults import failure_of, snapshots, squatters

pytestmark = [pytest.mark.lab, needs_root]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with own_lab("tpf", tmp_path_factory.mktemp("tpf")) as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def base(lab: Lab) -> dict[str, Any]:
    data = acceptance_inventory(lab.info)
    lab.write(data)
    run = cli("apply", "-i", str(lab.inventory), "--yes")
    assert run.rc == 0, run
    for fe in lab.frontends:
        wait_serving(fe.address)
    return data


@contextlib.contextmanager
def under_load(lab: Lab, seconds: float = 20.0) -> Iterator[dict[str, LoadReport]]:
    """Every front end under a bounded load of new connections (Connection: close), as wrk
    with that header gives: a refused connection counts, none can hide in a kept-alive one."""
    loads = {
        fe.name: Load(f"http://{fe.address}/", clients=3, duration=seconds, keepalive=False)
        for fe in lab.frontends
    }
    for load in loads.values():
        load.start()
    reports: dict[str, LoadReport] = {}
    try:
        yield reports
    finally:
        for name, load in loads.items():
            reports[name] = load.stop()


def with_listener(base: dict[str, Any], address: str | None, port: int) -> dict[str, Any]:
    data: dict[str, Any] = {**base, "services": [dict(s) for s in base["services"]]}
    listen = {"port": port} if address is None else {"port": port, "address": address}
    data["services"][0]["listen"] = [*base["services"][0]["listen"], listen]
    return data


def test_a_listener_on_an_address_the_host_lacks_is_refused_before_anything_moves(
    lab: Lab, base: dict[str, Any]
) -> None:
    absent = lab.spare_address(240)  # in the lab's 198.18.0.0/15 subnet, on no host
    lab.write(with_listener(base, absent, 8088))
    before = snapshots(lab)
    pids = {fe.name: lab.pids(fe.name) for fe in lab.frontends}

    plan = plan_json(lab.inventory)
    assert plan["summary"] == "0 hosts to change, 0 unchanged, 3 refused", plan
    for h in plan["hosts"]:
        assert h["status"] == "refused"
        assert h["refused"] == [
            f"{absent}:8088: {absent} is not an address of this host (it has 127.0.0.1, "
            f"{lab.address(h['host'])}, ::1; net.ipv4.ip_nonlocal_bind is 0)"
        ]
    text = cli("plan", "-i", str(lab.inventory))
    assert text.rc == 1 and f"refused, would not start: {absent}:8088: {absent}" in text.out

    with under_load(lab) as reports:
        started = time.monotonic()
        run = cli("apply", "-i", str(lab.inventory), "--yes")
        took = time.monotonic() - started
    assert run.rc == 1, run
    assert results_table(run) == dict.fromkeys(("lb1", "lb2", "lb3"), "failed"), run
    for fe in lab.frontends:
        words = failure_of(run, fe.name)
        assert words.startswith(f"preflight: {absent}:8088: {absent} is not an address"), words
    assert snapshots(lab) == before
    assert lab.not_reloaded(pids) == {}
    for name, report in reports.items():  # nobody noticed: not a refused connection, no 5xx
        assert report.requests > 50 and report.failed == 0, (name, report)
        assert set(report.statuses) == {200}, (name, report.statuses)
    print(
        f"\nbad bind refused by apply in {took:.2f}s; load: "
        + ", ".join(f"{n} {r.requests} requests, {r.failed} failed" for n, r in reports.items())
    )


def test_non_local_binding_lets_the_same_change_through_the_preflight(
    lab: Lab, base: dict[str, Any]
) -> None:
    """With net.ipv4.ip_nonlocal_bind=1 (a keepalived pair) the address is no reason to refuse:
    plan shows the change (the probe then decides, as test_apply_faults shows)."""
    absent = lab.spare_address(241)
    lab.write(with_listener(base, absent, 8089))
    for fe in lab.frontends:
        lab.ssh(fe.name, "sysctl -qw net.ipv4.ip_nonlocal_bind=1")
    try:
        plan = plan_json(lab.inventory)
        assert {h["host"]: h["status"] for h in plan["hosts"]} == dict.fromkeys(
            ("lb1", "lb2", "lb3"), "change"
        ), plan
    finally:
        for fe in lab.frontends:
            lab.ssh(fe.name, "sysctl -qw net.ipv4.ip_nonlocal_bind=0", check=False)


def apply_taking_port_at_confirmation(lab: Lab, port: int) -> tuple[str, int, dict[str, int]]:
    """`clusterctl apply` on a terminal: the plan is shown (and preflight-checked) with the
    port free; while the operator reads it, another process takes the port; then `y`."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command under test, as a user runs it
        os.environ.update({"NO_COLOR": "1", "COLUMNS": "200"})
        os.execv(CLUSTERCTL, [CLUSTERCTL, "apply", "-i", str(lab.inventory)])
    out = b""
    deadline = time.monotonic() + 60
    with contextlib.ExitStack() as stack:
        while b"Apply these changes?" not in out:
            assert time.monotonic() < deadline, out.decode(errors="replace")
            if select.select([fd], [], [], 1.0)[0]:
                out += os.read(fd, 65536)
        held = stack.enter_context(squatters(lab, port))
        os.write(fd, b"y\n")
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the child is gone and the terminal closed
                break
            if not data:
                break
            out += data
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        return (
            out.decode(errors="replace").replace("\r\n", "\n"),
            os.waitstatus_to_exitcode(status),
            held,
        )


def test_a_port_taken_while_the_plan_is_read_is_refused_before_anything_moves(
    lab: Lab, base: dict[str, Any]
) -> None:
    """The preflight runs again on each host right before staging: a port another process
    took while the operator read the plan stops the apply there, and nobody notices."""
    port = 8183
    lab.write(with_listener(base, None, port))
    before = snapshots(lab)
    pids = {fe.name: lab.pids(fe.name) for fe in lab.frontends}
    with under_load(lab) as reports:
        text, rc, held = apply_taking_port_at_confirmation(lab, port)
    assert rc == 1, text
    run = Run([CLUSTERCTL, "apply"], rc, text, text, 0.0)  # a terminal has one stream
    for fe in lab.frontends:
        assert failure_of(run, fe.name) == (
            f"preflight: 0.0.0.0:{port}: 0.0.0.0:{port} is already in use by python3 "
            f"(pid {held[fe.name]})"
        )
    assert snapshots(lab) == before
    assert lab.not_reloaded(pids) == {}
    for name, report in reports.items():
        assert report.requests > 50 and report.failed == 0, (name, report)


@contextlib.contextmanager
def squatters_at_the_swap(lab: Lab, port: int) -> Iterator[dict[str, int]]:
    """On every front end, a process that takes `port` the moment apply marks its files
    swapped (the reload-pending marker), that is after every check and before the reload."""
    take = (
        "import os, socket, sys, time\n"
        "end = time.monotonic() + 60\n"
        "while not os.path.exists(sys.argv[1]) and time.monotonic() < end: time.sleep(0.002)\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('0.0.0.0', int(sys.argv[2]))); s.listen(8); time.sleep(60)\n"
    )
    pids: dict[str, int] = {}
    try:
        for fe in lab.frontends:
            marker = f"/var/lib/clusterctl/frontends/{fe.name}/reload-pending"
            out = lab.ssh(
                fe.name,
                f"setsid python3 -c {shlex.quote(take)} {marker} {port} "
                "</dev/null >/dev/null 2>&1 & echo $!",
            ).out
            pids[fe.name] = int(out.split()[0])
        yield pids
    finally:
        for host, pid in pids.items():
            lab.ssh(host, f"kill {pid}", check=False)


def test_a_reload_that_fails_after_every_check_is_rolled_back_at_once(
    lab: Lab, base: dict[str, Any]
) -> None:
    port = 8184
    lab.write(with_listener(base, None, port))
    before = snapshots(lab)
    with squatters_at_the_swap(lab, port) as held, under_load(lab) as reports:
        run = cli("apply", "-i", str(lab.inventory), "--yes")
    assert run.rc == 1, run
    assert results_table(run) == dict.fromkeys(("lb1", "lb2", "lb3"), "rolled back"), run
    words = {fe.name: failure_of(run, fe.name) for fe in lab.frontends}
    # The server's own words, not "no new workers started".
    assert "cannot bind socket (Address already in use)" in words["lb1"], words["lb1"]
    assert f"bind() to 0.0.0.0:{port} failed (98: Address already in use)" in words["lb2"]
    assert "no listening sockets available, shutting down" in words["lb3"]
    for fe in lab.frontends:
        assert (
            f"0.0.0.0:{port} is already in use by python3 (pid {held[fe.name]})" in words[fe.name]
        )
        assert "the previous config was back and serving" in words[fe.name]
    assert {h: {p: s["sha256"] for p, s in snap.items()} for h, snap in snapshots(lab).items()} == {
        h: {p: s["sha256"] for p, s in snap.items()} for h, snap in before.items()
    }
    for fe in lab.frontends:
        wait_serving(fe.address)
    back = {h: float(w.rsplit("serving ", 1)[1].split(" s later")[0]) for h, w in words.items()}
    told = {}
    for h, w in words.items():
        m = re.search(r"(\d+\.\d) s after ", w)
        assert m, w
        told[h] = float(m.group(1))
    print(
        "\nreload failed after every check; failure reported (with the server's words) after: "
        + ", ".join(f"{h} {s:.1f}s" for h, s in told.items())
        + "; previous config serving again after: "
        + ", ".join(f"{h} {s:.1f}s" for h, s in back.items())
        + "; load during it: "
        + ", ".join(f"{n} {r.requests} requests, {r.failed} failed" for n, r in reports.items())
    )
