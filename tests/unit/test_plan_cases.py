"""Plan cases, in the manner of pyinfra's operation tests: a folder per case, run by one test.

tests/plan_cases/<case>/ holds
- inventory.yaml: the inventory (TLS files from ../../../inventories/files);
- facts.json: per host, what `facts.parse_gather` would give: `version`, `pending` (the marker's
  text), `temps`, `managed` (the manifest), `network` (addresses, nonlocal_bind, sockets with
  their users, server_pids) and `files`: path -> {mode, owner, group, sha256, text} or
  {"exists": false}; `"as_rendered": true` takes the content, mode and owner from what
  clusterctl renders now (other keys beside it override), and the path "*" stands for every
  rendered file not listed. Files not listed are absent;
- steps.json: per host, the plan's status, each file's action, and its steps and rollback steps
  as `plan --output json` prints them, with the run id RUN. A file's content is named by what it
  must be ("render of PATH", "staged render of PATH": rendered under the staging root) instead
  of its digest, so a template change does not touch these files, and the test checks the
  digest against an independent render.

After a deliberate change to the steps, regenerate the expected files and review their diff:

    UPDATE_PLAN_CASES=1 .venv/bin/pytest tests/unit/test_plan_cases.py

The rest of the module runs apply's interpreter (execute/apply.py) on those plans against a
fake host that records each remote command: the order, the cleanups on failure, the rollback,
the fault checkpoints, without root or a lab.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import pytest

from clusterctl.errors import ClusterctlError
from clusterctl.execute import apply as applymod
from clusterctl.execute.scripts import SCRIPTS
from clusterctl.execute.ssh import Result
from clusterctl.facts import HostFacts, LiveFile, Network, Socket
from clusterctl.model import load
from clusterctl.model.schema import Frontend, Inventory
from clusterctl.plan import (
    HostPlan,
    Plan,
    effective_frontend,
    plan_host,
    plan_json,
    render_host,
)
from clusterctl.plan_build import stage_root, temp_path
from clusterctl.plan_steps import FAULT_POINTS, PutFile, ScriptName, listing, step_json
from clusterctl.render import HostFiles, render_frontend

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "plan_cases"
UPDATE = os.environ.get("UPDATE_PLAN_CASES") == "1"
RUN = "RUN"


def _live(path: str, spec: dict[str, Any], rendered: HostFiles) -> LiveFile:
    if spec.get("exists") is False:
        return LiveFile(path, False)
    base = rendered[path] if spec.get("as_rendered") else None
    content: bytes | None = base.content if base else None
    if "text" in spec:
        content = spec["text"].encode()
    secret = base.secret if base else False
    sha = spec.get("sha256") or hashlib.sha256(content or b"").hexdigest()
    return LiveFile(
        path,
        True,
        int(spec["mode"], 8) if "mode" in spec else (base.mode if base else 0o644),
        spec.get("owner", base.owner if base else "root"),
        spec.get("group", base.group if base else "root"),
        sha,
        None if secret else content,  # gather never reads a secret's content
    )


def _network(data: dict[str, Any]) -> Network:
    socks = data.get("sockets")
    addrs = data.get("addresses")
    return Network(
        None if addrs is None else tuple((a, b) for a, b in addrs),
        tuple(data.get("nonlocal_bind", (False, False))),
        None
        if socks is None
        else tuple(
            Socket(s["address"], s["port"], tuple((n, p) for n, p in s.get("users", ())))
            for s in socks
        ),
        frozenset(data.get("server_pids", ())),
    )


def case_facts(inv: Inventory, fe: Frontend, data: dict[str, Any]) -> HostFacts:
    """facts.json's entry for `fe` as parse_gather would give it."""
    bare = HostFacts(fe.name, version=data.get("version"))
    rendered = render_frontend(inv, effective_frontend(fe, bare))
    specs = dict(data.get("files", {}))
    every = specs.pop("*", None)
    if every is not None:
        specs = {p: every for p in rendered if p not in specs} | specs
    managed = data.get("managed")
    return HostFacts(
        fe.name,
        version=data.get("version"),
        pending=data.get("pending"),
        files={p: _live(p, s, rendered) for p, s in specs.items()},
        temps=tuple(sorted(data.get("temps", ()))),
        network=_network(data.get("network", {})),
        managed=None if managed is None else tuple(managed),
    )


