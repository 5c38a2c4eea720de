"""Facts over SSH: runs facts.py's commands on a host and hands the output to its parser."""

from __future__ import annotations

from clusterctl.errors import ClusterctlError
from clusterctl.execute.ssh import Remote
from clusterctl.facts import (
    HostFacts,
    Network,
    gather_command,
    network_command,
    parse_gather,
    parse_missing_dirs,
)
from clusterctl.model.schema import Frontend


def network_now(remote: Remote, fe: Frontend, dirs: list[str]) -> tuple[Network, list[str]]:
    """The preflight's facts as they are this moment, and which of `dirs` do not exist."""
    cmd = network_command(fe, dirs)
    result = remote.sh(cmd.script, *cmd.args, step="validate")
    if not result.ok:
        raise ClusterctlError(f"{fe.name}: cannot read the host's state: {result.words()}")
    return parse_gather(fe.name, result.out).network, parse_missing_dirs(result.out)


def gather(remote: Remote, fe: Frontend, secret: dict[str, bool]) -> HostFacts:
    """Facts of one front end for the files clusterctl renders there (path -> is secret)."""
    cmd = gather_command(fe, secret)
    result = remote.sh(cmd.script, *cmd.args)
    if not result.ok:
        raise ClusterctlError(f"{fe.name}: cannot read the host's state: {result.words()}")
    return parse_gather(fe.name, result.out)
