"""`clusterctl lab`: a real multi-host cluster in network namespaces, tested for real."""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest
from ruamel.yaml import YAML

from clusterctl import lab as labmod
from clusterctl.errors import ClusterctlError
from clusterctl.lab import core

REPO = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces)")
SshRunner = Callable[..., subprocess.CompletedProcess[str]]
pytestmark = pytest.mark.lab


def get(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def leftovers(name: str, state_dir: Path) -> list[str]:
    """Everything of lab `name` still present on the machine."""
    naming = core.Naming(name)
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {ln.split()[0]}" for ln in netns.splitlines() if naming.netns_prefix in ln]
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout)
    for link in links:
        ifname = link["ifname"]
        if ifname.startswith(naming.veth_prefix) or ifname == naming.bridge:
            found.append(f"link {ifname}")
    marker = f"CLUSTERCTL_LAB_ID={naming.tag}".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(state_dir).encode() in cmdline or marker in environ:
            found.append(f"process {pid}: {cmdline.decode(errors='replace')}")
    if state_dir.exists():
        found.append(f"dir {state_dir}")
    return found


# -- naming (no root needed) -------------------------------------------------


def test_naming_is_deterministic_and_inside_the_benchmark_range() -> None:
    lab = core.Naming("lab")
    assert str(lab.subnet) == "198.18.0.0/24"
    assert lab.gateway == "198.18.0.1"
    pool = ipaddress.ip_network("198.18.0.0/15")
    seen = {lab.subnet}
    for name in ["tlab", "tcrasha", "tcrashb", "dev", "x", "a-very-long-lab-name-0123456789"]:
        n = core.Naming(name)
        assert n.subnet.subnet_of(pool)  # type: ignore[arg-type]
        assert n.subnet != lab.subnet
        assert n.subnet == core.Naming(name).subnet
        seen.add(n.subnet)
        for host in ["lb89", "be99"]:
            assert len(n.veth(host)) <= 15
        assert len(n.bridge) <= 15
    assert len(seen) == 7


def test_bad_arguments_raise_lab_errors() -> None:
    with pytest.raises(ClusterctlError, match="invalid lab name"):
        labmod.up("Bad Name")
    with pytest.raises(labmod.LabError, match="unknown front-end kind"):
        labmod.up("tbad", frontends=["traefik"])


def test_not_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(labmod.LabError, match=r"needs root.*sudo"):
        labmod.up("tnotroot")


def test_missing_binary_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real_which = shutil.which
    monkeypatch.setattr(
        shutil,
        "which",
        lambda cmd, path=None: None if cmd == "haproxy" else real_which(cmd, path=path),
    )
    with pytest.raises(labmod.LabError, match="missing haproxy: apt-get install -y haproxy"):
        labmod.up("tmissing")
    assert not (core.LABS_ROOT / "tmissing").exists()


# -- the running lab -----------------------------------------------------------


