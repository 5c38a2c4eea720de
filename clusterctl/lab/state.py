"""Where labs live and state.json: everything ``up`` created, recorded as it is created."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clusterctl.lab.system import write_file

# Outside /var/lib/clusterctl, which every lab host gets a private copy of (its cluster lock,
# backups and rollout state, as on separate machines).
LABS_ROOT = Path(os.environ.get("CLUSTERCTL_LAB_ROOT", "/var/lib/clusterctl-labs"))
STATE_VERSION = 1


@contextlib.contextmanager
def lab_lock(name: str) -> Iterator[None]:
    """Serialise up/down (all labs; they take a second): flock on the labs directory."""
    LABS_ROOT.mkdir(parents=True, exist_ok=True)
    fd = os.open(LABS_ROOT, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def ref_path(name: str) -> Path:
    return LABS_ROOT / f"{name}.ref"


def locate(name: str) -> Path:
    """The state dir of lab ``name`` (default location unless a .ref points elsewhere)."""
    ref = ref_path(name)
    if ref.exists():
        return Path(ref.read_text().strip())
    return LABS_ROOT / name


class State:
    """state.json: everything ``up`` created, written as it is created."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self._lock = threading.Lock()

    @classmethod
    def load(cls, state_dir: Path) -> State | None:
        path = state_dir / "state.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            return None
        return cls(path, data)

    def save(self) -> None:
        with self._lock:
            write_file(self.path, json.dumps(self.data, indent=2) + "\n", 0o600)

    def record(self, key: str, item: Any, value: Any = None) -> None:
        with self._lock:
            bucket = self.data.setdefault(key, {})
            bucket[str(item)] = value
        self.save()

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self.data[key] = value
        self.save()
