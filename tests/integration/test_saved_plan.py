"""Saved plans on a real lab: `plan --out FILE`, `apply FILE`, and the refusal once a host
changed since the plan was made (issue 15). One HAProxy front end and one back end: the round
trip is the point, not the kinds (their apply is tested in test_apply.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from labfixtures import CONFIG, Lab, cli, dump_yaml, load_yaml, needs_root, own_lab

pytestmark = [pytest.mark.lab, needs_root]

LAB = "tsav"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with own_lab(LAB, tmp_path_factory.mktemp("saved"), frontends=["haproxy"], backends=1) as lab:
        dump_yaml(load_yaml(lab.info.inventory_path), lab.inventory)
        yield lab


def test_a_saved_plan_is_applied_as_it_is_and_refused_once_a_host_changed(lab: Lab) -> None:
    cfg = CONFIG["haproxy"]
    plan = lab.workdir / "plan.json"
    made = cli("plan", "-i", str(lab.inventory), "--out", str(plan))
    assert made.rc == 0 and f"plan saved to {plan}; apply exactly it: clusterctl apply" in made.err
    saved = json.loads(plan.read_text())
    assert saved["hosts"][0]["plan"]["status"] == "change", made

    # Applied from the file alone: no -i, no question (it was reviewed), exactly that plan.
    done = cli("apply", str(plan))
    assert done.rc == 0, done
    live = lab.stat("lb1", [cfg])[cfg]["sha256"]
    planned = next(f for f in saved["hosts"][0]["plan"]["files"] if f["path"] == cfg)
    assert live == planned["sha256"]
    assert cli("plan", "-i", str(lab.inventory), "--detailed-exitcode").rc == 0

    # Applied once, the host is no longer what the plan was made from.
    again = cli("apply", str(plan))
    assert again.rc == 1 and f"{plan} is stale, nothing was changed: lb1: " in again.err, again
    assert f"lb1: {cfg} changed on the host (sha256 " in again.err, again

    # A new plan for an inventory change, then someone edits the host: refused, host untouched.
    data = load_yaml(lab.inventory)
    data["pools"][0]["health"]["interval"] = "3s"
    dump_yaml(data, lab.inventory)
    second = lab.workdir / "second.json"
    assert cli("plan", "-i", str(lab.inventory), "--out", str(second)).rc == 0
    lab.ssh("lb1", f"echo '# by hand' >> {cfg}")
    by_hand = lab.stat("lb1", [cfg])[cfg]
    before = lab.pids("lb1")
    refused = cli("apply", str(second))
    assert refused.rc == 1, refused
    assert refused.err.startswith(
        f"error: {second} is stale, nothing was changed: lb1: {cfg} changed on the host (sha256 "
    ), refused
    assert f"review a new plan: clusterctl plan -i {lab.inventory} --out {second}" in refused.err
    assert lab.stat("lb1", [cfg])[cfg] == by_hand, "a refused plan changed the host"
    assert lab.not_reloaded({"lb1": before}) == {}

    # Planned again from the host as it is now, the plan applies.
    third = lab.workdir / "third.json"
    assert cli("plan", "-i", str(lab.inventory), "--out", str(third)).rc == 0
    assert cli("apply", str(third)).rc == 0
    assert "# by hand" not in lab.ssh("lb1", f"cat {cfg}").out
    assert "inter 3s" in lab.ssh("lb1", f"cat {cfg}").out


def test_a_plan_file_path_that_is_an_inventory_says_so(lab: Lab) -> None:
    run = cli("apply", str(lab.inventory))
    assert run.rc == 1 and "not a plan file" in run.err and "an inventory goes with -i" in run.err


def test_no_plan_is_saved_when_a_host_cannot_be_planned(lab: Lab, tmp_path: Path) -> None:
    data = load_yaml(lab.inventory)
    data["frontends"][0]["address"] = lab.spare_address()
    broken = tmp_path / "broken.yaml"
    dump_yaml(data, broken)
    data_dir = tmp_path / "p.json"
    run = cli("plan", "-i", str(broken), "--out", str(data_dir))
    assert run.rc == 1 and "no plan saved: lb1 could not be planned" in run.err, run
    assert not data_dir.exists()
