"""The cyclic garbage collector, paused while a large model or its configs are built.

Loading a 20,000-server inventory makes about a million small objects and rendering it a few
million strings, none in a reference cycle. With the collector on, each of its full passes
walks every object alive (the whole model) and finds nothing; as their number grows with the
allocations, the cost grew faster than the inventory. Paused, nothing is lost: reference
counting frees all of it as before, and any cycle is collected once the collector runs again.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection inside; on again after, if it was on before (nested: the outermost
    turns it back on)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
