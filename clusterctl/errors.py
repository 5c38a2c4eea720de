"""The one exception tree for everything a user can cause.

The CLI catches ClusterctlError, prints ``str(exc)`` (one line per problem) and exits 1;
anything else escaping is a bug in clusterctl, not in the user's input.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clusterctl.model.schema import Inventory
    from clusterctl.rollout import Report


class ClusterctlError(Exception):
    """Base of every user-facing error; the CLI prints str(exc) on one line and exits 1."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an inventory, at a position in a file (1-based line and column)."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class InventoryError(ClusterctlError):
    """The inventory is invalid; carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.col, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class RenderError(ClusterctlError):
    """A value reached a template that the template cannot hold (a validator gap: a bug)."""


class SSHError(ClusterctlError):
    """A host could not be reached, refused us, or presented an unknown or changed key."""


class HostUnreachable(ClusterctlError):
    """ssh could not run a command on a host (refused, unknown or changed host key, down)."""


class StepFailed(ClusterctlError):
    """One step of apply failed on a host; `step` names it (upload, validate, reload, ...)."""

    def __init__(self, step: str, words: str) -> None:
        self.step = step
        super().__init__(f"{step}: {words}")


class ControlRefused(ClusterctlError):
    """The server's runtime interface refused or could not be read."""


class LockHeld(ClusterctlError):
    """Someone else holds the cluster lock; the message names the holder and the ways out."""


class LockError(ClusterctlError):
    """The lock could not be written, renewed or released: loud, with the command that clears it."""


class RecordError(ClusterctlError):
    """A rollout record could not be read or saved on enough of the quorum's hosts."""


class FloorError(ClusterctlError):
    """Taking these nodes out would leave a pool with fewer serving nodes than the floor."""


class LabError(ClusterctlError):
    """A lab could not be built, found or removed."""


class FailoverError(ClusterctlError):
    """A VRRP failover or maintain could not move an address, or was refused to keep one up."""


class RolloutFailed(ClusterctlError):
    """A rollout stopped at a node and step; says what the node is left as and how to go on."""

    def __init__(
        self, node: str, step: str, reason: str, drained: bool, held: str = "drain"
    ) -> None:
        self.node, self.step, self.reason, self.drained = node, step, reason, drained
        self.held = held if drained else "ready"
        self.next_step = ""
        self.report: Report | None = None  # what the rollout did before it stopped
        if not drained:
            left = f"{node} keeps serving"
        elif held == "maint":
            left = f"{node} is still in maint"
        elif held == "unknown":
            left = f"{node} may still be out of service"
        else:
            left = f"{node} is still drained"
        self.summary = f"rollout stopped at {node}, step {step}: {reason}; {left}"
        super().__init__(self.summary)

    def continue_with(self, inv: Inventory, version: str) -> RolloutFailed:
        """Name the commands that continue from here, with the real arguments."""
        src = shlex.quote(inv.source) if inv.source else "INVENTORY.yaml"
        resume = f"clusterctl rollout -i {src} --version {shlex.quote(version)} --resume"
        if self.drained:
            self.next_step = (
                f"continue: {resume}; or put {self.node} back: "
                f"clusterctl restore -i {src} {self.node}"
            )
        else:
            self.next_step = f"continue: {resume}"
        self.args = (f"{self.summary}; {self.next_step}",)
        return self
