"""`clusterctl verify` (clusterctl.verify.run_verify) against a real lab, `tver`.

The lab gets the configs of its own inventory plus a TLS service (so every front end has a
private key to check), pushed with `clusterctl apply`. Then: verify passes; a config changed
behind clusterctl's back, a private key made readable, an admin port opened to the network or
a wrong release each fail it, naming the host and the file; unknown or changed host keys are
refused; a host behind a jump host is reached through it.
"""

from __future__ import annotations

import copy
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from clusterctl import lab as labmod
from clusterctl.errors import ClusterctlError
from clusterctl.verify import run_verify, verify_checks

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces)"),
]

LAB = "tver"
REPO = Path(__file__).resolve().parents[2]
EXAMPLE_FILES = REPO / "inventories" / "files"
KEY = {
    "haproxy": "/etc/haproxy/certs/secure.pem",
    "nginx": "/etc/nginx/tls/secure.key",
    "apache": "/etc/apache2/tls/secure.key",
}
CONFIG = {
    "haproxy": "/etc/haproxy/haproxy.cfg",
    "nginx": "/etc/nginx/nginx.conf",
    "apache": "/etc/apache2/apache2.conf",
}


@dataclass
class VerifyLab:
    info: labmod.LabInfo
    workdir: Path
    inventory: Path
    data: dict[str, Any]

    def ssh(self, host: str, script: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a shell script on a lab host with the real ssh client, strict host keys."""
        argv = self.info.ssh_argv(host, "sh -s -- " + shlex.join(args))
        return subprocess.run(
            argv, input=script, capture_output=True, text=True, timeout=60, check=True
        )

    def apply(self) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "clusterctl", "apply", "-i", str(self.inventory), "--yes"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def variant(self, name: str, change: dict[str, Any]) -> Path:
        """A copy of the inventory with some top-level keys replaced."""
        data = copy.deepcopy(self.data)
        data.update(change)
        path = self.workdir / f"{name}.yaml"
        with path.open("w") as fh:
            YAML().dump(data, fh)
        return path


def _inventory(info: labmod.LabInfo, workdir: Path) -> dict[str, Any]:
    data = copy.deepcopy(labmod.lab_inventory(info))
    for ext in ("crt", "key"):
        shutil.copy2(EXAMPLE_FILES / f"example.com.{ext}", workdir / f"example.com.{ext}")
    data["services"].append(
        {
            "name": "secure",
            "listen": [{"port": 443, "tls": True}],
            "tls": {"certificate": "example.com.crt", "key": "example.com.key", "redirect": False},
            "default_pool": "app",
        }
    )
    return data


@pytest.fixture(scope="module")
def vlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VerifyLab]:
    workdir = tmp_path_factory.mktemp("verify")
    labmod.down(LAB)  # leftovers of an aborted earlier run
    try:
        info = labmod.up(LAB)
        data = _inventory(info, workdir)
        lab = VerifyLab(info, workdir, workdir / "inventory.yaml", data)
        with lab.inventory.open("w") as fh:
            YAML().dump(data, fh)
        lab.apply()
        yield lab
    finally:
        labmod.down(LAB)


def verify(
    capfd: pytest.CaptureFixture[str],
    inventory: Path,
    limit: list[str] | None = None,
    release: str | None = None,
) -> tuple[int, str]:
    capfd.readouterr()
    rc = run_verify(inventory, limit, [], release=release)
    captured = capfd.readouterr()
    return rc, captured.out + captured.err


def test_verify_passes_after_apply(vlab: VerifyLab, capfd: pytest.CaptureFixture[str]) -> None:
    report = verify_checks(vlab.inventory, None, [])
    out = "\n".join(report.summary())
    assert report.rc == 0 and not report.failed, out
    # A summary line per host, and every rendered file checked, private keys included.
    for host in ("lb1", "lb2", "lb3", "be1", "be2", "be3"):
        assert any(line.startswith(f"{host} ") and " ok " in line for line in out.splitlines())
    assert out.splitlines()[-1].startswith("verify: 6 hosts checked, 0 failed ("), out
    passed = {c.check for c in report.checks if c.outcome == "passed"}
    for fe in vlab.info.frontends:
        assert f"test_installed_file[{fe.name}:{CONFIG[fe.kind]}]" in passed, out
        assert f"test_installed_file[{fe.name}:{KEY[fe.kind]}]" in passed, out
        assert f"test_admin_port_closed_to_other_hosts[{fe.name}]" in passed, out
    assert "test_haproxy_admin_socket_private[lb1]" in passed, out
    assert "test_apache_balancer_manager_local_only[lb3]" in passed, out


def test_changed_config_fails_naming_host_and_file(
    vlab: VerifyLab, capfd: pytest.CaptureFixture[str]
) -> None:
    vlab.ssh("lb2", 'echo "# changed by hand" >> "$1"', CONFIG["nginx"])
    try:
        rc, out = verify(capfd, vlab.inventory)
        assert rc == 1, out
        assert f"lb2: {CONFIG['nginx']}: content differs from the rendered file" in out, out
        assert "-# changed by hand" in out  # the diff, live -> rendered
        failed = [line for line in out.splitlines() if line.startswith("FAILED ")]
        assert any(
            f.startswith("FAILED lb2 test_installed_file[lb2:/etc/nginx/nginx.conf]: lb2: ")
            for f in failed
        ), out
        assert "::" not in out and "checks.py" not in out  # a summary, not pytest's report
        summary = next(line for line in out.splitlines() if line.startswith("lb2 "))
        assert "FAILED" in summary and CONFIG["nginx"] in summary, summary
        # --limit leaves lb2 out: the other hosts still pass.
        rc, out = verify(capfd, vlab.inventory, ["lb3", "be1"])
        assert rc == 0, out
        assert "lb2" not in out
    finally:
        vlab.apply()
    rc, out = verify(capfd, vlab.inventory, ["lb2"])
    assert rc == 0, out


def test_readable_or_changed_private_key_fails_without_showing_it(
    vlab: VerifyLab, capfd: pytest.CaptureFixture[str]
) -> None:
    key_text = (EXAMPLE_FILES / "example.com.key").read_text()
    key_lines = [ln for ln in key_text.splitlines() if ln and not ln.startswith("-----")]
    key = KEY["apache"]
    vlab.ssh("lb3", 'chmod 644 "$1"', key)
    try:
        rc, out = verify(capfd, vlab.inventory, ["lb3"])
        assert rc == 1, out
        assert f"lb3: {key}: mode 0644, expected 0600" in out, out
        vlab.ssh("lb3", 'echo >> "$1"', key)  # now its content differs too
        rc, out = verify(capfd, vlab.inventory, ["lb3"])
        assert rc == 1, out
        assert f"lb3: {key}: mode 0644, expected 0600; content differs" in out, out
        assert "secret: content not shown" in out
        assert "PRIVATE KEY" not in out
        assert not any(line in out for line in key_lines), "the private key was printed"
    finally:
        vlab.apply()
    rc, out = verify(capfd, vlab.inventory, ["lb3"])
    assert rc == 0, out


def test_admin_port_open_to_other_hosts_fails(
    vlab: VerifyLab, capfd: pytest.CaptureFixture[str]
) -> None:
    """Something listening on lb3's lab address on the admin port is found from be1."""
    address = vlab.info.host("lb3").address
    # A stand-in for a balancer-manager bound to every address: a bare TCP listener on lb3's
    # lab address, gone by itself after 120 s at the latest.
    started = vlab.ssh(
        "lb3",
        f"""timeout 120 python3 - >/dev/null 2>&1 <<'EOF' &
import socket, time
s = socket.socket()
s.bind(("{address}", 8081))
s.listen()
time.sleep(120)
EOF
echo $!
""",
    )
    pid = started.stdout.strip()
    assert pid.isdigit(), started
    try:
        vlab.ssh(
            "lb3",
            'for i in $(seq 50); do ss -Htln | grep -qF "$1" && exit 0; sleep 0.1; done; exit 1',
            f"{address}:8081",
        )
        rc, out = verify(capfd, vlab.inventory, ["lb3"])
        assert rc == 1, out
        assert f"lb3: admin port {address}:8081 accepts connections from be1" in out, out
    finally:
        vlab.ssh("lb3", 'kill "$1" 2>/dev/null || true', pid)


def test_release_is_checked_on_every_backend(
    vlab: VerifyLab, capfd: pytest.CaptureFixture[str]
) -> None:
    backends = ["be1", "be2", "be3"]
    rc, out = verify(capfd, vlab.inventory, backends, release="1.0.0")
    assert rc == 0, out
    assert "release 1.0.0" in out
    rc, out = verify(capfd, vlab.inventory, backends, release="7.7.7")
    assert rc == 1, out
    for be in backends:
        assert f"{be}: serves release 1.0.0, expected 7.7.7" in out, out


def test_unknown_or_changed_host_keys_are_refused(
    vlab: VerifyLab, capfd: pytest.CaptureFixture[str]
) -> None:
    known = vlab.info.known_hosts_path.read_text().splitlines()
    lb1, lb2 = vlab.info.host("lb1").address, vlab.info.host("lb2").address
    lb2_key = next(line for line in known if line.startswith(lb2 + " ")).split(" ", 1)[1]
    empty = vlab.workdir / "known_hosts.empty"
    empty.write_text("")
    wrong = vlab.workdir / "known_hosts.wrong"
    wrong.write_text(f"{lb1} {lb2_key}\n")  # lb1's address with lb2's key
    defaults = copy.deepcopy(vlab.data["defaults"])
    for name, path in (("unknown", empty), ("changed", wrong)):
        defaults["ssh"]["known_hosts"] = str(path)
        before = path.read_text()
        rc, out = verify(capfd, vlab.variant(name, {"defaults": defaults}), ["lb1"])
        assert rc == 1, out
        assert "lb1: ssh to root@" in out and "Host key verification failed" in out, out
        assert path.read_text() == before, "verify wrote to the known_hosts file"


def test_host_behind_a_jump_host(vlab: VerifyLab, capfd: pytest.CaptureFixture[str]) -> None:
    pools = copy.deepcopy(vlab.data["pools"])
    for server in pools[0]["servers"]:
        if server["name"] == "be1":
            server["ssh"] = {"jump": vlab.info.host("lb1").address}
    rc, out = verify(capfd, vlab.variant("jump", {"pools": pools}), ["be1"])
    assert rc == 0, out


def test_unknown_limit_is_refused(vlab: VerifyLab) -> None:
    with pytest.raises(ClusterctlError, match="unknown host"):
        run_verify(vlab.inventory, ["lb9"], [])
