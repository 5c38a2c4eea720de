"""Member changes through HAProxy's runtime API and Apache's balancer-manager, in the lab (issue 12).

One lab for the module: an HAProxy and an Apache front end before three backends, the pool
starting with two of them (no sticky cookie: HAProxy 2.6 cannot add a server with one at run
time). Each apply goes through the CLI as a user runs it, under wrk keep-alive GETs and POSTs
through both front ends. wrk never resends, so a connection a reload cuts is a socket error.
No member change may reload: the masters keep their pids and every worker stays.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clusterctl import lab as labmod
from tests.helpers.wrk import Wrk, WrkLoad
from tests.integration.labfixtures import Lab, cli, own_lab, server

pytestmark = [pytest.mark.lab]
LAB = "trm"


@dataclass
class Rig:
    lab: Lab
    work: Path

    def inventory(self, servers: list[dict[str, Any]], timeout: str | None = None) -> Path:
        inv = labmod.lab_inventory(self.lab.info)
        pool = inv["pools"][0]
        pool.pop("sticky", None)
        pool["servers"] = servers
        if timeout:
            inv["services"][0]["timeouts"] = {"client": timeout}
        return self.lab.write(inv)

    def members(self, *names: str, **extra: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**server(self.lab.info, n), **extra.get(n, {})} for n in names]

    def url(self, kind: str) -> str:
        return next(h.url for h in self.lab.frontends if h.kind == kind)

    def host(self, kind: str) -> str:
        return next(h.name for h in self.lab.frontends if h.kind == kind)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces)")
    work = tmp_path_factory.mktemp("members")
    with own_lab(LAB, work, frontends=["haproxy", "apache"], backends=3) as lab:
        r = Rig(lab, work)
        run = cli("apply", "-i", str(r.inventory(r.members("be1", "be2"))), "--yes")
        assert run.rc == 0, run
        yield r


def _loads(rig: Rig, kinds: tuple[str, ...]) -> WrkLoad:
    """A wrk GET and a wrk POST through each kind's front end, all at once."""
    return WrkLoad({k: rig.url(k) for k in kinds}, rig.work)


def _counts(load: WrkLoad) -> dict[str, list[Wrk]]:
    """kind -> its GET and POST counts, once every wrk has stopped."""
    return {k: list(by_method.values()) for k, by_method in load.stop().items()}


def test_plan_says_which_path_each_host_takes(rig: Rig) -> None:
    path = rig.inventory(rig.members("be1", "be2", "be3"))
    run = cli("plan", "-i", str(path))
    assert run.rc in (0, 2), run
    for kind in ("haproxy", "apache"):
        block = run.out.split(f"{rig.host(kind)} ({kind}): ", 1)[1].split("\n\n", 1)[0]
        assert "  runtime, no reload: add app/be3" in block, run
    js = cli("plan", "-i", str(path), "--output", "json")
    hosts = {h["host"]: h for h in json.loads(js.out)["hosts"]}
    for kind in ("haproxy", "apache"):
        h = hosts[rig.host(kind)]
        assert h["takes"] == "runtime, no reload: add app/be3"
        assert h["steps"][0]["step"] == "runtime"
        assert "reload" not in [s["step"] for s in h["steps"]]  # only in the fallback
    timeout = cli("plan", "-i", str(rig.inventory(rig.members("be1", "be2"), timeout="30s")))
    assert "reload (the config changes beyond pool members)" in timeout.out, timeout
    rig.inventory(rig.members("be1", "be2"))  # back to what runs


def test_member_applies_under_wrk_fail_nothing_and_never_reload(rig: Rig) -> None:
    hosts = [rig.host(k) for k in ("haproxy", "apache")]
    before = {h: rig.lab.pids(h) for h in hosts}
    w3 = {"be1": {"weight": 3}}
    steps: list[tuple[list[dict[str, Any]], str]] = [
        (rig.members("be1", "be2", "be3"), "add app/be3"),
        (rig.members("be1", "be2", "be3", **w3), "app/be1 weight 3"),
        (rig.members("be1", "be2", "be3", **w3, be2={"state": "drain"}), "app/be2 state drain"),
        (rig.members("be1", "be2", "be3", **w3), "app/be2 state ready"),
        (rig.members("be1", "be2", **w3), "remove app/be3"),
    ]
    loads = _loads(rig, ("haproxy", "apache"))
    said = []
    try:
        for servers, change in steps:
            run = cli("apply", "-i", str(rig.inventory(servers)), "--yes")
            assert run.rc == 0, run
            said.append((run.out, change))
    finally:
        counts = _counts(loads)
    for out, change in said:
        for host in hosts:
            line = next(ln for ln in out.splitlines() if ln.startswith(f"{host}: "))
            assert "no reload (runtime: " in line and change in line, out
    for kind, runs in counts.items():
        for w in runs:
            assert w.requests > 100 and (w.socket_errors, w.non_2xx) == (0, 0), (kind, w.text)
    assert rig.lab.not_reloaded(before) == {}
    # The files on disk are what runs: nothing left to apply, and a restart comes up the same.
    again = cli("apply", "-i", str(rig.inventory(steps[-1][0])), "--yes")
    assert again.rc == 0 and "0 hosts to change" in again.out, again
    status = cli("status", "-i", str(rig.lab.inventory))
    assert f"{hosts[0]} app/be3" not in status.out, status  # HAProxy deleted it
    print(f"member applies under wrk: { {k: [w.requests for w in r] for k, r in counts.items()} }")


def test_a_structural_change_on_haproxy_under_wrk_fails_nothing(rig: Rig) -> None:
    host = rig.host("haproxy")
    servers = rig.members("be1", "be2", be1={"weight": 3})
    loads = _loads(rig, ("haproxy",))
    try:
        run = cli(
            "apply", "-i", str(rig.inventory(servers, timeout="30s")), "--yes", "--limit", host
        )
        assert run.rc == 0, run
    finally:
        counts = _counts(loads)["haproxy"]
    assert "reloaded" in run.out, run
    for w in counts:
        assert w.requests > 100 and (w.socket_errors, w.non_2xx) == (0, 0), w.text
