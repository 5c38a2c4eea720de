"""Check rendered configs with the real servers on this machine (`render --check`).

Each front end's files are rendered again with every path it owns moved under a temporary
root, so haproxy -c, nginx -t and apache2 -t read exactly what would be installed without
touching this machine's own /etc.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from clusterctl.drivers import driver_for
from clusterctl.errors import ClusterctlError
from clusterctl.model.schema import Frontend, Inventory
from clusterctl.render import HostFiles, render_frontend


@dataclass(frozen=True)
class CheckResult:
    host: str
    kind: str
    ok: bool
    output: str


def write_tree(files: HostFiles, root: Path) -> None:
    """Write files as <root>/<absolute path>, private ones created private from the start."""
    for path, f in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        fd = _open_new(target, f.mode)
        with open(fd, "wb") as out:
            out.write(f.content)


def _open_new(target: Path, mode: int) -> int:
    return os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)


def find_binary(name: str) -> str | None:
    """A server binary on PATH, or in the sbin folders a non-root PATH often lacks."""
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin")


def check_frontend(inv: Inventory, fe: Frontend) -> CheckResult:
    driver = driver_for(fe.kind)
    argv0 = driver.validate_argv("x")[0]
    exe = find_binary(argv0)
    if exe is None:
        raise ClusterctlError(
            f"{fe.name}: cannot check a {fe.kind} config: {argv0} is not installed "
            f"(apt-get install -y {driver.package})"
        )
    # A short root: HAProxy checks that its admin socket path fits a unix socket (107 bytes).
    with tempfile.TemporaryDirectory(prefix="cc-") as tmp:
        root = str(Path(tmp).resolve())
        files = render_frontend(inv, fe, root=root)
        write_tree(files, Path(root))
        for d in driver.runtime_dirs(fe):
            (Path(root) / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
        config = root + driver.paths(fe).config
        argv = driver.validate_argv(config, root)
        proc = subprocess.run(
            [exe, *argv[1:]], capture_output=True, text=True, timeout=60, check=False
        )
        output = (proc.stdout + proc.stderr).replace(root, "").strip()
        return CheckResult(fe.name, fe.kind, proc.returncode == 0, output)


def check_all(inv: Inventory) -> list[CheckResult]:
    from clusterctl.model.vrrp import units

    return [check_frontend(inv, fe) for fe in (*inv.frontends, *units(inv))]
