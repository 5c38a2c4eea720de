"""The plan's deletions (prune), its refusals (bind preflight) and the lost-connection message."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import paramiko
import pytest

from clusterctl.execute.ssh import Endpoint, Remote, SSHError
from clusterctl.facts import HostFacts, LiveFile, Network, Socket
from clusterctl.model import load
from clusterctl.plan import Plan, plan_host, plan_json, prunable
from clusterctl.preflight import config_binds
from clusterctl.render import render_frontend
from clusterctl.ui import console, print_plan

REPO = Path(__file__).resolve().parents[2]
INV = load(REPO / "inventories" / "full.yaml")
NGINX = next(fe for fe in INV.frontends if fe.kind == "nginx")
OLD_KEY = "/etc/nginx/tls/retired.key"


def live_as_rendered(managed: tuple[str, ...] | None, extra: dict[str, LiveFile]) -> HostFacts:
    files = {
        p: LiveFile(p, True, f.mode, f.owner, f.group, f.sha256, None if f.secret else f.content)
        for p, f in render_frontend(INV, NGINX).items()
    }
    return HostFacts(NGINX.name, version=NGINX.version, files={**files, **extra}, managed=managed)


def squatted() -> Network:
    """A host where another process holds every port the nginx config binds."""
    config = render_frontend(INV, NGINX)["/etc/nginx/nginx.conf"].content.decode()
    ports = sorted({b.port for b in config_binds("nginx", config)})
    sockets = tuple(Socket("0.0.0.0", p, (("squatter", 9),)) for p in ports)
    return Network(addresses=(("lo", "127.0.0.1/8"),), sockets=sockets)


def old_file(path: str, exists: bool = True) -> LiveFile:
    return LiveFile(path, exists, 0o600, "root", "root", "ab" * 32 if exists else "")


def test_a_managed_file_no_longer_rendered_is_a_deletion() -> None:
    rendered = tuple(render_frontend(INV, NGINX))
    facts = live_as_rendered((*rendered, OLD_KEY), {OLD_KEY: old_file(OLD_KEY)})
    hp = plan_host(INV, NGINX, facts)
    assert [d.path for d in hp.deletions] == [OLD_KEY]
    assert hp.status == "change" and hp.needs_work and not hp.changes
    assert hp.deletions[0].diff == (
        f"--- {OLD_KEY} (live)",
        "+++ /dev/null",
        f"-(sha256:{'ab' * 32}; installed by clusterctl, no longer rendered)",
    )
    data = plan_json(Plan((hp,)))
    entry = next(f for f in data["hosts"][0]["files"] if f["path"] == OLD_KEY)
    assert entry["action"] == "delete" and entry["mode"] == "0600"
    assert data["summary"] == "1 host to change, 0 unchanged"


def test_what_is_not_pruned() -> None:
    rendered = tuple(render_frontend(INV, NGINX))
    gone = "/etc/nginx/tls/gone.key"
    outside = "/etc/passwd"
    sneaky = "/etc/nginx/../shadow"
    facts = live_as_rendered(
        (*rendered, gone, outside, sneaky),
        {gone: old_file(gone, exists=False), outside: old_file(outside), sneaky: old_file(sneaky)},
    )
    assert plan_host(INV, NGINX, facts).deletions == ()  # already gone; not ours to touch
    # No manifest (a host an older clusterctl applied): nothing is known to be ours.
    assert plan_host(INV, NGINX, live_as_rendered(None, {})).deletions == ()
    assert prunable(NGINX, "/etc/nginx/nginx.conf")
    assert prunable(NGINX, "/etc/nginx/tls/x.key")
    for path in (outside, sneaky, "relative/x", "/etc/nginx", "/etc/nginxx/x", "/etc/nginx/a\nb"):
        assert not prunable(NGINX, path), path


def test_a_config_that_would_not_start_is_refused_and_counted() -> None:
    facts = dataclasses.replace(
        live_as_rendered(None, {}),
        files={},  # a fresh host: every file is a change, so the preflight runs
        network=squatted(),
    )
    hp = plan_host(INV, NGINX, facts)
    assert hp.refused and hp.status == "refused"
    assert all("is already in use by squatter (pid 9)" in r for r in hp.refused)
    plan = Plan((hp,))
    assert plan.failed == [hp] and plan.changed == []
    assert plan.summary() == "0 hosts to change, 0 unchanged, 1 refused"
    assert plan_json(plan)["hosts"][0]["refused"] == list(hp.refused)


def test_an_unchanged_host_is_never_refused() -> None:
    facts = dataclasses.replace(live_as_rendered(None, {}), network=squatted())
    hp = plan_host(INV, NGINX, facts)
    assert hp.status == "unchanged" and hp.refused == ()


def test_plan_text_shows_refusals_and_deletions(capsys: pytest.CaptureFixture[str]) -> None:
    rendered = tuple(render_frontend(INV, NGINX))
    facts = dataclasses.replace(
        live_as_rendered((*rendered, OLD_KEY), {OLD_KEY: old_file(OLD_KEY)}),
        network=squatted(),
    )
    print_plan(Plan((plan_host(INV, NGINX, facts),)), console())
    out = capsys.readouterr().out
    assert f"  delete {OLD_KEY} (no longer rendered)" in out
    assert "  refused, would not start: " in out
    assert json.dumps(plan_json(Plan((plan_host(INV, NGINX, facts),))))


class _DropsClient:
    """A paramiko client whose session died: every command fails as paramiko fails."""

    def exec_command(self, command: str, timeout: float | None = None) -> Any:
        raise paramiko.SSHException("SSH session not active")

    def close(self) -> None:
        pass


def test_a_lost_connection_names_the_host_and_the_step() -> None:
    remote = Remote(Endpoint("lb1", "192.0.2.11"), _DropsClient())  # type: ignore[arg-type]
    with pytest.raises(SSHError) as info:
        remote.sh("true", step="reload")
    assert str(info.value) == (
        "connection to lb1 (192.0.2.11) lost during reload: SSH session not active"
    )
    with pytest.raises(SSHError, match=r"lost during a remote command \(sh\)"):
        remote.sh("true")