def _content_names(hp: HostPlan, inv: Inventory, fe: Frontend) -> dict[str, str]:
    """ "PATH@SHA256" a put must carry -> its content's name, from renders made here."""
    fe_now = effective_frontend(fe, HostFacts(fe.name, version=hp.version))
    root = stage_root(fe.name, RUN)
    staged = render_frontend(inv, fe_now, root=root).items()
    names = {f"{root}{p}@{f.sha256}": f"staged render of {p}" for p, f in staged}
    for p, f in render_frontend(inv, fe_now).items():
        names[f"{temp_path(p)}@{f.sha256}"] = f"render of {p}"
    return names


def host_expectation(hp: HostPlan, inv: Inventory, fe: Frontend) -> dict[str, Any]:
    names = _content_names(hp, inv, fe)

    def shown(step: Any) -> dict[str, Any]:
        out = step_json(step)
        if isinstance(step, PutFile):
            # The right content for this path, or its digest (which no expected file holds).
            out["stdin"] = names.get(f"{step.path}@{step.sha256}", out["stdin"])
        return out

    return {
        "status": hp.status,
        "files": {c.path: c.action for c in hp.files} | {d.path: "delete" for d in hp.deletions},
        "steps": [shown(s) for s in hp.steps],
        "rollback": [shown(s) for s in hp.rollback],
    }


@dataclass
class Case:
    name: str
    inv: Inventory
    plans: dict[str, tuple[Frontend, HostPlan]] = field(default_factory=dict)


def load_case(name: str) -> Case:
    folder = CASES / name
    inv = load(folder / "inventory.yaml")
    facts = json.loads((folder / "facts.json").read_text())
    case = Case(name, inv)
    for fe in inv.frontends:
        if fe.name in facts:
            hp = plan_host(inv, fe, case_facts(inv, fe, facts[fe.name]), run_id=RUN)
            case.plans[fe.name] = (fe, hp)
    return case


CASE_NAMES = sorted(p.name for p in CASES.iterdir() if (p / "inventory.yaml").is_file())


@pytest.mark.parametrize("name", CASE_NAMES)
def test_plan_case(name: str) -> None:
    case = load_case(name)
    got = {h: host_expectation(hp, case.inv, fe) for h, (fe, hp) in case.plans.items()}
    expected_file = CASES / name / "steps.json"
    if UPDATE:
        expected_file.write_text(json.dumps(got, indent=2) + "\n")
    assert expected_file.exists(), f"no {expected_file}: run with UPDATE_PLAN_CASES=1"
    assert got == json.loads(expected_file.read_text())


def test_the_cases_cover_every_kind_and_outcome() -> None:
    seen = {(hp.kind, hp.status) for n in CASE_NAMES for _, hp in load_case(n).plans.values()}
    assert {k for k, _ in seen} == {"haproxy", "nginx", "apache"}
    assert {s for _, s in seen} == {"change", "unchanged", "reload pending", "clean up", "refused"}


@pytest.mark.parametrize("inventory", ["minimal", "full", "three-kinds", "pair"])
def test_one_render_gives_the_live_files_byte_for_byte(inventory: str) -> None:
    """The staging root is a sentinel the live files are cut from: exactly a plain render."""
    inv = load(REPO / "inventories" / f"{inventory}.yaml")
    for fe in inv.frontends:
        once = render_host(inv, fe, "20261201T000000-0a1b2c3d")
        assert once.live == render_frontend(inv, fe)
        assert once.staged == render_frontend(inv, fe, root=once.root)


