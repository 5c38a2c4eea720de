"""molecule verify (rollout): every `clusterctl verify` check with each backend on 2.0.0
(CLUSTERCTL_VERIFY_RELEASE in molecule.yml), and the load that ran during the rollout saw
traffic through every front end and not one failed request.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from clusterctl import lab as labmod
from clusterctl.verify.checks import *  # noqa: F403


def test_load_during_rollout_had_no_failed_request() -> None:
    report_path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "load.json"
    report = json.loads(report_path.read_text())
    frontends = {h.name for h in labmod.info(os.environ["CLUSTERCTL_VERIFY_LAB"]).frontends}
    assert set(report["frontends"]) == frontends, report
    assert report["stopped_by"] == "stop file", "the load ended before the rollout did"
    for name, fe in report["frontends"].items():
        assert fe["requests"] > 0, f"{name}: no request went through during the rollout"
        assert fe["failed"] == 0, f"{name}: {fe['summary']}"
    assert report["failed"] == 0
