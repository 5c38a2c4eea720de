"""Time and memory of `clusterctl.model.load` on the worst inventories a user can write.

Each shape is about 1 MiB (the largest file the loader reads), or a small file built to expand
(billion laughs) or to nest: every one must load or be refused in under 2 s and 200 MB. Each
runs in its own process, so its peak resident memory is its own. Prints one table.

Usage: .venv/bin/python bench/loader_hostile.py [SHAPE ...]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LIMIT = 1024 * 1024 - 256
FE = "frontends: [{name: lb1, kind: haproxy, address: 192.0.2.10}]\n"
POOL = "pools: [{name: app, servers: [{name: web1, address: 192.0.2.21, port: 8080}]}]\n"
SVC = "services: [{name: web, listen: [{port: 80}], default_pool: app}]\n"


def fill(head: str, unit: Callable[[int], str], tail: str = "") -> str:
    parts, total, i = [head], len(head) + len(tail), 0
    while total + len(unit(i)) <= LIMIT:
        parts.append(unit(i))
        total += len(unit(i))
        i += 1
    return "".join([*parts, tail])


def laughs(levels: int, width: int) -> str:
    rows = [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(['a0: &a0 ["lol"]', *rows, f"cluster: *a{levels}"]) + "\n"


SHAPES: dict[str, Callable[[], str]] = {
    "pools": lambda: fill(
        "cluster: big\n" + FE + "pools:\n",
        lambda i: f"  - {{name: p{i}, servers: [{{name: s{i}, address: 192.0.2.1, port: 80}}]}}\n",
        "services: [{name: web, listen: [{port: 80}], default_pool: p0}]\n",
    ),
    "servers": lambda: fill(
        "cluster: big\n" + FE + SVC + "pools:\n  - name: app\n    servers:\n",
        lambda i: f"      - {{name: s{i}, address: 192.0.2.1, port: 80}}\n",
    ),
    "listeners": lambda: fill(
        "cluster: big\n" + FE + POOL + "services:\n  - name: web\n    default_pool: app\n"
        "    listen:\n",
        lambda i: f"      - {{port: {i % 65535 + 1}}}\n",
    ),
    "services": lambda: fill(
        "cluster: big\n" + FE + POOL + "services:\n",
        lambda i: f"  - {{name: s{i}, listen: [{{port: {i % 65535 + 1}}}], default_pool: app}}\n",
    ),
    "routes": lambda: fill(
        "cluster: big\n" + FE + POOL + "services:\n  - name: web\n    default_pool: app\n"
        "    listen: [{port: 80}]\n    routes:\n",
        lambda i: f"      - {{path: /p{i}, pool: app}}\n",
    ),
    "frontends": lambda: fill(
        "cluster: big\n" + POOL + SVC + "frontends:\n",
        lambda i: f"  - {{name: f{i}, kind: haproxy, address: 192.0.2.10}}\n",
    ),
    "duplicate-names": lambda: fill(
        "cluster: big\n" + FE + SVC + "pools:\n  - name: app\n    servers:\n",
        lambda i: f"      - {{name: s, address: 192.0.2.{i % 200 + 1}, port: 80}}\n",
    ),
    "unknown-keys": lambda: fill("cluster: big\n" + FE + POOL + SVC, lambda i: f"k{i}: 1\n"),
    "one-long-string": lambda: "cluster: " + "x" * (LIMIT - 20) + "\n",
    "flat-list": lambda: "cluster: [" + "1," * (LIMIT // 2 - 10) + "1]\n",
    "deep-flow": lambda: "cluster: " + "[" * (LIMIT // 2 - 10) + "]" * (LIMIT // 2 - 10) + "\n",
    "deep-block": lambda: "".join(" " * i + "a:\n" for i in range(1_400)),
    "billion-laughs-8k": lambda: laughs(9, 10) + "#" * (8_700 - len(laughs(9, 10))) + "\n",
    "long-integer": lambda: (
        "cluster: big\n" + FE + SVC + "pools:\n  - name: app\n    servers:\n"
        "      - {name: s, address: 192.0.2.1, port: " + "9" * (LIMIT - 200) + "}\n"
    ),
}


def measure(shape: str) -> dict[str, object]:
    """Run in a child process: load the shape from a file, report outcome, time, peak RSS."""
    from clusterctl.errors import InventoryError
    from clusterctl.model import load

    text = SHAPES[shape]()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inv.yaml"
        path.write_text(text)
        start = time.perf_counter()
        try:
            load(path)
            outcome, printed = "loaded", 0
        except InventoryError as exc:
            outcome, printed = f"refused ({len(exc.problems)} lines)", len(str(exc))
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return {"bytes": len(text), "outcome": outcome, "printed": printed, "s": seconds, "mb": peak}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2])))
        return
    shapes = sys.argv[1:] or list(SHAPES)
    print(f"{'shape':20} {'bytes':>9} {'seconds':>8} {'peak MB':>8} {'printed':>8}  outcome")
    for shape in shapes:
        out = subprocess.run(
            [sys.executable, __file__, "--child", shape],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        r = json.loads(out.stdout)
        print(
            f"{shape:20} {r['bytes']:9} {r['s']:8.2f} {r['mb']:8} {r['printed']:8}  {r['outcome']}"
        )


if __name__ == "__main__":
    main()