def test_every_script_a_step_names_exists() -> None:
    # "network" is the facts' own command (facts.network_now runs it and parses its output).
    assert set(SCRIPTS) | {"network"} == set(get_args(ScriptName))


def test_secrets_are_shown_by_digest_only() -> None:
    case = load_case("tls-three-kinds")
    key = (REPO / "inventories" / "files" / "example.com.key").read_text().splitlines()[1]
    plans = [hp for _, hp in case.plans.values()]
    dumped = json.dumps(plan_json(Plan(tuple(plans))))
    assert key not in dumped and key not in repr([hp.steps for hp in plans])
    puts = [s for hp in plans for s in hp.steps if isinstance(s, PutFile) and s.secret]
    assert len(puts) == 2 * 3  # staged and uploaded, on each host
    assert all(f'"sha256:{s.sha256}"' in dumped for s in puts)


def test_plan_steps_lists_each_host_s_steps_in_one_line_each() -> None:
    case = load_case("tls-three-kinds")
    hp = case.plans["lb-nginx"][1]
    lines = listing(hp.host, hp.steps, hp.rollback)
    assert lines[0] == "lb-nginx: steps:"
    assert len(lines) == 2 + len(hp.steps) + len(hp.rollback)
    assert "  reload: reload (systemctl reload nginx)" in lines
    assert "  probe: probe https://127.0.0.1:443/" in lines
    key = next(s for s in hp.steps if isinstance(s, PutFile) and s.secret and s.phase == "upload")
    assert f"  upload: put {key.path} (mode 0600, secret, sha256:{key.sha256[:12]})" in lines
    assert lines[-4] == "lb-nginx: if the reload or a probe fails:"
    assert lines[-3].startswith(
        "  rollback: restore /var/lib/clusterctl/frontends/lb-nginx/backup "
    )
    assert lines[-2:] == [
        "  rollback: reload (systemctl reload nginx)",
        "  rollback: forget /var/lib/clusterctl/frontends/lb-nginx/reload-pending"
        " /var/lib/clusterctl/frontends/lb-nginx/backup",
    ]
    _, same = load_case("no-change-haproxy").plans["lb1"]
    assert listing(same.host, same.steps, same.rollback) == []


# ---------------------------------------------------------------------------- the interpreter


class FakeHost:
    """Records every remote command by the name of the script it runs; a command starting with
    one of `fail` ("put PATH" for a file) exits 1 saying "boom" (a probe answers 000)."""

    def __init__(self, *fail: str) -> None:
        self.fail = fail
        self.ran: list[str] = []
        self.names = {text: name for name, text in SCRIPTS.items()}

    def sh(self, script: str, *args: str, stdin: bytes | None = None, **_: Any) -> Result:
        name = self.names[script]
        what = f"put {args[0]}" if name == "write" else f"{name} {' '.join(args)}".rstrip()
        self.ran.append(what)
        failing = any(what.startswith(f) for f in self.fail)
        if name == "probe":
            return Result(("sh",), 0, "000" if failing else "200", "boom" if failing else "")
        return Result(("sh",), 1 if failing else 0, "", "boom" if failing else "")


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    fake = FakeHost()
    monkeypatch.setattr(
        applymod,
        "reload_and_confirm",
        lambda remote, fe, ports=frozenset(): remote.ran.append(f"reload {sorted(ports)}"),
    )
    monkeypatch.setattr(applymod, "network_now", lambda remote, fe, dirs: (Network(), []))
    return fake


def _apply(case: str, fake: FakeHost, host_name: str = "lb1") -> applymod.HostResult:
    c = load_case(case)
    fe, hp = c.plans[host_name]
    return applymod.apply_host(fake, c.inv, fe, hp)  # type: ignore[arg-type]


