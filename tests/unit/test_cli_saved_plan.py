"""Saved plans, pure: the file's format, no secret in it, and every way a plan goes stale."""

from __future__ import annotations

import dataclasses
import json
import stat
import sys
from pathlib import Path

import pytest

from clusterctl.errors import ClusterctlError
from clusterctl.facts import HostFacts, LiveFile
from clusterctl.model import load
from clusterctl.plan import Plan, plan_host
from clusterctl.render import render_frontend
from clusterctl.saved_plan import (
    FORMAT,
    read_plan,
    refuse_if_stale,
    saved_plan,
    stale_reasons,
    write_plan,
)

REPO = Path(__file__).resolve().parents[2]
FULL = REPO / "inventories" / "full.yaml"
INV = load(FULL)
KEY = (REPO / "inventories" / "files" / "example.com.key").read_text()


def matching(name: str, **changes: object) -> HostFacts:
    """Facts of a host that holds exactly what the inventory renders."""
    fe = next(f for f in INV.frontends if f.name == name)
    files = {
        p: LiveFile(p, True, f.mode, f.owner, f.group, f.sha256, None if f.secret else f.content)
        for p, f in render_frontend(INV, fe).items()
    }
    return dataclasses.replace(HostFacts(name, version=fe.version, files=files), **changes)


def fresh_host(name: str) -> HostFacts:
    fe = next(f for f in INV.frontends if f.name == name)
    return HostFacts(name, version=fe.version)


def plan_of(*facts: HostFacts) -> Plan:
    by_name = {fe.name: fe for fe in INV.frontends}
    return Plan(tuple(plan_host(INV, by_name[f.host], f) for f in facts))


def saved(tmp_path: Path, plan: Plan) -> Path:
    path = tmp_path / "plan.json"
    write_plan(path, plan, FULL, INV.cluster, None)
    return path


def test_the_file_is_documented_json_private_and_without_secrets(tmp_path: Path) -> None:
    path = saved(tmp_path, plan_of(fresh_host("lb1"), matching("lb2")))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    data = json.loads(text)
    assert data["format"] == FORMAT and data["format_version"] == 1
    assert data["inventory"] == str(FULL.resolve()) and data["cluster"] == INV.cluster
    assert len(data["inventory_sha256"]) == 64 and data["limit"] is None
    lb1, lb2 = data["hosts"]
    assert (lb1["host"], lb1["plan"]["status"], lb2["plan"]["status"]) == (
        "lb1",
        "change",
        "unchanged",
    )
    assert lb1["facts"]["files"]["/etc/haproxy/haproxy.cfg"]["exists"] is False
    assert lb1["plan"]["steps"], "the steps apply will run are in the file for review"
    key_lines = [ln for ln in KEY.splitlines() if ln and not ln.startswith("-----")]
    assert not any(ln in text for ln in key_lines), "a private key reached the plan file"
    assert "PRIVATE KEY" not in text


def test_the_same_plan_made_again_is_not_stale(tmp_path: Path) -> None:
    facts = (fresh_host("lb1"), matching("lb2", pending="run-1"))
    path = saved(tmp_path, plan_of(*facts))
    # Made again: another run id (staging folder), the same plan.
    again = plan_of(*facts)
    assert again.hosts[0].run_id != json.loads(path.read_text())["hosts"][0]["plan"]["run_id"]
    assert stale_reasons(read_plan(path), again) == []
    refuse_if_stale(read_plan(path), again, INV.cluster)


def _changed_config(name: str) -> HostFacts:
    f = matching(name)
    cfg = "/etc/nginx/nginx.conf"
    old = f.files[cfg]
    edited = LiveFile(cfg, True, old.mode, old.owner, old.group, "0" * 64, b"# by hand\n")
    return dataclasses.replace(f, files={**f.files, cfg: edited})


def _managed_leftover(name: str) -> HostFacts:
    """A file an earlier apply installed, no longer rendered: the manifest makes apply delete it."""
    f = matching(name)
    old = "/etc/nginx/conf.d/old.conf"
    gone = LiveFile(old, True, 0o644, "root", "root", "1" * 64, b"old\n")
    return dataclasses.replace(f, files={**f.files, old: gone}, managed=(*f.files, old))


