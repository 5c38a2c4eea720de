"""Each kind's knowledge lives in its driver: nothing outside clusterctl/drivers/ branches on it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clusterctl.drivers import DRIVERS
from clusterctl.execute import admin

PKG = Path(__file__).resolve().parents[2] / "clusterctl"
BRANCH = re.compile(r"""\bkind\s*(==|!=)\s*['"]|\bkind\s+(not\s+)?in\s*[\(\[{]\s*['"]""")


def test_no_branch_on_the_kind_outside_the_drivers() -> None:
    found = [
        f"{path.relative_to(PKG)}:{n}: {line.strip()}"
        for path in sorted(PKG.rglob("*.py"))
        if "drivers" not in path.relative_to(PKG).parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if BRANCH.search(line)
    ]
    assert found == []


def test_every_driver_names_its_runtime_control() -> None:
    assert {kind: d.control for kind, d in DRIVERS.items()} == {
        "haproxy": "admin-socket",
        "nginx": "rerender",
        "apache": "balancer-manager",
        "keepalived": "",  # not a proxy: no pool to control
    }


def test_a_kind_without_runtime_control_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from clusterctl.model import parse

    inv = parse(
        "cluster: c\nfrontends: [{name: lb1, kind: haproxy, address: 192.0.2.1}]\n"
        "pools: [{name: app, servers: [{name: be1, address: 192.0.2.2, port: 80}]}]\n"
        "services: [{name: web, listen: [{port: 80}], default_pool: app}]\n",
        "inv.yaml",
    )
    monkeypatch.setattr(type(DRIVERS["haproxy"]), "control", "")
    with pytest.raises(admin.AdminError, match="lb1: a haproxy front end has no runtime control"):
        admin.views(None, inv, inv.frontends[0])  # type: ignore[arg-type]
