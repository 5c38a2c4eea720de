"""Run one function on many hosts at once and keep every host's outcome.

Like fabric's GroupResult: a partial failure never hides the other hosts' results, and the
first exception does not win. Only ClusterctlError is an outcome; anything else is a bug in
clusterctl and propagates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from clusterctl.errors import ClusterctlError

K = TypeVar("K")
V = TypeVar("V")

MAX_FORKS = 64


@dataclass(frozen=True)
class Outcome(Generic[V]):
    host: str
    value: V | None = None
    error: ClusterctlError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class GroupResult(Generic[V]):
    outcomes: tuple[Outcome[V], ...]

    @property
    def failed(self) -> list[Outcome[V]]:
        return [o for o in self.outcomes if not o.ok]

    def values(self) -> list[V]:
        """Every host's value, in order; raises one error naming every host that failed."""
        bad = self.failed
        if len(bad) == 1 and bad[0].error is not None:
            raise bad[0].error
        if bad:
            raise ClusterctlError("; ".join(str(o.error) for o in bad))
        return [o.value for o in self.outcomes]  # type: ignore[misc]


def run_group(
    items: Iterable[K],
    name: Callable[[K], str],
    fn: Callable[[K], V],
    forks: int | None = None,
) -> GroupResult[V]:
    """fn(item) for every item with at most `forks` at once (default: all, up to MAX_FORKS)."""
    todo = list(items)

    def one(item: K) -> Outcome[V]:
        try:
            return Outcome(name(item), value=fn(item))
        except ClusterctlError as exc:
            return Outcome(name(item), error=exc)

    if not todo:
        return GroupResult(())
    workers = max(1, min(forks or len(todo), len(todo), MAX_FORKS))
    if workers == 1:
        return GroupResult(tuple(one(item) for item in todo))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return GroupResult(tuple(pool.map(one, todo)))
