"""The pure plan: rendered files against gathered facts, secrets redacted everywhere."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from clusterctl.facts import HostFacts, LiveFile, parse_gather
from clusterctl.model import load
from clusterctl.plan import Plan, plan_host, plan_json
from clusterctl.render import render_frontend

REPO = Path(__file__).resolve().parents[2]
INV = load(REPO / "inventories" / "full.yaml")
KEY_TEXT = (REPO / "inventories" / "files" / "example.com.key").read_bytes()


def live(content: bytes, mode: int = 0o644, secret: bool = False) -> LiveFile:
    return LiveFile(
        "",
        True,
        mode,
        "root",
        "root",
        hashlib.sha256(content).hexdigest(),
        None if secret else content,
    )


def facts_matching(fe_name: str) -> HostFacts:
    fe = next(f for f in INV.frontends if f.name == fe_name)
    files = {
        p: LiveFile(p, True, f.mode, f.owner, f.group, f.sha256, None if f.secret else f.content)
        for p, f in render_frontend(INV, fe).items()
    }
    return HostFacts(fe_name, version=fe.version, files=files)


def test_host_matching_the_render_is_unchanged() -> None:
    for fe in INV.frontends:
        hp = plan_host(INV, fe, facts_matching(fe.name))
        assert hp.status == "unchanged" and not hp.needs_work


def test_fresh_host_creates_every_file_and_diffs_show_content() -> None:
    fe = INV.frontends[1]  # nginx
    hp = plan_host(INV, fe, HostFacts(fe.name))
    assert {c.action for c in hp.files} == {"create"}
    conf = next(c for c in hp.files if c.path == "/etc/nginx/nginx.conf")
    assert "+    upstream app {" in conf.diff


def test_changed_config_gives_a_unified_diff() -> None:
    fe = INV.frontends[0]
    facts = facts_matching(fe.name)
    cfg = "/etc/haproxy/haproxy.cfg"
    old = facts.files[cfg].content or b""
    edited = old.replace(b"balance leastconn", b"balance roundrobin", 1)
    facts.files[cfg] = LiveFile(
        cfg, True, 0o644, "root", "root", hashlib.sha256(edited).hexdigest(), edited
    )
    hp = plan_host(INV, fe, facts)
    assert [c.path for c in hp.changes] == [cfg]
    assert "-    balance roundrobin" in hp.changes[0].diff
    assert "+    balance leastconn" in hp.changes[0].diff


def test_secret_never_appears_in_diff_or_json() -> None:
    fe = INV.frontends[1]
    hp = plan_host(INV, fe, HostFacts(fe.name))
    plan = Plan((hp,))
    dumped = json.dumps(plan_json(plan))
    key_body = KEY_TEXT.decode().splitlines()[1]
    assert key_body not in dumped
    assert key_body not in "\n".join(line for c in hp.files for line in c.diff)
    key = next(c for c in hp.files if c.new.secret)
    assert key.diff[-1] == "+(secret, sha256:" + hashlib.sha256(KEY_TEXT).hexdigest() + ")"


def test_mode_drift_is_a_change() -> None:
    fe = INV.frontends[1]
    facts = facts_matching(fe.name)
    key = "/etc/nginx/tls/web.key"
    facts.files[key] = LiveFile(key, True, 0o644, "root", "root", facts.files[key].sha256)
    hp = plan_host(INV, fe, facts)
    assert [(c.path, c.action) for c in hp.changes] == [(key, "mode")]


def test_pending_reload_and_stale_temps_need_work() -> None:
    fe = INV.frontends[0]
    f = facts_matching(fe.name)
    hp = plan_host(INV, fe, HostFacts(fe.name, fe.version, "run-1", f.files))
    assert hp.status == "reload pending" and hp.needs_work
    hp = plan_host(
        INV,
        fe,
        HostFacts(
            fe.name, fe.version, None, f.files, ("/etc/haproxy/.haproxy.cfg.clusterctl-new",)
        ),
    )
    assert hp.status == "clean up"


def test_summary_counts_hosts() -> None:
    a = plan_host(INV, INV.frontends[0], facts_matching("lb1"))
    b = plan_host(INV, INV.frontends[1], HostFacts("lb2"))
    assert Plan((a, b)).summary() == "1 host to change, 1 unchanged"


def test_render_uses_the_hosts_version_when_inventory_names_none() -> None:
    inv = load(REPO / "inventories" / "minimal.yaml")
    fe = inv.frontends[0]
    hp = plan_host(inv, fe, HostFacts(fe.name, version="2.8.3"))
    assert hp.version == "2.8.3"


def test_parse_gather_output() -> None:
    data = b"global\n"
    text = "\n".join(
        [
            "VERSION HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/",
            "PENDING 20261121-abc",
            "TEMP /etc/haproxy/.haproxy.cfg.clusterctl-new",
            "FILE 644 root root " + hashlib.sha256(data).hexdigest() + " /etc/haproxy/haproxy.cfg",
            "DATA " + base64.b64encode(data).decode(),
            "MISSING /etc/haproxy/certs/web.pem",
        ]
    )
    facts = parse_gather("lb1", text)
    assert facts.version == "2.6.12"
    assert facts.pending == "20261121-abc"
    assert facts.temps == ("/etc/haproxy/.haproxy.cfg.clusterctl-new",)
    assert facts.files["/etc/haproxy/haproxy.cfg"].content == data
    assert facts.files["/etc/haproxy/haproxy.cfg"].mode == 0o644
    assert not facts.files["/etc/haproxy/certs/web.pem"].exists
    assert parse_gather("x", "VERSION nginx version: nginx/1.22.1").version == "1.22.1"
    assert parse_gather("x", "VERSION Server version: Apache/2.4.62 (Debian)").version == "2.4.62"
