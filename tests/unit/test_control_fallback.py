"""A members-only plan runs at run time, and falls back to its reload path when refused."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest

from clusterctl.execute import apply
from clusterctl.execute.ssh import Result
from clusterctl.facts import HostFacts, LiveFile
from clusterctl.model import parse
from clusterctl.model.schema import Inventory
from clusterctl.plan import plan_host
from clusterctl.plan_steps import Phase, Runtime, Step
from clusterctl.render import render_frontend

INV = """
cluster: c
frontends: [{name: lb1, kind: haproxy, address: 192.0.2.11}]
pools:
  - name: app
    servers:
      - {name: be1, address: 198.18.35.101, port: 8080}
      - {name: be2, address: 198.18.35.102, port: 8080}
services:
  - {name: web, listen: [{port: 80}], default_pool: app}
"""
STAT = "# pxname,svname,scur,status\napp,be1,0,UP\napp,be2,0,UP\n"


def facts_of(inv: Inventory) -> HostFacts:
    files = render_frontend(inv, inv.frontends[0])
    live = {
        p: LiveFile(
            p, True, f.mode, f.owner, f.group, hashlib.sha256(f.content).hexdigest(), f.content
        )
        for p, f in files.items()
    }
    return HostFacts("lb1", "2.6.12", files=live, managed=tuple(sorted(live)))


class SocketRemote:
    """HAProxy's admin socket: `show stat` answers, every `set server` is refused."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def sh(self, script: str, *args: str, **kw: object) -> Result:
        stdin = kw.get("stdin")
        text = stdin.decode() if isinstance(stdin, bytes) else ""
        self.said.append(text.strip())
        if text.startswith("show stat"):
            return Result((), 0, STAT, "")
        return Result((), 0, "No such server.\n", "")


@pytest.fixture
def plans() -> tuple[Inventory, Sequence[Step]]:
    old = parse(INV, "inventory.yaml")
    new = parse(
        INV.replace("8080}\n      - {name: be2", "8080, weight: 5}\n      - {name: be2"), "i.yaml"
    )
    hp = plan_host(new, new.frontends[0], facts_of(old))
    assert hp.takes == "runtime, no reload: app/be1 weight 5"
    return new, hp.steps


def test_a_members_only_plan_has_no_reload_and_keeps_one_as_its_fallback(
    plans: tuple[Inventory, Sequence[Step]],
) -> None:
    _, steps = plans
    phases = [s.phase for s in steps]
    assert phases == ["runtime", "upload", "upload", "rename", "confirm"]
    runtime = steps[0]
    assert isinstance(runtime, Runtime)
    assert [c.stdin for c in runtime.commands] == [b"set server app/be1 weight 5\n"]
    assert "reload" in [s.phase for s in runtime.fallback]
    assert runtime.fallback_rollback  # the reload path's own rollback comes with it


def test_a_refused_runtime_change_takes_the_reload_path_instead(
    plans: tuple[Inventory, Sequence[Step]], monkeypatch: pytest.MonkeyPatch
) -> None:
    inv, steps = plans
    ran: list[Phase] = []
    real = apply.run_phase

    def run_phase(remote: object, fe: object, phase_steps: Sequence[Step]) -> None:
        if isinstance(phase_steps[0], Runtime):
            real(remote, fe, phase_steps)  # type: ignore[arg-type]
        else:
            ran.append(phase_steps[0].phase)

    monkeypatch.setattr(apply, "run_phase", run_phase)
    monkeypatch.setattr(apply, "checkpoint", lambda phase: None)
    remote = SocketRemote()
    hp = plan_host(inv, inv.frontends[0], facts_of(parse(INV, "inventory.yaml")))
    result = apply.apply_host(remote, inv, inv.frontends[0], hp)  # type: ignore[arg-type]
    assert remote.said == ["show stat", "set server app/be1 weight 5"]
    assert result.status == "changed"
    assert result.message.startswith(
        "runtime change refused (lb1: HAProxy refused: No such server. "
        "(after: set server app/be1 weight 5)); reloaded instead: "
    )
    assert "reload" in ran and "runtime" not in ran
    assert ran == list(dict.fromkeys(s.phase for s in steps[0].fallback))  # type: ignore[union-attr]
