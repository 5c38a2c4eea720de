"""The pure core stays pure, and every error a user can see is one of errors.py's.

Model, render, plan, facts, preflight, drivers and batch planning run without SSH: importing
them must not import paramiko, so a plan test (or a future server-side use) never needs it and
the layering (pure below, execute/ above) cannot erode one import at a time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "clusterctl"

PURE = [
    "clusterctl.model",
    *sorted(
        f"clusterctl.model.{p.stem}" for p in (PKG / "model").glob("*.py") if p.stem != "__init__"
    ),
    "clusterctl.render",
    "clusterctl.files",
    "clusterctl.plan",
    "clusterctl.facts",
    "clusterctl.preflight",
    "clusterctl.remote_paths",
    "clusterctl.statuses",
    "clusterctl.errors",
    "clusterctl.drivers",
    *sorted(
        f"clusterctl.drivers.{p.stem}"
        for p in (PKG / "drivers").glob("*.py")
        if p.stem != "__init__"
    ),
    "clusterctl.orchestrate.batches",
]

# Who may talk SSH: the execution layer and what drives it (the CLI, the lab, verify, and the
# orchestration that holds connections: cluster, failover, preview). orchestrate/batches.py
# is pure; the subprocess test above keeps it so.
MAY_IMPORT_SSH = ("execute/", "orchestrate/", "cli/", "lab/", "verify/")


def test_importing_the_pure_core_does_not_import_paramiko() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {PURE!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'paramiko'"
        " or m.startswith('clusterctl.execute'))\n"
        "print(' '.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == []


def test_the_pure_list_covers_real_modules() -> None:
    # A module renamed away would make the import test pass vacuously.
    missing = [
        n
        for n in PURE
        if not (PKG.parent / (n.replace(".", "/") + ".py")).exists()
        and not (PKG.parent / n.replace(".", "/") / "__init__.py").exists()
    ]
    assert missing == []


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_only_the_execution_side_imports_the_ssh_module() -> None:
    found = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if rel.startswith(MAY_IMPORT_SSH):
            continue
        if {"clusterctl.execute.ssh", "paramiko"} & _imports(path):
            found.append(rel)
    assert found == []


# Exceptions that never reach a user as such, and why (each says so beside its class too).
INTERNAL = {
    "clusterctl.model.yamlread.YAMLRefused": "the loader turns it into an InventoryError",
    "clusterctl.model.checks.CheckFailed": "the loader turns it into an InventoryError",
    "clusterctl.lab.host_deploy.DeployError": "runs alone on lab hosts, stdlib only",
}


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class clusterctl's modules define, by where it is defined."""
    import importlib
    import pkgutil

    import clusterctl

    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(clusterctl.__path__, "clusterctl."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            is_exc = isinstance(obj, type) and issubclass(obj, BaseException)
            if is_exc and obj.__module__.startswith("clusterctl"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_every_user_facing_exception_is_defined_in_errors_py() -> None:
    from clusterctl.errors import ClusterctlError

    outside = sorted(
        name
        for name in _exception_classes()
        if not name.startswith("clusterctl.errors.") and name not in INTERNAL
    )
    assert outside == []
    assert set(INTERNAL) <= set(_exception_classes())  # a stale entry would hide nothing
    for name, cls in _exception_classes().items():
        if name.startswith("clusterctl.errors."):
            assert issubclass(cls, ClusterctlError), name
            assert cls.__doc__ and cls.__doc__.strip(), f"{name} says what it means"


def test_old_import_names_still_work() -> None:
    from clusterctl import errors
    from clusterctl.drivers.control import ControlRefused
    from clusterctl.execute.admin_views import AdminError
    from clusterctl.execute.apply import StepFailed
    from clusterctl.execute.lock import LockError, LockHeld
    from clusterctl.execute.records import RecordError
    from clusterctl.execute.ssh import SSHError
    from clusterctl.lab.types import LabError
    from clusterctl.orchestrate.batches import FloorError
    from clusterctl.rollout import RolloutFailed
    from clusterctl.verify.targets import HostUnreachable

    assert (ControlRefused, AdminError, StepFailed, LockError, LockHeld, RecordError) == (
        errors.ControlRefused,
        errors.ControlRefused,
        errors.StepFailed,
        errors.LockError,
        errors.LockHeld,
        errors.RecordError,
    )
    assert (SSHError, LabError, FloorError, RolloutFailed, HostUnreachable) == (
        errors.SSHError,
        errors.LabError,
        errors.FloorError,
        errors.RolloutFailed,
        errors.HostUnreachable,
    )


def test_facts_say_what_to_run_as_data() -> None:
    from clusterctl.facts import gather_command, network_command, parse_missing_dirs
    from clusterctl.model import parse

    inv = parse(
        "cluster: c\nfrontends: [{name: lb1, kind: haproxy, address: 192.0.2.1}]\n"
        "pools: [{name: p, servers: [{name: s1, address: 192.0.2.2, port: 80}]}]\n"
        "services: [{name: w, listen: [{port: 80}], default_pool: p}]\n",
        "inv.yaml",
    )
    fe = inv.frontends[0]
    cmd = gather_command(fe, {"/etc/b.pem": True, "/etc/a.cfg": False})
    assert cmd.args == (
        "/var/lib/clusterctl/frontends/lb1/reload-pending",
        "haproxy",
        "/run/haproxy.pid",
        "/var/lib/clusterctl/frontends/lb1/manifest",
        "P:/etc/a.cfg",
        "S:/etc/b.pem",  # a secret's content is never read back, only its checksum
    )
    assert "pending=$1; vcmd=$2; pidf=$3; manifest=$4" in cmd.script
    net = network_command(fe, ["/etc/haproxy", "/run/x"])
    assert net.args == ("/run/haproxy.pid", "/etc/haproxy", "/run/x")
    assert parse_missing_dirs("NONLOCAL 0 0\nNODIR /run/x\n") == ["/run/x"]
