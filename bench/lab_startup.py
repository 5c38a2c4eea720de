"""Time `clusterctl lab` up and down (default shape: 3 backends, haproxy/nginx/apache).

Usage: sudo .venv/bin/python bench/lab_startup.py [--name labbench] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clusterctl import lab


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="labbench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", type=int, default=3)
    parser.add_argument("--frontends", default="haproxy,nginx,apache")
    args = parser.parse_args()
    kinds = [k for k in args.frontends.split(",") if k]

    lab.down(args.name)
    ups: list[float] = []
    downs: list[float] = []
    for run in range(1, args.runs + 1):
        t0 = time.perf_counter()
        info = lab.up(args.name, backends=args.backends, frontends=kinds)
        t1 = time.perf_counter()
        healthy = all(s.ok for s in lab.status(args.name))
        t2 = time.perf_counter()
        lab.down(args.name)
        t3 = time.perf_counter()
        ups.append(t1 - t0)
        downs.append(t3 - t2)
        print(
            f"run {run}: up {t1 - t0:.2f}s down {t3 - t2:.2f}s "
            f"({len(info.hosts)} hosts, healthy={healthy})"
        )
    print(f"up: median {statistics.median(ups):.2f}s max {max(ups):.2f}s")
    print(f"down: median {statistics.median(downs):.2f}s max {max(downs):.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