@pytest.mark.parametrize(
    ("now", "words"),
    [
        (
            _changed_config("lb2"),
            "lb2: /etc/nginx/nginx.conf changed on the host (sha256 ",
        ),
        (
            matching("lb2", pending="run-9"),
            "lb2: the host now has a reload pending from an interrupted apply",
        ),
        (matching("lb2", temps=("/etc/nginx/.x.tmp",)), "lb2: its left-over temporary files"),
        (_managed_leftover("lb2"), "lb2: the files its manifest makes apply delete changed"),
    ],
)
def test_a_host_that_changed_since_makes_the_plan_stale(
    tmp_path: Path, now: HostFacts, words: str
) -> None:
    path = saved(tmp_path, plan_of(fresh_host("lb1"), matching("lb2")))
    reasons = stale_reasons(read_plan(path), plan_of(fresh_host("lb1"), now))
    assert any(r.startswith(words) for r in reasons), reasons
    with pytest.raises(ClusterctlError) as err:
        refuse_if_stale(read_plan(path), plan_of(fresh_host("lb1"), now), INV.cluster)
    assert str(err.value).startswith(f"{path} is stale, nothing was changed: ")
    assert str(err.value).endswith(f"review a new plan: clusterctl plan -i {FULL} --out {path}")


def test_a_mode_change_on_the_host_is_named(tmp_path: Path) -> None:
    f = matching("lb2")
    cfg = "/etc/nginx/nginx.conf"
    path = saved(tmp_path, plan_of(f))
    loose = dataclasses.replace(
        f, files={**f.files, cfg: dataclasses.replace(f.files[cfg], mode=0o666)}
    )
    assert stale_reasons(read_plan(path), plan_of(loose)) == [
        f"lb2: {cfg} changed mode or owner on the host"
    ]


def test_a_host_missing_or_added_makes_it_stale(tmp_path: Path) -> None:
    path = saved(tmp_path, plan_of(fresh_host("lb1"), matching("lb2")))
    assert stale_reasons(read_plan(path), plan_of(fresh_host("lb1"))) == [
        "lb2 is in the saved plan but not in the inventory's now"
    ]


def test_a_plan_with_an_unreachable_host_is_not_saved(tmp_path: Path) -> None:
    from clusterctl.plan import unreachable

    plan = Plan((unreachable(INV.frontends[0], "lb1: cannot reach 192.0.2.10:22: timed out"),))
    with pytest.raises(ClusterctlError, match="no plan saved: lb1 could not be planned"):
        write_plan(tmp_path / "p.json", plan, FULL, INV.cluster, None)
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("cluster: shop\n", ":1:1: not a plan file (Expecting value); an inventory goes with -i"),
        ('{"format": "tfplan"}', 'not a clusterctl plan file (no "format": "clusterctl-plan")'),
        ('{"format": "clusterctl-plan", "format_version": 7}', "plan format 7, this clusterctl"),
        ('{"format": "clusterctl-plan", "format_version": 1}', "without its inventory or hosts"),
    ],
)
def test_a_file_that_is_not_a_plan_is_a_one_line_error(
    tmp_path: Path, content: str, words: str
) -> None:
    path = tmp_path / "plan.json"
    path.write_text(content)
    with pytest.raises(ClusterctlError) as err:
        read_plan(path)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_another_clusters_plan_is_refused(tmp_path: Path) -> None:
    path = saved(tmp_path, plan_of(matching("lb2")))
    with pytest.raises(ClusterctlError, match="is a plan for cluster 'shop', the inventory is 'x'"):
        refuse_if_stale(read_plan(path), plan_of(matching("lb2")), "x")


def test_apply_of_a_saved_plan_refuses_limit_and_needs_no_inventory_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from clusterctl.cli import main

    path = tmp_path / "plan.json"
    path.write_text(json.dumps(saved_plan(plan_of(matching("lb2")), FULL, INV.cluster, None)))
    monkeypatch.setattr(sys, "argv", ["clusterctl", "apply", str(path), "--limit", "lb1"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    assert "--limit does not go with a saved plan" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["clusterctl", "apply"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    assert "apply needs -i INVENTORY, or a saved plan" in capsys.readouterr().err
