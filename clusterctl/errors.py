"""The one exception tree for everything a user can cause.

The CLI catches ClusterctlError, prints ``str(exc)`` (one line per problem) and exits 1;
anything else escaping is a bug in clusterctl, not in the user's input.
"""

from __future__ import annotations

from dataclasses import dataclass


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
