"""Issue 12's bar under wrk, which never resends: a connection a reload cuts is a socket error.

One lab for the module: HAProxy, nginx (Lua balancer) and Apache before three backends. A
`clusterctl rollout`, then a `drain` and a `restore`, run under wrk GETs and POSTs through all
three front ends at once, keep-alive and `Connection: close`: wrk must count 0 socket errors
and 0 non-2xx on every kind, and no front end may reload (each master keeps its pid and every
worker stays). A structural change on HAProxy (a new route) does reload, under wrk, and fails
nothing either: `option idle-close-on-response` keeps its idle connections.
(test_runtime_members.py covers the other structural change the bar names, a timeout.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clusterctl import lab as labmod
from tests.helpers.wrk import Wrk, WrkLoad
from tests.integration.labfixtures import Lab, cli, http_get, own_lab, server

pytestmark = [pytest.mark.lab]
LAB = "h9rw"
KINDS = ("haproxy", "nginx", "apache")


@dataclass
class Rig:
    lab: Lab
    work: Path

    def inventory(self, route: bool = False) -> Path:
        inv: dict[str, Any] = labmod.lab_inventory(self.lab.info)
        if route:
            inv["pools"].append(
                {
                    "name": "course",
                    "health": {"path": "/health", "interval": "2s", "rise": 2, "fall": 3},
                    "servers": [server(self.lab.info, "be3")],
                }
            )
            inv["services"][0]["routes"] = [{"path": "/course", "pool": "course"}]
        return self.lab.write(inv)

    def fe(self, kind: str) -> labmod.LabHost:
        return next(h for h in self.lab.frontends if h.kind == kind)

    def pids(self) -> dict[str, tuple[int, frozenset[int]]]:
        return {h.name: self.lab.pids(h.name) for h in self.lab.frontends}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces)")
    work = tmp_path_factory.mktemp("rollwrk")
    with own_lab(LAB, work, frontends=list(KINDS), backends=3) as lab:
        r = Rig(lab, work)
        run = cli("apply", "-i", str(r.inventory()), "--yes")
        assert run.rc == 0, run
        yield r


def assert_clean(counts: dict[str, dict[str, Wrk]]) -> None:
    """wrk's own counts: every run served (so a dead front end cannot pass) and none failed."""
    for label, runs in counts.items():
        for method, w in runs.items():
            assert w.requests > 50, (label, method, w.text)
            assert (w.socket_errors, w.non_2xx) == (0, 0), (label, method, w.text)


@pytest.mark.parametrize("keepalive", [True, False], ids=["keepalive", "close"])
def test_rollout_drain_restore_under_wrk_fail_nothing_and_reload_nothing(
    rig: Rig, keepalive: bool
) -> None:
    inv = str(rig.lab.inventory)
    version = f"2.0-{'ka' if keepalive else 'close'}"
    before = rig.pids()
    urls = {k: rig.fe(k).url for k in KINDS}
    with WrkLoad(urls, rig.work, keepalive=keepalive, max_seconds=60) as load:
        try:
            rolled = cli("rollout", "-i", inv, "--version", version)
            drained = cli("drain", "-i", inv, "be2")
            restored = cli("restore", "-i", inv, "be2")
        finally:
            counts = load.stop()
    assert rolled.rc == 0 and f"rolled out {version} to be1, be2, be3" in rolled.out, rolled
    assert drained.rc == 0 and restored.rc == 0, (drained, restored)
    assert_clean(counts)
    assert rig.lab.not_reloaded(before) == {}
    print(f"rollout/drain/restore under wrk ({'keep-alive' if keepalive else 'close'}): "
          f"{ {k: {m: w.requests for m, w in r.items()} for k, r in counts.items()} } requests, 0 errors")  # fmt: skip


def test_a_new_route_on_haproxy_under_wrk_reloads_and_fails_nothing(rig: Rig) -> None:
    fe = rig.fe("haproxy")
    master, workers = rig.lab.pids(fe.name)
    path = str(rig.inventory(route=True))
    with WrkLoad({"haproxy": fe.url}, rig.work, max_seconds=60) as load:
        try:
            run = cli("apply", "-i", path, "--yes", "--limit", fe.name)
        finally:
            counts = load.stop()
    assert run.rc == 0 and "reloaded" in run.out, run
    now_master, now_workers = rig.lab.pids(fe.name)
    # It did reload under the load: the same master, a new worker (the old one may still be
    # finishing its last connections).
    assert now_master == master and now_workers - workers, (workers, now_workers)
    assert_clean(counts)
    assert http_get(fe.address, "/course").backend == "be3"
