"""Fixtures for the network-namespace lab (clusterctl.lab)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

try:
    import clusterctl  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from clusterctl import lab as labmod

SshRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def lab_cluster() -> Iterator[labmod.LabInfo]:
    """A default-shaped lab (3 backends; haproxy, nginx, apache) named `tlab`."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces)")
    name = "tlab"
    labmod.down(name)  # leftovers of an aborted earlier run
    try:
        info = labmod.up(name)
        yield info
    finally:
        labmod.down(name)


def ssh_argv(info: labmod.LabInfo, address: str, *command: str) -> list[str]:
    name = next(h.name for h in info.hosts if h.address == address)
    return info.ssh_argv(name, *command)


@pytest.fixture
def lab_ssh_argv() -> Callable[..., list[str]]:
    """`ssh_argv(info, address, *command)`: argv for the real ssh client, strict host keys."""
    return ssh_argv


@pytest.fixture
def lab_ssh(lab_cluster: labmod.LabInfo) -> SshRunner:
    """Run a command on a lab host (by name) with the real ssh client."""

    def run(host: str, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        address = lab_cluster.host(host).address
        return subprocess.run(
            ssh_argv(lab_cluster, address, *command),
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    return run