def test_apply_runs_the_planned_steps_in_order(
    host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    passed: list[str] = []
    monkeypatch.setattr(applymod, "checkpoint", passed.append)
    result = _apply("update-nginx", host)
    assert (result.status, result.message) == ("changed", "1 file(s) updated, reloaded")
    root = stage_root("lb1", RUN)
    names = [r.split(" ")[0] for r in host.ran]
    runs = [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]  # puts as one
    assert runs == [
        *("rm-tree", "put", "mkdir", "exec", "rm-tree"),  # staged and validated
        *("put", "backup", "swap", "reload", "probe", "confirm"),
    ]
    assert f"put {root}/etc/nginx/nginx.conf" in host.ran[: names.index("mkdir")]
    assert names.count("put") == len(load_case("update-nginx").plans["lb1"][1].rendered) + 1
    assert host.ran[names.index("backup") - 1] == "put /etc/nginx/.nginx.conf.clusterctl-new"
    assert "reload [80]" in host.ran
    assert passed == list(FAULT_POINTS)


def test_a_failing_validator_changes_nothing_and_hides_the_root(host: FakeHost) -> None:
    host.fail = ("exec",)
    with pytest.raises(applymod.StepFailed) as info:
        _apply("update-nginx", host)
    assert str(info.value) == "validate (nginx): boom"
    assert host.ran[-1] == f"rm-tree {stage_root('lb1', RUN)}"  # the staging tree goes anyway
    assert not any(r.startswith(("backup", "swap", "reload")) for r in host.ran)


def test_a_failed_upload_removes_the_uploads(host: FakeHost) -> None:
    host.fail = ("put /etc/apache2/tls/.web.key",)
    with pytest.raises(ClusterctlError, match=r"^upload /etc/apache2/tls/\.web\.key"):
        _apply("mode-only-apache", host)
    assert host.ran[-1] == "rm-files /etc/apache2/tls/.web.key.clusterctl-new"
    assert not any(r.startswith("backup") for r in host.ran)


def test_a_probe_that_fails_after_the_swap_rolls_back(host: FakeHost) -> None:
    host.fail = ("probe https",)
    result = _apply("tls-three-kinds", host, "lb-nginx")
    assert result.status == "rolled back"
    assert result.message.startswith("probe: https://127.0.0.1:443/ does not answer: boom; ")
    after = [r.split(" ")[0] for r in host.ran[host.ran.index("reload [80, 443]") :]]
    assert after == ["reload", "probe", "probe", "restore", "reload", "forget"]


def test_a_rollback_that_fails_says_both_and_keeps_the_backup(host: FakeHost) -> None:
    host.fail = ("probe", "restore")
    result = _apply("tls-three-kinds", host, "lb-haproxy")
    assert result.status == "failed"
    assert result.message.startswith("probe: http://127.0.0.1:80/ does not answer: boom; ")
    assert "; then the rollback failed too: restore backup: boom (the previous files are in " in (
        result.message
    )
    assert result.message.endswith("/frontends/lb-haproxy/backup on the host)")


def test_left_overs_only(host: FakeHost) -> None:
    result = _apply("pending-reload-haproxy", host)
    assert (result.status, result.message) == ("changed", "finished a pending reload")
    assert [r.split(" ")[0] for r in host.ran] == ["reload", "probe", "confirm"]
    host.ran.clear()
    result = _apply("stale-temps-apache", host)
    assert (result.status, result.message) == (
        "changed",
        "removed 2 left-over temporary file(s)",
    )
    assert host.ran == [
        "rm-files /etc/apache2/.apache2.conf.clusterctl-new "
        "/etc/apache2/tls/.web.key.clusterctl-new"
    ]


def test_refused_and_unchanged_hosts_run_nothing(host: FakeHost) -> None:
    assert _apply("refused-bind-nginx", host).status == "failed"
    assert _apply("no-change-haproxy", host).status == "unchanged"
    assert host.ran == []
