"""The group runner: every host's outcome is kept, and one error names every failed host."""

from __future__ import annotations

import threading

import pytest

from clusterctl.errors import ClusterctlError
from clusterctl.execute.group import run_group


def test_every_outcome_is_kept_in_order() -> None:
    def fn(n: int) -> int:
        if n % 2:
            raise ClusterctlError(f"h{n}: unreachable")
        return n * 10

    result = run_group(range(5), lambda n: f"h{n}", fn)
    assert [o.host for o in result.outcomes] == ["h0", "h1", "h2", "h3", "h4"]
    assert [o.value for o in result.outcomes if o.ok] == [0, 20, 40]
    assert [o.host for o in result.failed] == ["h1", "h3"]
    with pytest.raises(ClusterctlError, match=r"^h1: unreachable; h3: unreachable$"):
        result.values()


def test_one_failure_is_raised_as_itself() -> None:
    class Mine(ClusterctlError):
        pass

    def fn(n: int) -> int:
        if n == 1:
            raise Mine("h1: refused")
        return n

    with pytest.raises(Mine):
        run_group([0, 1, 2], str, fn).values()


def test_hosts_run_at_once_up_to_forks() -> None:
    barrier = threading.Barrier(3, timeout=5)
    # Three at once or the barrier breaks: the hosts really run in parallel.
    assert run_group([1, 2, 3], str, lambda n: barrier.wait() >= 0).values() == [True] * 3
    seen: list[int] = []
    lock = threading.Lock()
    running = [0]

    def count(n: int) -> int:
        with lock:
            running[0] += 1
            seen.append(running[0])
        with lock:
            running[0] -= 1
        return n

    assert run_group(range(10), str, count, forks=1).values() == list(range(10))
    assert max(seen) == 1


def test_a_bug_is_not_an_outcome() -> None:
    with pytest.raises(ZeroDivisionError):
        run_group([0], str, lambda n: 1 // n)
