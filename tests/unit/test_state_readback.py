"""A runtime state change and the read that confirms it: one remote command, from a cached view.

A fake Apache balancer-manager (the page captured in tests/unit/data/admin, its nonce and
be2's flags live) stands for the host: it applies a form only with the nonce it has now, as
Apache does, and answers 200 either way.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from clusterctl.drivers.control import Live, ServerView
from clusterctl.execute.admin_views import AdminError, read_live, set_state_read, shows
from clusterctl.execute.ssh import Result
from clusterctl.model import parse
from clusterctl.model.schema import Frontend
from clusterctl.orchestrate.cluster import Event, wait_idle

PAGE = (
    Path(__file__).resolve().parent / "data" / "admin" / "balancer-manager-drain.html"
).read_text()
NONCE = "f32cd9e9-2f4f-fe6e-2dc7-acf5d3deeea5"
INV = """
cluster: c
frontends:
  - {name: lb3, kind: apache, address: 192.0.2.13}
pools:
  - name: app
    servers:
      - {name: be1, address: 198.18.35.101, port: 8080}
      - {name: be2, address: 198.18.35.102, port: 8080}
      - {name: be3, address: 198.18.35.103, port: 8080}
services:
  - {name: web, listen: [{port: 80}], default_pool: app}
"""
Rig = tuple["Manager", Frontend]
FLAGS = {("0", "0"): "Init Ok ", ("1", "0"): "Init Drn Ok ", ("1", "1"): "Init Drn Dis Ok "}


class Manager:
    """The balancer-manager of one host: GETs answer the page, POSTs change be2's flags."""

    def __init__(self) -> None:
        self.nonce = NONCE
        self.be2 = "Init Ok "
        self.calls: list[str] = []

    def page(self) -> str:
        row = "<td>be2</td><td></td><td>1.00</td><td>0</td><td>"
        head, tail = PAGE.split(row, 1)
        tail = tail.split("</td>", 1)[1]
        return (head + row + self.be2 + "</td>" + tail).replace(NONCE, self.nonce)

    def sh(self, script: str, *args: str, **kw: object) -> Result:
        if "--data-binary" not in args:
            self.calls.append("read")
            return Result((), 0, self.page(), "")
        stdin = kw["stdin"]
        assert isinstance(stdin, bytes)
        form = {k: v[0] for k, v in urllib.parse.parse_qs(stdin.decode()).items()}
        self.calls.append("post")
        if form["nonce"] == self.nonce:  # else Apache ignores the form (and answers 200)
            self.be2 = FLAGS[(form["w_status_N"], form["w_status_D"])]
        return Result((), 0, "200", "")


@pytest.fixture
def apache() -> Rig:
    return Manager(), parse(INV, "inventory.yaml").frontends[0]


def test_from_a_cached_view_the_change_and_its_read_back_are_all_it_runs(apache: Rig) -> None:
    manager, fe = apache
    cached = read_live(manager, fe)  # type: ignore[arg-type]
    manager.calls.clear()
    after = set_state_read(manager, fe, "be2", "drain", cached)  # type: ignore[arg-type]
    assert manager.calls == ["post", "read"]
    assert shows(after, "be2", "drain")
    assert manager.be2 == "Init Drn Ok "


def test_a_nonce_renewed_since_the_cached_view_goes_again_with_the_new_one(
    apache: Rig,
) -> None:
    manager, fe = apache
    cached = read_live(manager, fe)  # type: ignore[arg-type]
    manager.nonce = "0e8f7a1c-0000-4000-8000-000000000001"  # Apache restarted meanwhile
    manager.calls.clear()
    after = set_state_read(manager, fe, "be2", "maint", cached)  # type: ignore[arg-type]
    # The first form was ignored; the read back shows it and has the new nonce.
    assert manager.calls == ["post", "read", "post", "read"]
    assert shows(after, "be2", "maint")


def test_without_a_view_it_reads_first_and_changes_once(apache: Rig) -> None:
    manager, fe = apache
    manager.nonce = "0e8f7a1c-0000-4000-8000-000000000001"
    after = set_state_read(manager, fe, "be2", "drain")  # type: ignore[arg-type]
    assert manager.calls == ["read", "post", "read"]
    assert shows(after, "be2", "drain")


def test_a_cached_view_without_the_node_is_read_again_before_it_is_refused(
    apache: Rig,
) -> None:
    manager, fe = apache
    with pytest.raises(AdminError, match="no member with route be9"):
        set_state_read(manager, fe, "be9", "drain", Live(()))  # type: ignore[arg-type]
    assert manager.calls == ["read"]


class Looks:
    """Stands in for a rollout's Cluster: counts the looks a wait takes at its front ends."""

    def __init__(self, sessions: list[int]) -> None:
        self.inv = parse(INV, "inventory.yaml")
        self.sessions = sessions
        self.looks = 0

    def views(self, fe: Frontend, remote: object) -> list[ServerView]:
        self.looks += 1
        return [ServerView(fe.name, "app", "be2", "drain", "up", self.sessions.pop(0))]

    def each_frontend(self, fn: Any) -> list[Any]:
        return [fn(fe, None) for fe in self.inv.frontends]


@pytest.mark.parametrize(("read_back", "looks"), [(0, 0), (2, 2)])
def test_a_wait_starts_from_the_view_read_back_with_the_change(
    apache: Rig, read_back: int, looks: int
) -> None:
    _, fe = apache
    cluster = Looks([1, 0])
    seen = {fe.name: [ServerView(fe.name, "app", "be2", "drain", "up", read_back)]}
    events: list[Event] = []
    wait_idle(cluster, "be2", 30.0, False, events.append, seen=seen)  # type: ignore[arg-type]
    assert cluster.looks == looks
    assert events[-1].message == "no active sessions left"


def test_a_view_that_does_not_list_the_node_is_not_up() -> None:
    from clusterctl.drivers.control import ServerView
    from clusterctl.execute.admin import up_in

    ready = ServerView("lb1", "app", "be1", "ready", "up", 0)
    assert up_in([ready], "be1")
    assert not up_in([ready], "be2")  # not put back yet: the restore waits on
    assert not up_in([], "be1")
