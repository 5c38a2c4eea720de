"""Issue #4, acceptance: `clusterctl plan` and `apply` against a real lab over real SSH.

One lab (`ta1`: lb1 haproxy, lb2 nginx, lb3 apache, be1..be3) for the whole module; the tests
run in file order and each leaves the cluster converged for the next. The CLI runs as a user
runs it (a subprocess, NO_COLOR=1, stdin not a terminal); the checks look at the hosts with the
real ssh client and at the service with plain HTTP to each front end's address.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterctl import lab as labmod
from tests.integration.labfixtures import (
    CONFIG,
    TLS_FILES,
    Lab,
    LoadResult,
    Run,
    acceptance_inventory,
    cli,
    dump_yaml,
    host_status,
    http_get,
    keepalive_load,
    needs_root,
    own_lab,
    plan_json,
    results_table,
    wait_serving,
)

pytestmark = [pytest.mark.lab, needs_root]

LAB = "ta1"
KEY_FILE = Path(__file__).resolve().parents[2] / "inventories" / "files" / "example.com.key"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with own_lab(LAB, tmp_path_factory.mktemp(LAB)) as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def inventory(lab: Lab) -> dict[str, Any]:
    """The acceptance inventory (course pool, /course route, TLS service), written once."""
    data = acceptance_inventory(lab.info)
    lab.write(data)
    return data


@pytest.fixture
def applied(lab: Lab, inventory: dict[str, Any]) -> dict[str, Any]:
    """The acceptance inventory, applied (a no-op when the tests before did it): lets a test
    that needs a serving cluster run on its own too."""
    lab.write(inventory)
    run = apply(lab)
    assert run.rc == 0, run
    for fe in lab.frontends:
        wait_serving(fe.address)
    return copy.deepcopy(inventory)


def apply(lab: Lab, *extra: str) -> Run:
    return cli("apply", "-i", str(lab.inventory), "--yes", *extra)


def plan(lab: Lab, *extra: str) -> Run:
    return cli("plan", "-i", str(lab.inventory), *extra)


def key_fragments() -> list[str]:
    """Pieces of the private key a leak would show: every base64 line of its body."""
    lines = KEY_FILE.read_text().splitlines()
    body = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("-----")]
    assert body
    return [*body, "".join(body)[:40]]


def assert_no_secret(*runs: Run) -> None:
    for run in runs:
        for piece in key_fragments():
            assert piece not in run.out and piece not in run.err, f"key material printed by {run}"


def sticky_cookie(reply_cookies: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in reply_cookies.items() if k == "SRVID"}


# ------------------------------------------------------------------------------ before apply


def test_plan_on_a_fresh_lab_shows_a_diff_and_exits_2(lab: Lab, inventory: dict[str, Any]) -> None:
    run = plan(lab, "--detailed-exitcode")
    assert run.rc == 2, run
    for fe in lab.frontends:
        assert f"{fe.name} ({fe.kind}): change" in run.out
        config = CONFIG[fe.kind]
        assert f"--- {config} (live)" in run.out
        assert f"+++ {config} (clusterctl)" in run.out
    assert "-# clusterctl lab: minimal" in run.out  # the lab's own config, going away
    assert "+# Managed by clusterctl" in run.out
    assert "3 hosts to change, 0 unchanged" in run.out
    assert_no_secret(run)  # the key's diff is a digest
    # Without --detailed-exitcode pending changes are not an error.
    assert plan(lab).rc == 0


def test_plan_json_has_hosts_and_files(lab: Lab, inventory: dict[str, Any]) -> None:
    run = plan(lab, "--output", "json")
    assert run.rc == 0, run
    assert_no_secret(run)
    data = json.loads(run.out)
    assert data["changed"] == 3
    assert [h["host"] for h in data["hosts"]] == ["lb1", "lb2", "lb3"]
    for h in data["hosts"]:
        kind = lab.kind(h["host"])
        assert h["kind"] == kind and h["status"] == "change" and h["error"] is None
        files = {f["path"]: f for f in h["files"]}
        assert {CONFIG[kind], *TLS_FILES[kind]} <= set(files)  # (and helper files, e.g. Lua)
        assert files[CONFIG[kind]]["action"] == "update"
        assert files[CONFIG[kind]]["diff"], "the config's diff is in the JSON"
        for path, (mode, secret) in TLS_FILES[kind].items():
            assert files[path]["action"] == "create"
            assert files[path]["mode"] == f"{mode:04o}"
            assert files[path]["secret"] is secret
            if secret:  # a digest, never the content
                assert all(
                    "(secret, sha256:" in ln or ln.startswith(("---", "+++", "-(secret"))
                    for ln in files[path]["diff"]
                )


def test_apply_refuses_without_yes_when_stdin_is_not_a_tty(
    lab: Lab, inventory: dict[str, Any]
) -> None:
    before = {fe.name: lab.snapshot(fe.name) for fe in lab.frontends}
    run = cli("apply", "-i", str(lab.inventory), stdin="y\n")
    assert run.rc == 1, run
    assert "apply needs confirmation" in run.err and "--yes" in run.err
    assert {fe.name: lab.snapshot(fe.name) for fe in lab.frontends} == before
    assert plan(lab, "--detailed-exitcode").rc == 2  # still everything to do


# ------------------------------------------------------------------------------ apply


def test_apply_makes_every_kind_serve_the_routes(lab: Lab, inventory: dict[str, Any]) -> None:
    run = apply(lab)
    assert run.rc == 0, run
    assert_no_secret(run)
    table = results_table(run)
    assert {fe.name: table.get(fe.name) for fe in lab.frontends} == {
        "lb1": "changed",
        "lb2": "changed",
        "lb3": "changed",
    }, run
    for fe in lab.frontends:
        wait_serving(fe.address)
        # /course (and below it) goes to the course pool: be3 alone.
        for path in ("/course", "/course/lesson/1", "/course?x=1"):
            for _ in range(3):
                reply = http_get(fe.address, path)
                assert (reply.status, reply.backend) == (200, "be3"), (fe.name, path, reply)
        # / is spread over be1..be3 ...
        first = [http_get(fe.address, "/") for _ in range(12)]
        assert all(r.status == 200 for r in first)
        seen = {r.backend for r in first}
        assert len(seen) >= 2 and seen <= {"be1", "be2", "be3"}, (fe.name, seen)
        # ... and a client that sends back the sticky cookie stays on its server.
        for r in first[:3]:
            cookie = sticky_cookie(r.cookies)
            assert cookie, (fe.name, "no SRVID cookie set", r.cookies)
            again = {http_get(fe.address, "/", cookies=cookie).backend for _ in range(8)}
            assert again == {r.backend}, (fe.name, cookie, again)
        # The TLS service answers with the inventory's certificate (checked against it).
        secure = http_get(fe.address, "/", tls=True)
        assert secure.status == 200 and secure.backend in {"be1", "be2", "be3"}


def test_plan_after_apply_exits_0(lab: Lab, inventory: dict[str, Any]) -> None:
    run = plan(lab, "--detailed-exitcode")
    assert run.rc == 0, run
    assert "0 hosts to change, 3 unchanged" in run.out
    assert host_status(plan_json(lab.inventory)) == {
        "lb1": "unchanged",
        "lb2": "unchanged",
        "lb3": "unchanged",
    }


def test_second_apply_is_idempotent(lab: Lab, inventory: dict[str, Any]) -> None:
    files = {fe.name: lab.snapshot(fe.name) for fe in lab.frontends}
    pids = {fe.name: lab.pids(fe.name) for fe in lab.frontends}
    run = apply(lab)
    assert run.rc == 0, run
    for fe in lab.frontends:
        assert f"{fe.name} ({fe.kind}): unchanged" in run.out
    assert "nothing to do" in run.out
    # Not rewritten (same inode, same mtime to the nanosecond), not reloaded (same workers).
    assert {fe.name: lab.snapshot(fe.name) for fe in lab.frontends} == files
    assert lab.not_reloaded(pids) == {}


def test_installed_modes_and_owners(lab: Lab, inventory: dict[str, Any]) -> None:
    cert = (lab.workdir / "example.com.crt").read_bytes()
    key = (lab.workdir / "example.com.key").read_bytes()
    for fe in lab.frontends:
        snap = lab.snapshot(fe.name)
        assert snap[CONFIG[fe.kind]]["mode"] == 0o644
        for path, (mode, _secret) in TLS_FILES[fe.kind].items():
            assert snap[path]["mode"] == mode, (fe.name, path, oct(snap[path]["mode"]))
        for path, st in snap.items():
            assert (st["owner"], st["group"]) == ("root", "root"), (fe.name, path, st)
        # The bytes too: haproxy gets one PEM (certificate then key), the others two files.
        if fe.kind == "haproxy":
            want = {"/etc/haproxy/certs/secure.pem": hashlib.sha256(cert + key).hexdigest()}
        else:
            tls = "/etc/nginx/tls" if fe.kind == "nginx" else "/etc/apache2/tls"
            want = {
                f"{tls}/secure.crt": hashlib.sha256(cert).hexdigest(),
                f"{tls}/secure.key": hashlib.sha256(key).hexdigest(),
            }
        assert {p: snap[p]["sha256"] for p in want} == want
        assert not lab.temp_files(fe.name)


def test_limit_lb2_touches_only_lb2(lab: Lab, applied: dict[str, Any]) -> None:
    data = copy.deepcopy(applied)
    data["services"][0]["routes"].append({"path": "/limited", "pool": "course"})
    lab.write(data)
    files = {fe.name: lab.snapshot(fe.name) for fe in lab.frontends}
    pids = {fe.name: lab.pids(fe.name) for fe in lab.frontends}

    run = apply(lab, "--limit", "lb2")
    assert run.rc == 0, run
    assert results_table(run) == {"lb2": "changed"}, run
    assert "lb1" not in run.text and "lb3" not in run.text
    after = {fe.name: lab.snapshot(fe.name) for fe in lab.frontends}
    assert after["lb1"] == files["lb1"] and after["lb3"] == files["lb3"]
    assert lab.not_reloaded({h: pids[h] for h in ("lb1", "lb3")}) == {}
    assert (
        after["lb2"]["/etc/nginx/nginx.conf"]["sha256"]
        != files["lb2"]["/etc/nginx/nginx.conf"]["sha256"]
    )
    assert lab.pids("lb2")[1] != pids["lb2"][1]  # new workers
    assert http_get(lab.address("lb2"), "/limited").backend == "be3"
    assert host_status(plan_json(lab.inventory)) == {
        "lb1": "change",
        "lb2": "unchanged",
        "lb3": "change",
    }
    # Then the rest catches up.
    caught_up = apply(lab)
    assert caught_up.rc == 0, caught_up
    assert results_table(caught_up) == {"lb1": "changed", "lb2": "unchanged", "lb3": "changed"}


def test_route_change_under_load_fails_no_request(lab: Lab, applied: dict[str, Any]) -> None:
    """Keep-alive load on every front end from a second before the apply until two seconds
    after it (a minute at most), the route change reloading all three kinds in between."""
    data = copy.deepcopy(applied)
    data["services"][0]["routes"] += [
        {"path": "/limited", "pool": "course"},
        {"path": "/under-load", "pool": "course"},
    ]
    lab.write(data)
    clients = 4
    done = threading.Event()
    results: dict[str, LoadResult] = {}

    def load(fe: labmod.LabHost) -> None:
        results[fe.name] = keepalive_load(fe.address, 60.0, clients=clients, until=done)

    threads = [threading.Thread(target=load, args=(fe,)) for fe in lab.frontends]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        run = apply(lab)
        time.sleep(2.0)
    finally:
        done.set()
        for t in threads:
            t.join(70)
    assert run.rc == 0, run
    assert set(results_table(run).values()) == {"changed"}, run
    for fe in lab.frontends:
        r = results[fe.name]
        print(f"{fe.name} ({fe.kind}): {r.requests} requests, {r.ok} ok, {r.failed} failed, "
              f"{r.retried} re-sent after an idle keep-alive close")  # fmt: skip
        assert r.failed == 0, (fe.name, r.bad_status, r.errors[:5])
        assert r.requests > 100, (fe.name, r.requests)
        # A reload closes each idle keep-alive connection at most once; the client re-sends
        # that GET on a new connection (RFC 9112 9.3.1). More than that would be a failure.
        assert r.retried <= clients, (fe.name, r.retried)
        assert {b for b in r.backends if r.backends[b] > 0} == {"be1", "be2", "be3"}
        assert http_get(fe.address, "/under-load").backend == "be3"
    assert plan(lab, "--detailed-exitcode").rc == 0


def test_plan_through_a_jump_host(lab: Lab, inventory: dict[str, Any]) -> None:
    """defaults.ssh.jump: lb2 and lb3 are reached through lb1 (ProxyJump); a jump host that
    does not answer makes them unreachable, which shows the jump is really taken."""
    lb1 = lab.address("lb1")
    via_lb1 = copy.deepcopy(inventory)
    via_lb1["defaults"]["ssh"]["jump"] = lb1
    path = lab.workdir / "via-lb1.yaml"
    dump_yaml(via_lb1, path)
    plan_ok = plan_json(path, "--limit", "lb2,lb3")
    reached = host_status(plan_ok)
    assert set(reached) == {"lb2", "lb3"}, plan_ok
    assert "unreachable" not in reached.values(), plan_ok  # facts gathered through lb1

    via_nothing = copy.deepcopy(inventory)
    via_nothing["defaults"]["ssh"]["jump"] = lab.spare_address()
    dump_yaml(via_nothing, path)
    plan_bad = plan_json(path, "--limit", "lb2")
    (host,) = plan_bad["hosts"]
    assert host["status"] == "unreachable", plan_bad
    assert f"cannot reach {lab.spare_address()}:22" in host["error"], plan_bad
