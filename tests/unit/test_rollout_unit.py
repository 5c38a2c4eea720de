"""The rollout's pure parts (batches, the floor, which pools) and its sequencing, without hosts.

The sequencing tests replace SSH with a fake cluster that records every state it is told to
set, so each failure path (drain, wait, deploy, check, rollback, restore) is checked in
milliseconds: what the node is left in, what the report names, what --resume will skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from clusterctl import rollout as ro
from clusterctl.errors import ClusterctlError
from clusterctl.execute import admin, deploy
from clusterctl.execute.admin import AdminError
from clusterctl.execute.apply import StepFailed
from clusterctl.execute.ssh import Result
from clusterctl.model import parse
from clusterctl.model.schema import Inventory
from clusterctl.orchestrate.rerender import with_states

INV = """
cluster: c
frontends:
  - {name: lb1, kind: haproxy, address: 192.0.2.11}
pools:
  - name: app
    servers:
      - {name: be1, address: 198.51.100.1, port: 8080}
      - {name: be2, address: 198.51.100.2, port: 8080}
      - {name: be3, address: 198.51.100.3, port: 8080}
      - {name: be4, address: 198.51.100.4, port: 8080}
      - {name: spare, address: 198.51.100.9, port: 8080, backup: true}
  - name: api                       # shares be4 with app
    servers:
      - {name: be4, address: 198.51.100.4, port: 8080}
      - {name: be5, address: 198.51.100.5, port: 8080}
  - name: db                        # behind a tcp service only
    servers:
      - {name: db1, address: 198.51.100.31, port: 3306}
      - {name: db2, address: 198.51.100.32, port: 3306}
services:
  - name: web
    listen: [{port: 80}]
    routes: [{path: /api, pool: api}]
    default_pool: app
  - name: mysql
    mode: tcp
    listen: [{port: 3306}]
    default_pool: db
"""


def inventory(text: str = INV, min_available: int = 1, batch: int | None = None) -> Inventory:
    deploy = f"""deploy:
  command: [/usr/local/bin/deploy, "{{version}}"]
  min_available: {min_available}
