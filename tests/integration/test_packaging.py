"""`pip install .` (not only editable) gives a clusterctl whose templates ship in the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_ships_templates_and_renders_from_them(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("clusterctl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for kind in ("haproxy/haproxy.cfg.j2", "nginx/nginx.conf.j2", "apache/apache2.conf.j2"):
        assert f"clusterctl/templates/{kind}" in names
    assert any(n.endswith("entry_points.txt") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # Run from an unrelated folder with only the unpacked wheel importable: the installed
    # layout, not the source tree, must provide the templates.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import clusterctl.render as r; from clusterctl.model import load;"
        "print(r.templates_dir());"
        "inv = load(sys.argv[2]); print(len(r.render(inv)))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code, str(site), str(REPO / "inventories" / "full.yaml")],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ""},
    ).stdout.split()
    assert out[0] == str(site / "clusterctl" / "templates")
    assert out[1] == "3"
