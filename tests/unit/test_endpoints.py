"""How a host is reached: the inventory first, then ~/.ssh/config, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterctl.execute.endpoints import frontend_endpoints, server_endpoints
from clusterctl.execute.ssh import SSHError, quote
from clusterctl.model import parse

INV = """\
cluster: t
defaults:
  ssh: {known_hosts: kh, sudo: true}
frontends:
  - {name: lb1, kind: haproxy, address: lb-alias}
  - {name: lb2, kind: nginx, address: 192.0.2.11, ssh: {user: ops, port: 2201, jump: bastion.example.com, jump_user: jumper}}
pools:
  - name: app
    servers: [{name: web1, address: 192.0.2.21, port: 8080, ssh: {user: app}}]
services:
  - {name: web, listen: [{port: 80}], default_pool: app}
"""

SSH_CONFIG = """\
Host lb-alias
    HostName 192.0.2.10
    User deploy
    Port 2222
    IdentityFile ~/.ssh/lb_key
    ProxyJump gate@192.0.2.1:2200

Host 192.0.2.11
    User ignored-because-the-inventory-says-ops
"""


def test_ssh_config_fills_in_what_the_inventory_leaves_open(tmp_path: Path) -> None:
    cfg = tmp_path / "ssh_config"
    cfg.write_text(SSH_CONFIG)
    inv = parse(INV, str(tmp_path / "inv.yaml"))
    eps = frontend_endpoints(inv, ssh_config=cfg)
    lb1 = eps["lb1"]
    assert (lb1.address, lb1.user, lb1.port) == ("192.0.2.10", "deploy", 2222)
    assert lb1.identity == str(Path("~/.ssh/lb_key").expanduser())
    assert lb1.known_hosts == str(tmp_path / "kh")  # relative to the inventory's folder
    assert lb1.sudo is True
    assert lb1.jump is not None
    assert (lb1.jump.address, lb1.jump.user, lb1.jump.port) == ("192.0.2.1", "gate", 2200)


def test_inventory_wins_over_ssh_config(tmp_path: Path) -> None:
    cfg = tmp_path / "ssh_config"
    cfg.write_text(SSH_CONFIG)
    inv = parse(INV, str(tmp_path / "inv.yaml"))
    lb2 = frontend_endpoints(inv, ssh_config=cfg)["lb2"]
    assert (lb2.user, lb2.port) == ("ops", 2201)
    assert lb2.jump is not None
    assert (lb2.jump.address, lb2.jump.user, lb2.jump.port) == ("bastion.example.com", "jumper", 22)
    web1 = server_endpoints(inv, ssh_config=cfg)["web1"]
    assert web1.user == "app"


def test_no_ssh_config_means_defaults(tmp_path: Path) -> None:
    inv = parse(INV, str(tmp_path / "inv.yaml"))
    lb1 = frontend_endpoints(inv, ssh_config=tmp_path / "absent")["lb1"]
    assert (lb1.address, lb1.user, lb1.port, lb1.jump) == ("lb-alias", "root", 22, None)


def test_every_argument_is_quoted_for_the_remote_shell() -> None:
    hostile = ["sh", "-c", "echo $HOME; rm -rf /", "a'b", "$(id)", "x y"]
    assert quote(hostile) == ("sh -c 'echo $HOME; rm -rf /' 'a'\"'\"'b' '$(id)' 'x y'")


def _with_jump(jump: str) -> str:
    return INV.replace("jump: bastion.example.com", f"jump: '{jump}'")


def test_ipv6_jump_hosts_are_bracketed_and_never_split_at_a_colon(tmp_path: Path) -> None:
    for spec, want in [
        ("[2001:db8::1]", ("2001:db8::1", "jumper", 22)),
        ("[2001:db8::1]:2200", ("2001:db8::1", "jumper", 2200)),
        ("gate@[2001:db8::]:2201", ("2001:db8::", "gate", 2201)),
        ("gate@bastion.example.com:2202", ("bastion.example.com", "gate", 2202)),
    ]:
        inv = parse(_with_jump(spec), str(tmp_path / "inv.yaml"))
        jump = frontend_endpoints(inv, ssh_config=tmp_path / "absent")["lb2"].jump
        assert jump is not None
        assert (jump.address, jump.user, jump.port) == want, spec


def test_a_bad_proxyjump_in_ssh_config_is_a_one_line_error(tmp_path: Path) -> None:
    # ~/.ssh/config is not validated with the inventory: its ProxyJump goes through the same
    # parser, and a bare IPv6 address there is an SSHError (one line), not a ValueError.
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host lb-alias\n    ProxyJump 2001:db8::\n")
    inv = parse(INV, str(tmp_path / "inv.yaml"))
    with pytest.raises(SSHError, match=r"^lb1: jump host: '2001:db8::': write an IPv6 jump host"):
        frontend_endpoints(inv, ssh_config=cfg)
    cfg.write_text("Host lb-alias\n    Port twenty-two\n")
    with pytest.raises(SSHError, match="Port 'twenty-two' is not a port number"):
        frontend_endpoints(inv, ssh_config=cfg)


def test_tests_never_read_the_developers_own_ssh_config() -> None:
    import os

    from clusterctl.execute.endpoints import SSH_CONFIG_ENV, ssh_config_path

    path = ssh_config_path()
    assert os.environ[SSH_CONFIG_ENV] == str(path)
    assert path != Path("~/.ssh/config").expanduser()
    assert path.read_text() == ""


def test_the_ssh_config_can_be_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clusterctl.execute.endpoints import SSH_CONFIG_ENV

    cfg = tmp_path / "other_config"
    cfg.write_text(SSH_CONFIG)
    monkeypatch.setenv(SSH_CONFIG_ENV, str(cfg))
    ep = frontend_endpoints(parse(INV, "inventory.yaml"))["lb1"]
    assert (ep.address, ep.user, ep.port) == ("192.0.2.10", "deploy", 2222)
