"""An idempotent rollout: done nodes skipped, --force, --limit, --dry-run, timed JSON events
ending with a summary. The cluster is test_rollout_unit's fake (states, sessions, releases)."""

from __future__ import annotations

import json
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from test_rollout_unit import FakeCluster, inventory, run
from test_rollout_unit import fake as fake  # the fixture, re-exported

from clusterctl import rollout as ro
from clusterctl.errors import ClusterctlError
from clusterctl.orchestrate.preview import summary_event

World = tuple[FakeCluster, dict[str, Any]]


def test_a_node_serving_the_version_already_is_skipped(fake: World) -> None:
    cluster, world = fake
    world["release"]["be2"] = "2.0"
    report, events = run(ro.Options("2.0", ["app"]), cluster)
    assert "be2" not in report.upgraded and report.skipped == ["be2"]
    skip = [e for e in events if e.step == "skip"]
    assert [(e.node, e.message) for e in skip] == [
        ("be2", "already serves 2.0 (--force deploys it again)")
    ]
    assert ("be2", "drain") not in cluster.calls  # never touched


def test_a_second_rollout_changes_nothing(fake: World) -> None:
    cluster, _ = fake
    first, _ = run(ro.Options("2.0", ["app"]), cluster)
    calls = len(cluster.calls)
    again, events = run(ro.Options("2.0", ["app"]), cluster)
    assert first.upgraded and again.upgraded == [] and again.skipped == sorted(first.upgraded)
    assert len(cluster.calls) == calls
    assert all(e.step == "skip" for e in events)


def test_force_deploys_again(fake: World) -> None:
    cluster, world = fake
    world["release"]["be2"] = "2.0"
    report, _ = run(ro.Options("2.0", ["app"], force=True), cluster)
    assert "be2" in report.upgraded and report.skipped == []


def test_a_node_out_of_service_is_not_skipped_even_on_the_version(fake: World) -> None:
    cluster, world = fake
    world["release"]["be2"] = "2.0"
    cluster.calls.append(("be2", "drain"))  # a front end reports it drained
    report, _ = run(ro.Options("2.0", ["app"]), cluster)
    assert "be2" in report.upgraded and cluster.state_of("be2") == "ready"


def test_limit_to_nodes(fake: World) -> None:
    cluster, _ = fake
    report, _ = run(ro.Options("2.0", ["app"], nodes=["be3", "be1"]), cluster)
    assert sorted(report.upgraded) == ["be1", "be3"]


@pytest.mark.parametrize(
    ("nodes", "words"),
    [
        (["nosuch"], "--limit names a node this rollout does not cover: nosuch (its nodes: "),
        ([" "], "--limit names nothing; name one or more of: "),
    ],
)
def test_limit_to_unknown_or_no_node_is_refused(nodes: list[str], words: str) -> None:
    with pytest.raises(ClusterctlError) as err:
        ro.plan_batches(inventory(), ro.Options("2.0", ["app"], nodes=nodes))
    assert str(err.value).startswith(words)


def test_dry_run_prints_the_steps_node_by_node_and_changes_nothing(fake: World) -> None:
    cluster, world = fake
    world["release"]["be2"] = "2.0"
    lines = ro.preview(cluster.inv, ro.Options("2.0", ["app"], drain_timeout=30))
    assert cluster.calls == [] and world["saved"] == []
    assert lines[0] == "rollout of 2.0, dry run: nothing is changed"
    assert "be2: skip, already serves 2.0 (--force deploys it again)" in lines
    be1 = [ln.strip() for ln in lines if ln.strip().startswith("be1:")]
    assert [ln.split(":", 2)[1].split()[0] for ln in be1] == [
        "serves",
        "drain",
        "maint",
        "deploy",
        "check",
        "restore",
    ]
    assert "wait up to 30s for its sessions, then stop and put it back" in be1[1]
    assert be1[4].startswith("be1: check http://") and "X-Release: 2.0" in be1[4]
    assert "on failure back to 1.0" in be1[4]
    assert re.fullmatch(r"would upgrade \d+ nodes? in \d+ batch(es)?, skip 1", lines[-1])


