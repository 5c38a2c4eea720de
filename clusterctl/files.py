"""What render produces and plan, apply and the drivers pass around: files to install.

Its own module, below both render.py and drivers/: render asks the drivers for their files and
the drivers build File values, so neither has to import the other to name the type.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class File:
    """One file to install on a front end."""

    content: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    secret: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


HostFiles = dict[str, File]


class Raw(str):
    """Text built by clusterctl itself (not from the inventory) that may hold syntax characters."""

    __slots__ = ()
