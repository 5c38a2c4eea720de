"""molecule's scenarios run end to end: `molecule test -s default` (create a lab, apply, apply
again without change, testinfra verify, destroy) must exit 0, and so must `failover` (a
keepalived pair: apply, a planned failover, verify that keepalived runs, its config is
installed and the address is on exactly one member).

The rollout and broken-release scenarios take a minute and a half each; they run too when
CLUSTERCTL_MOLECULE_SCENARIOS names them (comma-separated, or `all`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
ALL = ("default", "rollout", "broken-release", "failover")


def _scenarios() -> list[str]:
    wanted = os.environ.get("CLUSTERCTL_MOLECULE_SCENARIOS", "").strip()
    if wanted == "all":
        return list(ALL)
    # default and failover (issue 13's pair life cycle) always; the others when asked.
    extra = [s.strip() for s in wanted.split(",") if s.strip() in ALL]
    return ["default", "failover", *[s for s in extra if s not in ("default", "failover")]]


def _path() -> str:
    """This interpreter's bin folder and the repository's venv first: molecule, ansible-config,
    pytest and clusterctl are there."""
    bins = dict.fromkeys([str(Path(sys.executable).parent), str(VENV_BIN)])
    return os.pathsep.join([*bins, os.environ.get("PATH", os.defpath)])


pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="molecule's scenarios build a lab: needs root"),
]


@pytest.mark.parametrize("scenario", _scenarios())
def test_molecule_scenario_passes(scenario: str, tmp_path: Path) -> None:
    path = _path()
    for tool in ("molecule", "ansible-playbook", "ansible-config", "pytest", "clusterctl"):
        if shutil.which(tool, path=path) is None:
            pytest.fail(f"{tool} is not on PATH ({path}): install the project's test tools")
    log = tmp_path / f"molecule-{scenario}.log"
    with log.open("w") as out:
        proc = subprocess.run(
            ["molecule", "test", "-s", scenario],
            cwd=REPO,
            env={
                **os.environ,
                "PATH": path,
                "NO_COLOR": "1",
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_FORCE_COLOR": "0",
                "PY_COLORS": "0",
            },
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
        )
    text = log.read_text(errors="replace")
    tail = text[-12000:]
    assert proc.returncode == 0, f"molecule test -s {scenario} exited {proc.returncode}:\n{tail}"
    assert "clusterctl verify: per host" in text or scenario == "broken-release", text[-4000:]
