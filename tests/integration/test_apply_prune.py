"""Issue #9: files apply installed and no longer renders are removed; old keys do not linger.

One lab (`tpr`, one front end of each kind). TLS on, applied; the key rotated, applied: no
backup of the old key stays on any host. TLS off: plan shows the keys and certificates as
deletions, verify fails on them, apply removes them, the front ends serve, verify passes.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.labfixtures import (
    CONFIG,
    TLS_FILES,
    Lab,
    acceptance_inventory,
    cli,
    http_get,
    needs_root,
    own_lab,
    page_path,
    results_table,
    wait_serving,
)

pytestmark = [pytest.mark.lab, needs_root]

FAIL_ONCE = (
    "[ -e /tmp/clusterctl-fail-once ] && rm /tmp/clusterctl-fail-once && "
    "echo 'reload refused (test)' >&2 && exit 1; exec /srv/lab/bin/lab-service haproxy reload"
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with own_lab("tpr", tmp_path_factory.mktemp("tpr")) as the_lab:
        yield the_lab


def apply_ok(lab: Lab) -> None:
    run = cli("apply", "-i", str(lab.inventory), "--yes")
    assert run.rc == 0, run
    assert set(results_table(run).values()) == {"changed"}, run


def new_pair(folder: Path, name: str) -> None:
    """A fresh self-signed certificate and key for example.com."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-subj", "/CN=example.com", "-days", "2",
         "-keyout", str(folder / f"{name}.key"), "-out", str(folder / f"{name}.crt")],
        check=True, capture_output=True,
    )  # fmt: skip


def state_files(lab: Lab, host: str) -> list[str]:
    """Every file under the host's clusterctl state folder (backups among them)."""
    out = lab.ssh(host, f"find /var/lib/clusterctl/frontends/{host} -type f | sort").out
    return out.split()


def test_a_rotated_key_leaves_no_copy_of_the_old_one(lab: Lab) -> None:
    data = acceptance_inventory(lab.info)
    lab.write(data)
    apply_ok(lab)
    old_keys = {fe.name: key_line(lab.ssh(fe.name, f"cat {key_path(fe.kind)}").out)
                for fe in lab.frontends}  # fmt: skip
    new_pair(lab.workdir, "rotated")
    data["services"][1]["tls"] = {**data["services"][1]["tls"], "certificate": "rotated.crt",
                                  "key": "rotated.key"}  # fmt: skip
    lab.write(data)
    apply_ok(lab)
    for fe in lab.frontends:
        assert key_line(lab.ssh(fe.name, f"cat {key_path(fe.kind)}").out) != old_keys[fe.name]
        left = state_files(lab, fe.name)
        assert left == [f"/var/lib/clusterctl/frontends/{fe.name}/manifest"], left
        found = lab.ssh(fe.name, f"grep -rlF -e {old_keys[fe.name]} /var/lib/clusterctl /etc "
                                 "2>/dev/null || true").out  # fmt: skip
        assert found.strip() == "", f"{fe.name}: the old private key is still in {found}"


def key_path(kind: str) -> str:
    return next(p for p, (_, secret) in TLS_FILES[kind].items() if secret)


def key_line(pem: str) -> str:
    """A line of a PEM private key's body: present in any copy of that key."""
    lines = pem.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.endswith("PRIVATE KEY-----"))
    return lines[start + 1]


def test_tls_turned_off_removes_the_keys_and_certificates(lab: Lab) -> None:
    data = acceptance_inventory(lab.info)
    lab.write(data)
    cli("apply", "-i", str(lab.inventory), "--yes")
    without = copy.deepcopy(data)
    without["services"] = [s for s in data["services"] if s["name"] != "secure"]
    lab.write(without)

    plan = cli("plan", "-i", str(lab.inventory), "--output", "json", "--detailed-exitcode")
    assert plan.rc == 2, plan
    hosts = {h["host"]: h for h in json.loads(plan.out)["hosts"]}
    for fe in lab.frontends:
        deleted = sorted(f["path"] for f in hosts[fe.name]["files"] if f["action"] == "delete")
        # The service's own unavailable page goes with it.
        gone = [*TLS_FILES[fe.kind], page_path(fe.kind, "secure")]
        assert deleted == sorted(gone), hosts[fe.name]
    text = cli("plan", "-i", str(lab.inventory))
    for fe in lab.frontends:
        for path in TLS_FILES[fe.kind]:
            assert f"  delete {path} (no longer rendered)" in text.out, text
            assert "+++ /dev/null" in text.out

    stale = cli("verify", "-i", str(lab.inventory), "--", "-k", "no_file_left_behind")
    assert stale.rc != 0, stale
    for fe in lab.frontends:
        assert f"{fe.name}: installed by clusterctl and no longer rendered: " in stale.out, stale

    run = cli("apply", "-i", str(lab.inventory), "--yes")
    assert run.rc == 0, run
    assert "removed, reloaded" in run.out
    for fe in lab.frontends:
        paths = " ".join(TLS_FILES[fe.kind])
        assert lab.ssh(fe.name, f"ls {paths} 2>/dev/null || true").out.strip() == ""
        assert lab.ssh(fe.name, "ss -Htln 'sport = :443'").out.strip() == ""  # reloaded
        assert http_get(fe.address, "/").status == 200
        wait_serving(fe.address)
        manifest = lab.ssh(fe.name, f"cat /var/lib/clusterctl/frontends/{fe.name}/manifest").out
        kept = sorted(f["path"] for f in hosts[fe.name]["files"] if f["action"] != "delete")
        assert manifest.split() == kept and CONFIG[fe.kind] in kept
    assert cli("plan", "-i", str(lab.inventory), "--detailed-exitcode").rc == 0
    clean = cli("verify", "-i", str(lab.inventory), "--", "-k", "no_file_left_behind")
    assert clean.rc == 0, clean


def test_a_failed_reload_puts_the_removed_files_back(lab: Lab) -> None:
    """A removal is a change like any other: when the reload fails, the files come back."""
    data = acceptance_inventory(lab.info)
    lab.write(data)
    cli("apply", "-i", str(lab.inventory), "--yes")
    without: dict[str, Any] = copy.deepcopy(data)
    without["services"] = [s for s in data["services"] if s["name"] != "secure"]
    for fe in without["frontends"]:
        if fe["name"] == "lb1":  # this reload fails once (the next one, the rollback's, works)
            fe["reload"] = ["/bin/sh", "-c", FAIL_ONCE]
    lab.write(without)
    lab.ssh("lb1", "touch /tmp/clusterctl-fail-once")
    before = lab.snapshot("lb1")
    run = cli("apply", "-i", str(lab.inventory), "--yes", "--limit", "lb1")
    assert run.rc == 1, run
    assert results_table(run) == {"lb1": "rolled back"}, run
    assert "reload refused (test)" in run.err
    after = lab.snapshot("lb1")
    assert {p: s["sha256"] for p, s in after.items()} == {p: s["sha256"] for p, s in before.items()}
    assert sorted(after) == sorted([CONFIG["haproxy"], *TLS_FILES["haproxy"]])
    wait_serving(lab.address("lb1"))
