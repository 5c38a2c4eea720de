"""Resolve how to reach each host: the inventory first, then ~/.ssh/config, then defaults."""

from __future__ import annotations

import os
from pathlib import Path

from clusterctl.execute.ssh import Endpoint, SSHError
from clusterctl.execute.sshlib import paramiko, ssh_config
from clusterctl.model.checks import CheckFailed, split_jump
from clusterctl.model.localfiles import resolve_local
from clusterctl.model.queries import base_dir
from clusterctl.model.schema import SSH, Inventory


def _merge(*layers: SSH) -> dict[str, object]:
    out: dict[str, object] = {}
    for layer in layers:
        for key in ("user", "port", "identity", "known_hosts", "sudo", "jump", "jump_user"):
            value = getattr(layer, key)
            if value is not None:
                out[key] = value
    return out


SSH_CONFIG_ENV = "CLUSTERCTL_SSH_CONFIG"


def ssh_config_path(config_path: Path | None = None) -> Path:
    """The OpenSSH client config read for every host: the argument, else $CLUSTERCTL_SSH_CONFIG
    (the tests point it at an empty file so a developer's own config never leaks in, as
    fabric's tests guard against), else ~/.ssh/config."""
    if config_path is not None:
        return config_path
    return Path(os.environ.get(SSH_CONFIG_ENV) or "~/.ssh/config").expanduser()


def _ssh_config(address: str, config_path: Path | None) -> dict[str, object]:
    path = ssh_config_path(config_path)
    if not path.is_file():
        return {}
    try:
        found = ssh_config(str(path)).lookup(address)
    except (OSError, paramiko.SSHException):
        return {}
    out: dict[str, object] = {}
    if "hostname" in found and found["hostname"] != address:
        out["hostname"] = found["hostname"]
    if "user" in found:
        out["user"] = found["user"]
    if "port" in found:
        if not str(found["port"]).isdigit() or not 0 < int(found["port"]) < 65536:
            raise SSHError(f"{path}: Host {address}: Port {found['port']!r} is not a port number")
        out["port"] = int(found["port"])
    if found.get("identityfile"):
        out["identity"] = found["identityfile"][0]
    if "userknownhostsfile" in found:
        out["known_hosts"] = found["userknownhostsfile"].split()[0]
    if "proxyjump" in found and found["proxyjump"].lower() != "none":
        out["jump"] = found["proxyjump"].split(",")[0]
    return out


def endpoint(
    inv: Inventory,
    name: str,
    address: str,
    own: SSH,
    ssh_config: Path | None = None,
) -> Endpoint:
    """The endpoint of one host; local paths in the inventory are relative to its folder."""
    base = base_dir(inv)
    conf = _ssh_config(address, ssh_config)
    merged = {**conf, **_merge(inv.defaults.ssh, own)}

    def local(key: str) -> str | None:
        value = merged.get(key)
        return str(resolve_local(str(value), base)) if value else None

    jump = None
    if merged.get("jump"):
        # From the inventory (validated) or ~/.ssh/config's ProxyJump (not): one parser for both,
        # so an IPv6 host is never split at its last colon.
        try:
            user_part, jump_spec, port_part = split_jump(str(merged["jump"]))
        except CheckFailed as exc:
            raise SSHError(f"{name}: jump host: {exc}") from None
        jump_user = user_part or merged.get("jump_user") or merged.get("user", "root")
        jump_port = port_part or 22
        jump = Endpoint(
            name=f"{name} (jump {jump_spec})",
            address=jump_spec,
            user=str(jump_user),
            port=jump_port,
            identity=local("identity"),
            known_hosts=local("known_hosts"),
        )
    return Endpoint(
        name=name,
        address=str(conf.get("hostname", address)),
        user=str(merged.get("user", "root")),
        port=int(str(merged.get("port", 22))),
        identity=local("identity"),
        known_hosts=local("known_hosts"),
        sudo=bool(merged.get("sudo", False)),
        jump=jump,
    )


def frontend_endpoints(inv: Inventory, ssh_config: Path | None = None) -> dict[str, Endpoint]:
    return {fe.name: endpoint(inv, fe.name, fe.address, fe.ssh, ssh_config) for fe in inv.frontends}


def server_endpoints(inv: Inventory, ssh_config: Path | None = None) -> dict[str, Endpoint]:
    out: dict[str, Endpoint] = {}
    for pool in inv.pools:
        for srv in pool.servers:
            out.setdefault(srv.name, endpoint(inv, srv.name, srv.address, srv.ssh, ssh_config))
    return out
