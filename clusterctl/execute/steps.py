"""What every step of apply shares: the PATH its scripts need, the step failure, fault hooks."""

from __future__ import annotations

import os

from clusterctl.errors import StepFailed as StepFailed
from clusterctl.execute.ssh import Result

PATH = "PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin; "


def checkpoint(step: str) -> None:
    """Fault injection for tests: die like a killed process right after `step`.

    CLUSTERCTL_FAULT_EXIT_AFTER=rename makes apply vanish between the rename and the reload,
    as a lost laptop or a killed CI job would, so tests can prove the next run recovers.
    """
    if os.environ.get("CLUSTERCTL_FAULT_EXIT_AFTER") == step:
        os._exit(137)


def check(result: Result, step: str) -> Result:
    if not result.ok:
        raise StepFailed(step, result.words())
    return result
