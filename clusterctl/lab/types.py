"""What a lab is, as callers see it: its hosts, its addresses, its keys, their health."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clusterctl.errors import LabError as LabError


@dataclass
class LabHost:
    name: str
    role: str  # "backend" | "frontend"
    kind: str  # "app" for backends; "haproxy" | "nginx" | "apache" for frontends
    address: str
    url: str
    netns: str
    ssh_port: int = 22


@dataclass
class LabInfo:
    name: str
    state_dir: Path
    subnet: str
    bridge: str
    gateway: str
    inventory_path: Path
    ssh_key_path: Path
    known_hosts_path: Path
    hosts: list[LabHost] = field(default_factory=list)
    already_running: bool = False
    # VRRP groups (lab up --vip): name, address, interface, members, router_id (lab/vrrp.py).
    vrrp: list[dict[str, Any]] = field(default_factory=list)

    @property
    def frontends(self) -> list[LabHost]:
        return [h for h in self.hosts if h.role == "frontend"]

    @property
    def backends(self) -> list[LabHost]:
        return [h for h in self.hosts if h.role == "backend"]

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise LabError(f"lab {self.name!r} has no host {name!r}")

    def ssh_argv(self, name: str, *command: str, options: Sequence[str] = ()) -> list[str]:
        """The OpenSSH command line that reaches a lab host as root, host key checked strictly."""
        host = self.host(name)
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts_path}",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=5",
            *options,
            "-i",
            str(self.ssh_key_path),
            "-p",
            str(host.ssh_port),
            f"root@{host.address}",
            *command,
        ]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("state_dir", "inventory_path", "ssh_key_path", "known_hosts_path"):
            data[key] = str(data[key])
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabInfo:
        return cls(
            name=data["name"],
            state_dir=Path(data["state_dir"]),
            subnet=data["subnet"],
            bridge=data["bridge"],
            gateway=data["gateway"],
            inventory_path=Path(data["inventory_path"]),
            ssh_key_path=Path(data["ssh_key_path"]),
            known_hosts_path=Path(data["known_hosts_path"]),
            hosts=[LabHost(**h) for h in data["hosts"]],
            already_running=bool(data.get("already_running", False)),
            vrrp=list(data.get("vrrp", [])),
        )


@dataclass
class HostStatus:
    name: str
    role: str
    kind: str
    address: str
    ssh: bool
    service: bool
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.ssh and self.service

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
