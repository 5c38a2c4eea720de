"""How `clusterctl verify` reaches each host: testinfra over an ssh_config of its own.

The ssh_config is written from the same endpoints apply and rollout use (user, port, identity,
known_hosts, jump), with strict host-key checking: an unknown or changed host key is an error,
never a prompt or a warning. ssh runs with `-F` on that file alone, so neither ~/.ssh/config
nor /etc/ssh/ssh_config can loosen it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterctl.errors import ClusterctlError, HostUnreachable
from clusterctl.execute.endpoints import frontend_endpoints, server_endpoints
from clusterctl.execute.ssh import Endpoint

if TYPE_CHECKING:
    from clusterctl.verify.targets import Targets


# ------------------------------------------------------------------------------ ssh_config


def _value(text: str) -> str:
    if any(c in text for c in '"\n\r\0'):
        raise ClusterctlError(f"cannot put {text!r} in an ssh_config")
    return f'"{text}"' if any(c.isspace() for c in text) else text


def _block(alias: str, ep: Endpoint, control_dir: Path, jump_alias: str | None) -> str:
    known_hosts = str(Path(ep.known_hosts or "~/.ssh/known_hosts").expanduser())
    lines = [
        f"Host {alias}",
        f"  HostName {_value(ep.address)}",
        f"  User {_value(ep.user)}",
        f"  Port {ep.port}",
        "  StrictHostKeyChecking yes",
        f"  UserKnownHostsFile {_value(known_hosts)}",
        "  GlobalKnownHostsFile /dev/null",
        "  UpdateHostKeys no",
        "  CheckHostIP no",
        "  BatchMode yes",
        "  PasswordAuthentication no",
        "  KbdInteractiveAuthentication no",
        "  ForwardAgent no",
        "  ForwardX11 no",
        "  ClearAllForwardings yes",
        "  IdentitiesOnly yes",
        f"  ConnectTimeout {int(ep.connect_timeout)}",
        "  ServerAliveInterval 10",
        "  ServerAliveCountMax 3",
        "  ControlMaster auto",
        f"  ControlPath {_value(str(control_dir))}/%C",
        "  ControlPersist 30s",
        "  LogLevel ERROR",
    ]
    if ep.identity:
        lines.append(f"  IdentityFile {_value(str(Path(ep.identity).expanduser()))}")
    if jump_alias:
        lines.append(f"  ProxyJump {jump_alias}")
    return "\n".join(lines) + "\n"


def ssh_config_text(endpoints: dict[str, Endpoint], control_dir: Path) -> str:
    """One Host block per alias (and one per jump host), strict in every one."""
    blocks = ["# Written by clusterctl verify; used with ssh -F, nothing else is read.\n"]
    for alias, ep in endpoints.items():
        jump_alias = None
        if ep.jump is not None:
            jump_alias = f"{alias}.jump"
            blocks.append(_block(jump_alias, ep.jump, control_dir, None))
        blocks.append(_block(alias, ep, control_dir, jump_alias))
    return "\n".join(blocks)


def frontend_alias(name: str) -> str:
    return f"fe.{name}"


def backend_alias(name: str) -> str:
    return f"be.{name}"


def _guard(backend: Any, alias: str, ep: Endpoint) -> None:
    """Turn testinfra's RuntimeError on ssh's exit status 255 into one line naming the host."""
    run_ssh = backend.run_ssh

    def guarded(command: str) -> Any:
        try:
            return run_ssh(command)
        except RuntimeError as exc:
            out = exc.args[0] if exc.args else None
            said = str(getattr(out, "stderr", "") or exc).strip().replace("\r", "")
            said = " | ".join(line for line in said.splitlines() if line.strip())
            raise HostUnreachable(
                f"ssh to {ep.user}@{ep.address} port {ep.port} failed: {said or 'exit status 255'}"
            ) from None

    backend.run_ssh = guarded


@dataclass
class Connections:
    """testinfra hosts for every front end and backend of an inventory, over strict ssh."""

    targets: Targets
    workdir: Path
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    _hosts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, targets: Targets) -> Connections:
        inv = targets.inventory
        workdir = Path(tempfile.mkdtemp(prefix="clusterctl-verify-"))
        eps = {frontend_alias(n): ep for n, ep in frontend_endpoints(inv).items()}
        eps.update({backend_alias(n): ep for n, ep in server_endpoints(inv).items()})
        control = workdir / "cm"
        control.mkdir(mode=0o700)
        (workdir / "ssh_config").write_text(ssh_config_text(eps, control))
        return cls(targets, workdir, eps)

    @property
    def ssh_config(self) -> Path:
        return self.workdir / "ssh_config"

    def host(self, alias: str) -> Any:
        """The testinfra Host for an alias (fe.NAME or be.NAME)."""
        if alias not in self.endpoints:
            raise ClusterctlError(f"no host {alias!r} in the inventory")
        if alias not in self._hosts:
            import testinfra

            host = testinfra.get_host(
                f"ssh://{alias}",
                ssh_config=str(self.ssh_config),
                controlpersist=0,  # the ssh_config sets ControlMaster/ControlPath itself
                sudo=self.endpoints[alias].sudo,
            )
            _guard(host.backend, alias, self.endpoints[alias])
            self._hosts[alias] = host
        return self._hosts[alias]

    def frontend(self, name: str) -> Any:
        return self.host(frontend_alias(name))

    def backend(self, name: str) -> Any:
        return self.host(backend_alias(name))

    def close(self) -> None:
        """Stop the ssh control masters this run started, then remove the folder."""
        for alias in self._hosts:
            for target in (alias, f"{alias}.jump"):
                if target == alias or self.endpoints[alias].jump is not None:
                    with contextlib.suppress(OSError, subprocess.SubprocessError):
                        subprocess.run(
                            ["ssh", "-F", str(self.ssh_config), "-O", "exit", target],
                            capture_output=True,
                            timeout=10,
                            check=False,
                        )
        shutil.rmtree(self.workdir, ignore_errors=True)
