"""Golden files: the exact bytes clusterctl renders for the example inventories.

tests/golden/<inventory>/<host>/<absolute path> holds each rendered file; secret files (TLS
keys) are stored only as their sha256, in `<path>.sha256`. tests/golden/<inventory>/MANIFEST
lists every file with its mode, owner, group and whether it is secret.

A change to a template shows up here as a diff to review. To accept it:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden.py
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clusterctl.model import load
from clusterctl.render import render

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
INVENTORIES = ("minimal", "full", "three-kinds")
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def expected_tree(name: str) -> dict[str, bytes]:
    """Relative golden path -> bytes, for what clusterctl renders from inventories/<name>.yaml."""
    inv = load(REPO / "inventories" / f"{name}.yaml")
    out: dict[str, bytes] = {}
    manifest = []
    for host, files in render(inv).items():
        for path, f in files.items():
            rel = f"{host}{path}"
            if f.secret:
                out[f"{rel}.sha256"] = f"{f.sha256}\n".encode()
            else:
                out[rel] = f.content
            manifest.append(
                f"{rel} mode={f.mode:04o} owner={f.owner} group={f.group}"
                f"{' secret' if f.secret else ''}\n"
            )
    out["MANIFEST"] = "".join(sorted(manifest)).encode()
    return out


def stored_tree(folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        return {}
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def write_tree(folder: Path, tree: dict[str, bytes]) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    for rel, data in tree.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


@pytest.mark.parametrize("name", INVENTORIES)
def test_render_matches_golden_files(name: str) -> None:
    want = expected_tree(name)
    folder = GOLDEN / name
    if UPDATE:
        write_tree(folder, want)
    have = stored_tree(folder)
    assert have, f"no golden files in {folder}; run UPDATE_GOLDEN=1 pytest {__file__}"
    assert sorted(have) == sorted(want), "rendered file set differs from the golden one"
    diffs: list[str] = []
    for rel in sorted(want):
        if have[rel] != want[rel]:
            diffs.extend(
                difflib.unified_diff(
                    have[rel].decode(errors="replace").splitlines(),
                    want[rel].decode(errors="replace").splitlines(),
                    f"golden/{name}/{rel}",
                    f"rendered/{name}/{rel}",
                    lineterm="",
                )
            )
    assert not diffs, "\n".join(diffs) + "\n\n(accept with UPDATE_GOLDEN=1)"


@pytest.mark.parametrize("name", INVENTORIES)
def test_secrets_are_never_stored_in_clear(name: str) -> None:
    tree = expected_tree(name)
    key = (REPO / "inventories" / "files" / "example.com.key").read_bytes()
    assert not any(key.strip() in data for data in tree.values())


@pytest.mark.parametrize("name", INVENTORIES)
def test_render_twice_is_byte_identical(name: str) -> None:
    assert expected_tree(name) == expected_tree(name)


def test_cli_render_is_byte_identical_across_processes(tmp_path: Path) -> None:
    """Two `clusterctl render` runs with different hash seeds write the same bytes."""
    trees = []
    for seed in ("1", "2"):
        out = tmp_path / f"out-{seed}"
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "from clusterctl.cli import main; main()",
                "render",
                "-i",
                str(REPO / "inventories" / "full.yaml"),
                "-o",
                str(out),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        trees.append(stored_tree(out))
    assert trees[0] == trees[1]
    assert len(trees[0]) >= 8