@needs_root
def test_every_host_answers_ssh_with_strict_host_keys(
    lab_cluster: labmod.LabInfo, lab_ssh_argv: Callable[..., list[str]]
) -> None:
    assert [h.name for h in lab_cluster.hosts] == ["lb1", "lb2", "lb3", "be1", "be2", "be3"]
    for host in lab_cluster.hosts:
        assert ipaddress.ip_address(host.address) in ipaddress.ip_network("198.18.0.0/15")
        out = subprocess.run(
            lab_ssh_argv(lab_cluster, host.address, "hostname"),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert out.stdout.strip() == host.name


@needs_root
def test_paramiko_with_reject_policy(lab_cluster: labmod.LabInfo) -> None:
    for host in lab_cluster.hosts:
        client = paramiko.SSHClient()
        client.load_host_keys(str(lab_cluster.known_hosts_path))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            host.address,
            username="root",
            key_filename=str(lab_cluster.ssh_key_path),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
        try:
            _, stdout, _ = client.exec_command("hostname")
            assert stdout.read().decode().strip() == host.name
        finally:
            client.close()
    # An unknown host key is refused.
    stranger = paramiko.SSHClient()
    stranger.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException):
        stranger.connect(
            lab_cluster.hosts[0].address,
            username="root",
            key_filename=str(lab_cluster.ssh_key_path),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
    stranger.close()


@needs_root
def test_backends_answer_http_with_their_name_and_release(lab_cluster: labmod.LabInfo) -> None:
    for host in lab_cluster.backends:
        status, headers, body = get(f"{host.url}some/path?q=1")
        assert status == 200
        assert headers["X-Backend"] == host.name
        assert headers["X-Release"] == "1.0.0"
        assert headers["Set-Cookie"].startswith("SESSIONID=")
        data = json.loads(body)
        assert data["host"] == host.name
        assert data["release"] == "1.0.0"
        assert data["path"] == "/some/path?q=1"
        assert get(f"{host.url}health")[2] == b"ok 1.0.0\n"

    be1 = lab_cluster.backends[0]
    conn = http.client.HTTPConnection(be1.address, 8080, timeout=5)
    try:  # keep-alive: several requests on one connection, POST bodies read
        conn.request("POST", "/upload", body=b"x" * 1000, headers={"Cookie": "SESSIONID=abc"})
        resp = conn.getresponse()
        assert json.loads(resp.read())["body_length"] == 1000
        assert resp.getheader("Set-Cookie") is None
        conn.request("GET", "/slow?seconds=0.2")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("X-Backend") == "be1"
        resp.read()
    finally:
        conn.close()


@needs_root
def test_frontend_services_run_and_reload(lab_cluster: labmod.LabInfo, lab_ssh: SshRunner) -> None:
    statuses = labmod.status(lab_cluster.name)
    assert [s.name for s in statuses] == [h.name for h in lab_cluster.hosts]
    assert all(s.ssh and s.service for s in statuses), statuses
    for host in lab_cluster.frontends:
        out = lab_ssh(host.name, "/srv/lab/bin/lab-service", host.kind, "reload")
        assert "reloaded" in out.stdout
        assert lab_ssh(host.name, "/srv/lab/bin/lab-service", host.kind, "status").returncode == 0
    sock = lab_ssh("lb1", "test", "-S", "/run/haproxy/admin.sock", check=False)
    assert sock.returncode == 0
    manager = lab_ssh("lb3", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                      "http://127.0.0.1:8404/balancer-manager")  # fmt: skip
    assert manager.stdout == "200"


@needs_root
def test_deploy_switches_release_and_broken_fails_health(
    lab_cluster: labmod.LabInfo, lab_ssh: SshRunner
) -> None:
    be3 = lab_cluster.host("be3")
    try:
        lab_ssh("be3", "/srv/app/bin/deploy", "2.0.0")
        status, headers, body = get(f"{be3.url}health")
        assert (status, headers["X-Release"], body) == (200, "2.0.0", b"ok 2.0.0\n")
        assert lab_ssh("be3", "readlink", "/srv/app/current").stdout.strip() == "releases/2.0.0"

        lab_ssh("be3", "/srv/app/bin/deploy", "2.0.1", "--broken")
        status, headers, _ = get(f"{be3.url}health")
        assert (status, headers["X-Release"]) == (503, "2.0.1")
        assert get(f"{be3.url}")[0] == 200  # only /health reports the breakage

        bad = lab_ssh("be3", "/srv/app/bin/deploy", "../evil", check=False)
        assert bad.returncode != 0
        assert "invalid version" in bad.stderr
    finally:
        lab_ssh("be3", "/srv/app/bin/deploy", "1.0.0")
    assert get(f"{be3.url}health")[:1] == (200,)
    # other backends untouched
    assert get(f"{lab_cluster.host('be2').url}health")[2] == b"ok 1.0.0\n"


@needs_root
def test_hosts_have_private_filesystems(lab_ssh: SshRunner) -> None:
    lab_ssh("lb1", "echo lb1 > /srv/probe && echo lb1 > /etc/haproxy/probe")
    assert lab_ssh("lb1", "cat", "/srv/probe").stdout == "lb1\n"
    assert lab_ssh("lb2", "test", "-e", "/srv/probe", check=False).returncode == 1
    assert lab_ssh("lb2", "test", "-e", "/etc/haproxy/probe", check=False).returncode == 1
    assert not Path("/srv/probe").exists()
    assert not Path("/etc/haproxy/probe").exists()
    # clusterctl's own state (cluster lock, backups, markers) is per host, as on real machines.
    lab_ssh("lb1", "mkdir -p /var/lib/clusterctl && echo lb1 > /var/lib/clusterctl/probe")
    assert lab_ssh("lb2", "test", "-e", "/var/lib/clusterctl/probe", check=False).returncode == 1
    assert not Path("/var/lib/clusterctl/probe").exists()
    # ...and a fresh-install /etc
    assert lab_ssh("lb2", "test", "-f", "/etc/nginx/mime.types", check=False).returncode == 0


@needs_root
def test_inventory_describes_the_lab(lab_cluster: labmod.LabInfo) -> None:
    data = YAML(typ="safe").load(lab_cluster.inventory_path.read_text())
    assert data["cluster"] == "tlab"
    assert data["defaults"]["ssh"]["identity"] == str(lab_cluster.ssh_key_path)
    assert data["defaults"]["ssh"]["known_hosts"] == str(lab_cluster.known_hosts_path)
    assert [(f["name"], f["kind"]) for f in data["frontends"]] == [
        ("lb1", "haproxy"),
        ("lb2", "nginx"),
        ("lb3", "apache"),
    ]
    subnet = core.Naming("tlab").subnet
    servers = data["pools"][0]["servers"]
    assert [s["address"] for s in servers] == [
        str(subnet.network_address + i) for i in (101, 102, 103)
    ]
    assert data["frontends"][0]["reload"] == ["/srv/lab/bin/lab-service", "haproxy", "reload"]
    assert json.loads(lab_cluster.to_json())["hosts"][0]["name"] == "lb1"


@needs_root
def test_up_twice_reports_already_running(lab_cluster: labmod.LabInfo) -> None:
    before = json.loads((lab_cluster.state_dir / "state.json").read_text())
    again = labmod.up("tlab")
    assert again.already_running
    assert again.hosts == lab_cluster.hosts
    after = json.loads((lab_cluster.state_dir / "state.json").read_text())
    assert after == before


@needs_root
def test_down_removes_everything(lab_cluster: labmod.LabInfo) -> None:
    # Last test using the module lab: take it down here and look for leftovers.
    assert leftovers("tlab", lab_cluster.state_dir)  # it is there before
    labmod.down("tlab")
    assert leftovers("tlab", lab_cluster.state_dir) == []
    with pytest.raises(labmod.LabError, match="no lab named"):
        labmod.status("tlab")
    labmod.down("tlab")  # idempotent


# -- crashes half-way through up ------------------------------------------------


@needs_root
def test_failed_up_cleans_up_after_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "tcrasha"
    labmod.down(name)

    def fault(stage: str) -> None:
        if stage == "started:be2":
            raise RuntimeError("injected fault")

    monkeypatch.setattr(core, "_fault_hook", fault)
    with pytest.raises(labmod.LabError, match="injected fault"):
        labmod.up(name, backends=2, frontends=["haproxy", "nginx"])
    assert leftovers(name, core.LABS_ROOT / name) == []
    labmod.down(name)


@needs_root
def test_down_after_hard_crash_in_up() -> None:
    name = "tcrashb"
    labmod.down(name)
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from clusterctl.lab import core
        def fault(stage):
            if stage == "started:be1":
                os._exit(17)  # no cleanup at all, like kill -9
        core._fault_hook = fault
        core.up({name!r}, backends=2, frontends=["apache"])
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 17, proc.stderr
    state_dir = core.LABS_ROOT / name
    assert leftovers(name, state_dir)  # the crash left things behind
    labmod.down(name)
    assert leftovers(name, state_dir) == []


@needs_root
def test_up_from_a_folder_the_hosts_replace(tmp_path: Path) -> None:
    # Run from inside /tmp, which every host has its own copy of: servers that return to
    # their start folder (HAProxy after chroot) must still start.
    clusterctl = str(Path(sys.executable).with_name("clusterctl"))
    try:
        res = subprocess.run(
            [clusterctl, "lab", "up", "tcwd", "--backends", "0", "--frontends", "haproxy"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        assert "lab 'tcwd' up" in res.stdout
    finally:
        labmod.down("tcwd")
