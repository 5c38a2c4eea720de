"""Hooks through which long waits say what they wait for: the cluster lock under --lock-wait,
a reload's new workers. The command line sets them when stderr is a terminal; a CI log has
--output json's events instead. A module of its own so that setting them imports nothing."""

from __future__ import annotations

from collections.abc import Callable

EVERY = 2.0  # seconds between two lines about the same wait

# Called with one line: who holds the lock, how long it has been waited on.
lock_wait: Callable[[str], None] | None = None
# Called with the host and one line: what the reload waits for, for how long so far.
reload_wait: Callable[[str, str], None] | None = None