def test_events_carry_a_time_and_the_summary_ends_the_stream() -> None:
    e = summary_event("2.0", 0.0, ["be1"], ["be2"])
    data = json.loads(ro.event_json(e))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["time"])
    assert (data["step"], data["status"]) == ("summary", "ok")
    assert data["data"] == {"version": "2.0", "upgraded": ["be1"], "skipped": ["be2"]}
    assert data["message"] == "1 node upgraded to 2.0, 1 skipped"
    failed = summary_event("2.0", 0.0, [], [], ro.RolloutFailed("be1", "check", "503", True))
    assert failed.status == "failed"
    assert failed.data["failed"] == {"node": "be1", "step": "check", "reason": "503"}


def test_cli_json_stream_ends_with_the_summary_even_when_it_stops(
    fake: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from clusterctl.cli import main
    from clusterctl.execute import runner

    cluster, world = fake
    world["broken"].add(("be1", "2.0"))
    inv = tmp_path / "inv.yaml"
    inv.write_text("")

    @contextmanager
    def no_lock(*args: Any, **kwargs: Any) -> Any:
        yield None

    monkeypatch.setattr(runner, "cluster_lock", no_lock)
    monkeypatch.setattr("clusterctl.model.load", lambda path: cluster.inv)
    argv = ["clusterctl", "rollout", "-i", str(inv), "--version", "2.0", "--pool", "app"]
    monkeypatch.setattr(sys, "argv", [*argv, "--output", "json"])
    with pytest.raises(SystemExit) as exit_:
        main()
    got = capsys.readouterr()
    assert exit_.value.code == 1 and "rollout stopped at be1, step check" in got.err
    events = [json.loads(line) for line in got.out.splitlines()]
    assert all("time" in e for e in events)
    assert events[-1]["step"] == "summary" and events[-1]["status"] == "failed"
    assert events[-1]["data"]["failed"]["node"] == "be1"
    assert [e for e in events if e["step"] == "summary"] == [events[-1]]


def test_the_lock_wait_says_who_holds_it_every_few_seconds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from test_lock_unit import NAMES, Hosts, foreign, take

    from clusterctl import progress
    from clusterctl.execute import lock as lk
    from clusterctl.execute import quorum

    world = Hosts(tmp_path, NAMES)

    class FakeRemote:
        @staticmethod
        def connect(ep: Any) -> Any:
            return world.remote(ep.name)

    monkeypatch.setattr(quorum, "Remote", FakeRemote)
    monkeypatch.setattr(quorum, "TIE_GRACE", 0.0)
    said: list[str] = []
    monkeypatch.setattr(progress, "lock_wait", said.append)
    monkeypatch.setattr(progress, "EVERY", 0.05)
    world.plant(foreign(), NAMES)
    with pytest.raises(lk.LockHeld):
        take(world, wait=1.5)
    # The first look says it at once; each later round at most every EVERY seconds.
    # (How long the first look took depends on the machine's load: only its form is fixed.)
    assert said and re.match(
        r"waiting for the cluster lock \(\d+s of 1\.5s\): the cluster lock is ", said[0]
    ), said
    assert "alice@laptop" in said[0]


def test_waits_are_shown_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from clusterctl import progress, ui
    from clusterctl.cli.base import _main

    monkeypatch.setattr(progress, "lock_wait", None)
    monkeypatch.setattr(progress, "reload_wait", None)
    monkeypatch.setattr(ui, "is_tty", lambda stream: False)
    _main(version=False, verbose=False, no_color=False)
    assert progress.lock_wait is None and progress.reload_wait is None
    monkeypatch.setattr(ui, "is_tty", lambda stream: True)
    _main(version=False, verbose=False, no_color=False)
    assert progress.lock_wait is not None and progress.reload_wait is not None