"""
    if batch is not None:
        deploy += f"  batch: {batch}\n"
    return parse(text + deploy, "inventory.yaml")


def names(batches: list[list[Any]]) -> list[list[str]]:
    return [[s.name for s in b] for b in batches]


# ---------------------------------------------------------------------------- batch_size


@pytest.mark.parametrize(
    ("spec", "total", "size"),
    [
        ("1", 5, 1),
        ("2", 5, 2),
        ("9", 5, 9),  # more than there are: one batch (the floor decides if that is allowed)
        ("25%", 8, 2),
        ("50%", 5, 2),  # rounded down
        ("10%", 5, 1),  # never zero
        ("100%", 5, 5),
        ("12.5%", 8, 1),
    ],
)
def test_batch_size(spec: str, total: int, size: int) -> None:
    assert ro.batch_size(spec, total) == size


@pytest.mark.parametrize("spec", ["0", "-1", "0%", "101%", "x", "", "2 nodes", "%", "1.5"])
def test_batch_size_refuses_nonsense(spec: str) -> None:
    with pytest.raises(ClusterctlError, match=r"--batch .* must be a count"):
        ro.batch_size(spec, 5)


# ---------------------------------------------------------------------------- rollout_pools


def test_rollout_pools_default_to_those_behind_http_services() -> None:
    assert [p.name for p in ro.rollout_pools(inventory(), None)] == ["app", "api"]


def test_rollout_pools_named_ones_even_tcp() -> None:
    assert [p.name for p in ro.rollout_pools(inventory(), ["db"])] == ["db"]
    assert [p.name for p in ro.rollout_pools(inventory(), ["api", "app"])] == ["api", "app"]


def test_rollout_pools_unknown_name_is_refused() -> None:
    with pytest.raises(ClusterctlError, match=r"unknown pool.*nope"):
        ro.rollout_pools(inventory(), ["app", "nope"])


# ---------------------------------------------------------------------------- plan_batches


def test_one_at_a_time_each_node_once_in_pool_order() -> None:
    batches = ro.plan_batches(inventory(), ro.Options("2.0"))
    # be4 is in app and api but upgraded once; the backup server is upgraded too.
    assert names(batches) == [["be1"], ["be2"], ["be3"], ["be4"], ["spare"], ["be5"]]


def test_batch_of_two_and_a_percentage() -> None:
    inv = inventory()
    assert names(ro.plan_batches(inv, ro.Options("2.0", batch="2", pools=["app"]))) == [
        ["be1", "be2"],
        ["be3", "be4"],
        ["spare"],
    ]
    assert names(ro.plan_batches(inv, ro.Options("2.0", batch="40%", pools=["app"]))) == [
        ["be1", "be2"],
        ["be3", "be4"],
        ["spare"],
    ]


def test_the_inventory_batch_is_the_default() -> None:
    inv = inventory(batch=2)
    assert names(ro.plan_batches(inv, ro.Options("2.0", pools=["app"])))[0] == ["be1", "be2"]
    # --batch wins over the inventory
    assert names(ro.plan_batches(inv, ro.Options("2.0", batch="1", pools=["app"])))[0] == ["be1"]


def test_a_batch_below_the_floor_is_refused_naming_the_pool() -> None:
    inv = inventory(min_available=3)
    # app has 4 serving nodes (the backup does not count): 2 at once leaves 2 < 3.
    with pytest.raises(ClusterctlError) as err:
        ro.plan_batches(inv, ro.Options("2.0", batch="2", pools=["app"]))
    assert "be1, be2 would leave pool app with 2 serving nodes" in str(err.value)
    # Not "use a smaller --batch": one at a time fails too (be4 would leave api with be5 alone).
    assert str(err.value).endswith(
        "below deploy.min_available 3; lower deploy.min_available in inventory.yaml"
    )
    with pytest.raises(ClusterctlError, match="be4 would leave pool api with 1 serving"):
        ro.plan_batches(inv, ro.Options("2.0", batch="1", pools=["app"]))


def test_a_smaller_batch_is_suggested_only_when_it_keeps_the_floor() -> None:
    inv = inventory(min_available=1)
    with pytest.raises(ClusterctlError) as err:
        ro.plan_batches(inv, ro.Options("2.0", batch="4", pools=["app"]))
    assert "be1, be2, be3, be4 would leave pool app with 0 serving nodes" in str(err.value)
    assert str(err.value).endswith("use a smaller --batch (--batch 1 keeps the floor)")


def test_the_floor_counts_pools_outside_the_selection() -> None:
    # Upgrading only app still takes be4 out of api, which then has be5 alone.
    inv = inventory(min_available=2)
    with pytest.raises(ClusterctlError, match="pool api with 1 serving"):
        ro.plan_batches(inv, ro.Options("2.0", pools=["app"]))


def test_drained_and_backup_nodes_do_not_count_towards_the_floor() -> None:
    text = INV.replace(
        "{name: be3, address: 198.51.100.3, port: 8080}",
        "{name: be3, address: 198.51.100.3, port: 8080, state: drain}",
    )
    inv = inventory(text, min_available=3)
    # app serving: be1, be2, be4 (be3 drained, spare a backup); taking be1 leaves 2 < 3.
    with pytest.raises(ClusterctlError, match="be1 would leave pool app with 2 serving"):
        ro.plan_batches(inv, ro.Options("2.0", pools=["app"]))


def test_a_floor_of_zero_allows_everything_at_once() -> None:
    inv = inventory(min_available=0)
    assert names(ro.plan_batches(inv, ro.Options("2.0", batch="100%"))) == [
        ["be1", "be2", "be3", "be4", "spare", "be5"]
    ]


def test_with_states_changes_a_node_in_every_pool() -> None:
    inv = with_states(inventory(), {"be4": "drain"})
    assert [s.state for p in inv.pools for s in p.servers if s.name == "be4"] == ["drain", "drain"]
    assert all(s.state == "ready" for p in inv.pools for s in p.servers if s.name != "be4")


# ---------------------------------------------------------------------------- sequencing


class FakeCluster:
    """Stands in for ro.Cluster: records states; sessions and health come from the test."""

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self.calls: list[tuple[str, str]] = []
        self.fail_state: tuple[str, str] | None = None  # (node, state) that raises
        self.sessions: dict[str, list[int]] = {}  # node -> counts returned poll after poll
        # (front end, node) -> counts poll after poll, for waits that follow each front end
        self.fe_sessions: dict[tuple[str, str], list[int]] = {}
        self.reconnects: list[str] = []

    def set_state(self, node: str, state: str) -> dict[str, Any]:
        if self.fail_state == (node, state):
            raise AdminError(f"lb1: balancer-manager refused app/{node}")
        self.calls.append((node, state))
        return {}  # no view read back: every wait looks on its own

    def control(self, fe: Any, remote: Any) -> str:
        return admin.control(fe, remote)

    def views(self, fe: Any, remote: Any) -> list[Any]:
        return admin.views(remote, self.inv, fe)

    def node(self, name: str) -> str:
        return name

    def reconnect(self, name: str) -> str:
        self.reconnects.append(name)
        return name

    def each_frontend(self, fn: Any) -> list[Any]:
        return [fn(fe, None) for fe in self.inv.frontends]

    def state_of(self, node: str) -> str:
        states = [st for n, st in self.calls if n == node]
        return states[-1] if states else "ready"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeCluster, dict[str, Any]]]:
    inv = inventory()
    cluster = FakeCluster(inv)
    world: dict[str, Any] = {
        "release": dict.fromkeys(["be1", "be2", "be3", "be4", "spare", "be5"], "1.0"),
        "broken": set(),  # (node, version) whose check fails
        "deploy_fails": set(),  # (node, version) whose deploy command fails
        "saved": [],
    }

    def sessions(inv: Inventory, fe: Any, node: str, seen: Any) -> int:
        per_fe = cluster.fe_sessions.get((fe.name, node))
        if per_fe is not None:
            return per_fe.pop(0) if per_fe else 0
        counts = cluster.sessions.get(node, [])
        return counts.pop(0) if counts else 0

    def views(remote: Any, inv: Inventory, fe: Any) -> list[admin.ServerView]:
        # What the front end reports: the states this rollout (or an earlier one) set.
        return [
            admin.ServerView(fe.name, p.name, s.name, cluster.state_of(s.name), "up", 0)
            for p in inv.pools
            for s in p.servers
        ]

    def probe(remote: str, deploy: Any, server: Any) -> tuple[int, str]:
        return 200, world["release"][server.name]

    def run_deploy(remote: str, deploy: Any, version: str, server: Any, *base: Any) -> float:
        if (server.name, version) in world["deploy_fails"]:
            raise StepFailed("deploy", "deploy-app: no space left on device")
        world["release"][server.name] = version
        return 0.01

    def check(remote: str, deploy: Any, version: str, server: Any) -> None:
        if (server.name, version) in world["broken"]:
            raise StepFailed("check", f"{server.name}/health answered 503; expected 200")

    @contextmanager
    def open_cluster(inv: Inventory) -> Iterator[FakeCluster]:
        yield cluster

    monkeypatch.setattr(admin, "sessions_in", sessions)
    monkeypatch.setattr(admin, "views", views)
    monkeypatch.setattr(admin, "up_in", lambda seen, node: True)
    monkeypatch.setattr(ro, "probe_node", probe)
    monkeypatch.setattr(ro, "run_deploy", run_deploy)
    monkeypatch.setattr(ro, "private_check", check)
    monkeypatch.setattr(ro, "open_cluster", open_cluster)
    monkeypatch.setattr(ro, "_save_state", lambda c, state: world["saved"].append(dict(state)))
    monkeypatch.setattr(ro, "load_state", lambda c: world["saved"][-1] if world["saved"] else None)
    yield cluster, world


def run(opts: ro.Options, cluster: FakeCluster) -> tuple[ro.Report, list[ro.Event]]:
    got: list[ro.Event] = []
    report = ro.run(cluster.inv, opts, got.append)
    return report, got


def steps(events: list[ro.Event], node: str) -> list[str]:
    return [f"{e.step}:{e.status}" for e in events if e.node == node]


def test_a_node_goes_drain_wait_maint_deploy_check_restore(fake: Any) -> None:
    cluster, world = fake
    cluster.sessions["be1"] = [2, 1, 0, 1, 0]  # drain waits; one request slips in before maint
    report, events = run(ro.Options("2.0", pools=["app"]), cluster)
    assert report.upgraded == ["be1", "be2", "be3", "be4", "spare"]
    assert steps(events, "be1") == [
        "drain:start",
        "drain:ok",
        "wait:ok",
        "maint:start",
        "maint:ok",
        "deploy:start",
        "deploy:ok",
        "check:ok",
        "restore:start",
        "restore:ok",
        "done:ok",
    ]
    assert [st for n, st in cluster.calls if n == "be1"] == ["drain", "maint", "ready"]
    assert world["saved"][-1] == {
        "version": "2.0",
        "done": ["be1", "be2", "be3", "be4", "spare"],
        "status": "complete",
    }


def test_failing_check_rolls_back_and_leaves_the_node_drained(fake: Any) -> None:
    cluster, world = fake
    world["broken"].add(("be2", "2.0"))
    with pytest.raises(ro.RolloutFailed) as err:
        run(ro.Options("2.0", pools=["app"]), cluster)
    failure = err.value
    assert (failure.node, failure.step, failure.drained, failure.held) == (
        "be2",
        "check",
        True,
        "drain",
    )
    assert str(failure) == (
        "rollout stopped at be2, step check: be2/health answered 503; expected 200; "
        "be2 is still drained; continue: clusterctl rollout -i inventory.yaml --version 2.0 "
        "--resume; or put be2 back: clusterctl restore -i inventory.yaml be2"
    )
    assert world["release"]["be2"] == "1.0"  # rolled back
    assert world["release"]["be1"] == "2.0" and world["release"]["be3"] == "1.0"
    # Never back in service on the broken release; drained again once the old one checks out.
    assert [st for n, st in cluster.calls if n == "be2"] == ["drain", "maint", "drain"]
    assert ("be3", "drain") not in cluster.calls
    assert world["saved"][-1]["status"] == "failed"
    assert world["saved"][-1]["done"] == ["be1"]
    assert world["saved"][-1]["failed"] == {
        "node": "be2",
        "step": "check",
        "reason": "be2/health answered 503; expected 200",
        "drained": True,
        "held": "drain",
    }


def test_resume_skips_what_was_done_and_finishes(fake: Any) -> None:
    cluster, world = fake
    world["broken"].add(("be2", "2.0"))
    with pytest.raises(ro.RolloutFailed):
        run(ro.Options("2.0", pools=["app"]), cluster)
    world["broken"].clear()
    report, events = run(ro.Options("2.0", pools=["app"], resume=True), cluster)
    assert report.skipped == ["be1"]
    assert report.upgraded == ["be2", "be3", "be4", "spare"]
    assert steps(events, "be1") == ["skip:ok"]
    assert cluster.state_of("be2") == "ready"
    # --resume for another version starts from the beginning.
    report, _ = run(ro.Options("3.0", pools=["app"], resume=True), cluster)
    assert report.skipped == [] and report.upgraded[0] == "be1"


def test_rollback_that_fails_keeps_the_node_in_maint(fake: Any) -> None:
    cluster, world = fake
    world["broken"].update({("be1", "2.0"), ("be1", "1.0")})
    events: list[ro.Event] = []
    with pytest.raises(ro.RolloutFailed) as err:
        ro.run(cluster.inv, ro.Options("2.0", pools=["app"]), events.append)
    assert err.value.held == "maint"
    assert "be1 is still in maint; continue: clusterctl rollout -i inventory.yaml" in str(err.value)
    # Its old release does not check out either: no user is sent to it, pinned or not.
    assert cluster.state_of("be1") == "maint"
    assert steps(events, "be1")[-4:] == [
        "check:failed",
        "rollback:start",
        "rollback:failed",
        "failed:failed",
    ]
    assert events[-1].data == {"step": "check", "drained": True, "held": "maint"}


def test_deploy_failure_is_step_deploy(fake: Any) -> None:
    cluster, world = fake
    world["deploy_fails"].add(("be1", "2.0"))
    events: list[ro.Event] = []
    with pytest.raises(ro.RolloutFailed) as err:
        ro.run(cluster.inv, ro.Options("2.0", pools=["app"]), events.append)
    assert (err.value.node, err.value.step) == ("be1", "deploy")
    assert "no space left on device" in err.value.reason
    assert "deploy:failed" in steps(events, "be1")
    assert world["release"]["be1"] == "1.0"
    assert cluster.state_of("be1") == "drain"


def test_sessions_outlasting_the_timeout_stop_at_wait_and_put_the_node_back(fake: Any) -> None:
    cluster, world = fake
    cluster.sessions["be1"] = [1] * 10_000
    with pytest.raises(ro.RolloutFailed) as err:
        run(ro.Options("2.0", pools=["app"], drain_timeout=0.0), cluster)
    assert (err.value.step, err.value.drained) == ("wait", False)
    assert "1 session still active" in err.value.reason
    assert [st for n, st in cluster.calls if n == "be1"] == ["drain", "ready"]
    assert world["release"]["be1"] == "1.0"


def test_cut_deploys_anyway(fake: Any) -> None:
    cluster, _ = fake
    cluster.sessions["be1"] = [1] * 10_000
    report, events = run(ro.Options("2.0", pools=["app"], drain_timeout=0.0, cut=True), cluster)
    assert report.upgraded[0] == "be1"
    assert any("cut 1 straggling" in e.message for e in events if e.node == "be1")


def test_a_front_end_refusing_the_drain_is_named_and_the_node_put_back(fake: Any) -> None:
    cluster, _ = fake
    cluster.fail_state = ("be1", "maint")
    with pytest.raises(ro.RolloutFailed) as err:
        run(ro.Options("2.0", pools=["app"]), cluster)
    assert (err.value.node, err.value.step, err.value.drained) == ("be1", "maint", False)
    assert "balancer-manager refused app/be1" in err.value.reason
    assert cluster.state_of("be1") == "ready"


def test_in_a_batch_the_nodes_that_made_it_are_recorded(fake: Any) -> None:
    cluster, world = fake
    world["broken"].add(("be2", "2.0"))
    with pytest.raises(ro.RolloutFailed) as err:
        run(ro.Options("2.0", pools=["app"], batch="2"), cluster)
    assert err.value.node == "be2"
    assert world["saved"][-1]["done"] == ["be1"]  # --resume will not upgrade be1 again
    assert world["release"]["be1"] == "2.0"


def test_an_invalid_version_is_refused_before_anything(fake: Any) -> None:
    cluster, world = fake
    with pytest.raises(ClusterctlError, match="is not a release name"):
        run(ro.Options("2.0; rm -rf /"), cluster)
    assert cluster.calls == [] and world["saved"] == []


# ---------------------------------------------------------------------------- live states


def test_a_node_left_out_by_a_killed_rollout_goes_first_and_keeps_the_floor(fake: Any) -> None:
    cluster, _world = fake
    cluster.calls.append(("be3", "maint"))  # what a rollout killed at be3's deploy leaves
    report, events = run(ro.Options("3.0", pools=["app"], batch="2"), cluster)
    # be3 serves nobody now: upgrading it costs no capacity, so it is in the first batch; the
    # planner never takes be1 and be2 out while be3 is out.
    assert report.upgraded[:2] == ["be3", "be1"]
    out = [e for e in events if e.step == "out"]
    assert [(e.node, e.message) for e in out] == [
        ("be3", "out of service now (maint on lb1); upgraded first")
    ]
    assert cluster.state_of("be3") == "ready"


def test_live_states_refuse_a_batch_that_would_empty_a_pool(fake: Any) -> None:
    cluster, _world = fake
    small = ro.Options("3.0", pools=["api"], batch="2")
    cluster.calls.append(("be5", "maint"))
    # api is be4 and be5; be5 is out, so be4 cannot go too: nothing is touched.
    with pytest.raises(ro.FloorError) as err:
        run(small, cluster)
    assert "a batch of be4, be5 would leave pool api with 0 serving nodes" in str(err.value)
    # One at a time works: be5 first (it serves nobody now), then be4 once be5 is back.
    assert str(err.value).endswith("use a smaller --batch (--batch 1 keeps the floor)")
    assert cluster.calls == [("be5", "maint")]
    report, _ = run(ro.Options("3.0", pools=["api"], batch="1"), cluster)
    assert report.upgraded == ["be5", "be4"]


def test_each_batch_is_gated_on_what_the_front_ends_report_then(
    fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster, _world = fake
    real_restore = ro.restore

    def restore_then_someone_drains(c: Any, node: str, emit: Any, **kw: Any) -> None:
        real_restore(c, node, emit, **kw)
        if node == "be1":  # an operator drains be5 by hand while the rollout runs
            cluster.calls.append(("be5", "drain"))

    monkeypatch.setattr(ro, "restore", restore_then_someone_drains)
    with pytest.raises(ro.RolloutFailed) as err:
        run(ro.Options("3.0", pools=["app", "api"], batch="1"), cluster)
    # be4 is in api with be5; be5 went out after the plan was made.
    assert (err.value.node, err.value.step, err.value.drained) == ("be4", "floor", False)
    assert "be5 (drain on lb1)" in err.value.reason
    assert ("be4", "drain") not in cluster.calls


def test_a_drain_wait_follows_each_front_end_on_its_own(fake: Any) -> None:
    cluster, _world = fake
    two = inventory(
        INV.replace(
            "frontends:\n", "frontends:\n  - {name: lb2, kind: haproxy, address: 192.0.2.12}\n"
        )
    )
    cluster.inv = two
    # Never zero on both at the same poll: lb1 clears first, lb2 later.
    cluster.fe_sessions[("lb1", "be1")] = [0, 3, 3, 3, 3]
    cluster.fe_sessions[("lb2", "be1")] = [2, 1, 0, 4, 4]
    events: list[ro.Event] = []
    waited = ro.wait_idle(cluster, "be1", 30.0, False, events.append)  # type: ignore[arg-type]
    assert waited < 30.0
    assert events[-1].message == "no active sessions left"
    # lb1 is not asked again once it reached zero.
    assert cluster.fe_sessions[("lb1", "be1")] == [3, 3, 3, 3]


def test_a_wait_that_runs_out_names_what_is_still_open(fake: Any) -> None:
    cluster, _world = fake
    cluster.sessions["be1"] = [2] * 10_000
    with pytest.raises(StepFailed, match=r"2 sessions still active after 0s \(lb1 2\)"):
        ro.wait_idle(cluster, "be1", 0.0, False, lambda e: None)  # type: ignore[arg-type]


def test_a_lost_session_during_deploy_reconnects_before_the_rollback(
    fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clusterctl.execute.ssh import SSHError

    cluster, world = fake
    calls: list[str] = []

    def deploy(remote: str, d: Any, version: str, server: Any, *base: Any) -> float:
        calls.append(f"{server.name}:{version}")
        if server.name == "be1" and version == "2.0":
            raise SSHError("connection to be1 lost during deploy")
        world["release"][server.name] = version
        return 0.01

    monkeypatch.setattr(ro, "run_deploy", deploy)
    with pytest.raises(ro.RolloutFailed) as err:
        run(ro.Options("2.0", pools=["app"]), cluster)
    assert cluster.reconnects == ["be1"]
    assert calls == ["be1:2.0", "be1:1.0"]  # the rollback ran, on the new session
    assert err.value.held == "drain"
    assert "connection to be1 lost during deploy" in str(err.value)
    assert "--resume" in str(err.value)


def test_a_node_the_inventory_keeps_drained_goes_back_to_drain(fake: Any) -> None:
    cluster, _world = fake
    text = INV.replace(
        "{name: be3, address: 198.51.100.3, port: 8080}",
        "{name: be3, address: 198.51.100.3, port: 8080, state: drain}",
    )
    cluster.inv = inventory(text)
    cluster.calls.append(("be3", "drain"))
    report, _ = run(ro.Options("2.0", pools=["app"]), cluster)
    assert "be3" in report.upgraded
    assert cluster.state_of("be3") == "drain"  # a rollout changes only what it exists to change


def test_drain_by_hand_refuses_the_floor_and_names_force() -> None:
    inv = parse(INV + "deploy:\n  command: [/bin/true]\n  min_available: 1\n", "inv.yaml")
    with pytest.raises(ro.FloorError) as err:
        ro.check_floor(inv, ["be4"], {"be5": "maint on lb1"}, fix="--force")
    assert str(err.value) == (
        "be4 would leave pool api with 0 serving nodes; already out: be5 (maint on lb1), "
        "below deploy.min_available 1; put a node back first: clusterctl restore -i inv.yaml "
        "be5; or lower deploy.min_available in inv.yaml; or pass --force to go below the "
        "floor knowingly"
    )
    ro.check_floor(inv, ["be4"], {}, fix="--force")  # be5 serves: be4 may go


def test_status_names_an_interrupted_rollout_and_the_command_that_continues() -> None:
    inv = inventory()
    assert ro.interrupted(inv, None) == ""
    assert ro.interrupted(inv, {"version": "2.0", "done": ["be1"], "status": "complete"}) == ""
    failed = {
        "version": "2.0",
        "done": ["be1"],
        "status": "failed",
        "failed": {"node": "be2", "step": "deploy", "held": "maint"},
    }
    assert ro.interrupted(inv, failed) == (
        "rollout of 2.0 stopped at be2, step deploy (be2 left maint); done: be1; "
        "continue: clusterctl rollout -i inventory.yaml --version 2.0 --resume"
    )
    running = {"version": "2.0", "done": [], "status": "running"}
    assert "was interrupted (done: no node)" in ro.interrupted(inv, running)


def test_event_json_is_one_line_with_rounded_times() -> None:
    at = 1796169600.25  # 2026-12-02T00:00:00.250Z
    line = ro.event_json(ro.Event("be1", "wait", "ok", 1.234567, "no active sessions left", at=at))
    assert "\n" not in line
    assert line == (
        '{"time": "2026-12-02T00:00:00.250Z", "node": "be1", "step": "wait", "status": "ok", '
        '"elapsed": 1.235, "message": "no active sessions left", "data": {}}'
    )


# ---------------------------------------------------------------------------- deploy


class CurlRemote:
    """The node's `curl -D -` answer to its own health URL, and the deploy command's exit."""

    def __init__(self, headers: str, deploy_rc: int = 0) -> None:
        self.headers, self.deploy_rc = headers, deploy_rc
        self.runs: list[list[str]] = []

    def sh(self, script: str, *args: str, **kw: object) -> Result:
        assert args == ("http://198.51.100.1:8080/health",)
        return Result((), 0 if self.headers else 7, self.headers, "")

    def run(self, argv: list[str], **kw: object) -> Result:
        self.runs.append(argv)
        return Result(tuple(argv), self.deploy_rc, "", "deploy: error: disk full\n")


def server_be1() -> Any:
    return inventory().pools[0].servers[0]


def test_probe_node_reads_status_and_release_header() -> None:
    remote = CurlRemote("HTTP/1.1 200 OK\r\nX-Backend: be1\r\nx-release: 2.0\r\n\r\n")
    assert deploy.probe_node(remote, inventory().deploy, server_be1()) == (200, "2.0")  # type: ignore[arg-type]
    remote = CurlRemote("HTTP/1.0 503 Service Unavailable\r\n\r\n")
    assert deploy.probe_node(remote, inventory().deploy, server_be1()) == (503, None)  # type: ignore[arg-type]
    assert deploy.probe_node(CurlRemote(""), inventory().deploy, server_be1()) == (0, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("headers", "said"),
    [
        (
            "HTTP/1.1 503 Service Unavailable\r\nX-Release: 2.0\r\n\r\n",
            "answered 503 with release 2.0",
        ),
        ("HTTP/1.1 200 OK\r\nX-Release: 1.0\r\n\r\n", "answered 200 with release 1.0"),
        ("HTTP/1.1 200 OK\r\n\r\n", "answered 200 without a X-Release header"),
        ("", "answered nothing;"),
    ],
)
def test_private_check_says_what_the_node_answered(headers: str, said: str) -> None:
    inv = parse(
        (INV + 'deploy:\n  command: [d, "{version}"]\n  health: {timeout: 1ms, port: 8080}\n'),
        "inventory.yaml",
    )
    with pytest.raises(StepFailed) as err:
        deploy.private_check(CurlRemote(headers), inv.deploy, "2.0", server_be1())  # type: ignore[arg-type]
    assert err.value.step == "check"
    assert said in str(err.value)
    assert str(err.value).endswith("expected 200 and 2.0")


def test_run_deploy_fills_in_the_version_and_reports_failure() -> None:
    remote = CurlRemote("", deploy_rc=1)
    with pytest.raises(StepFailed, match="deploy: deploy: error: disk full"):
        deploy.run_deploy(remote, inventory().deploy, "2.0", server_be1())  # type: ignore[arg-type]
    assert remote.runs == [["/usr/local/bin/deploy", "2.0"]]


def test_a_deploy_whose_session_died_is_a_lost_connection_not_a_failed_command() -> None:
    from clusterctl.execute.ssh import SSHError

    # paramiko reports -1 when the channel closes without an exit status.
    remote = CurlRemote("", deploy_rc=-1)
    with pytest.raises(SSHError, match=r"^connection to be1 lost during deploy$"):
        deploy.run_deploy(remote, inventory().deploy, "2.0", server_be1())  # type: ignore[arg-type]
