"""What the quorum lock costs: take and give back the cluster lock on a lab of 3 front ends and
3 (or more) backends, over real SSH, in-process (as apply does) and with `lock show`.

Rows: all hosts up; one host down (no route to it: connections fail at once); two runs started
at the same moment (the time until the winner holds it, the loser's refusal). Medians of
--rounds. The lab is brought up as `NAME` and removed afterwards, whatever happens.

Usage: sudo .venv/bin/python bench/lock_quorum.py [--backends 3] [--rounds 10] [--name bench-lock]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clusterctl import lab as labmod  # noqa: E402
from clusterctl.execute.lock import LockHeld  # noqa: E402
from clusterctl.execute.runner import cluster_lock  # noqa: E402
from clusterctl.model import load  # noqa: E402

CLUSTERCTL = str(REPO / ".venv" / "bin" / "clusterctl")


def timed(fn: object, rounds: int) -> float:
    runs = []
    for _ in range(rounds):
        t0 = time.monotonic()
        fn()  # type: ignore[operator]
        runs.append(time.monotonic() - t0)
    return statistics.median(runs)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--name", default="bench-lock")
    args = ap.parse_args()
    labmod.down(args.name)
    try:
        info = labmod.up(args.name, backends=args.backends)
        inv = load(info.inventory_path)
        hosts = len(info.hosts)

        def hold() -> None:
            with cluster_lock(inv, "bench", notify=lambda _: None):
                pass

        def show() -> None:
            subprocess.run([CLUSTERCTL, "lock", "show", "-i", str(info.inventory_path)],
                           capture_output=True, check=True)  # fmt: skip

        up = timed(hold, args.rounds)
        shown = timed(show, args.rounds)
        gone = info.backends[0].address
        subprocess.run(["ip", "route", "add", "unreachable", f"{gone}/32"], check=True)
        try:
            one_down = timed(hold, args.rounds)
        finally:
            subprocess.run(["ip", "route", "del", "unreachable", f"{gone}/32"], check=False)

        wins: list[float] = []
        refusals: list[float] = []
        for _ in range(args.rounds):
            gate = threading.Barrier(2)

            def race(gate: threading.Barrier = gate) -> None:
                gate.wait()
                t0 = time.monotonic()
                try:
                    with cluster_lock(inv, "bench", notify=lambda _: None):
                        wins.append(time.monotonic() - t0)
                        time.sleep(0.5)
                except LockHeld:
                    refusals.append(time.monotonic() - t0)

            threads = [threading.Thread(target=race) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        print(
            f"quorum lock, {hosts} hosts ({len(info.frontends)} front ends), medians of {args.rounds}:"
        )
        print(f"  take + give back, all up            {up * 1000:7.0f} ms")
        print(f"  take + give back, one host down     {one_down * 1000:7.0f} ms")
        print(f"  clusterctl lock show (CLI)          {shown * 1000:7.0f} ms")
        print(f"  two at once: winner holds after     {statistics.median(wins) * 1000:7.0f} ms"
              f"  ({len(wins)} wins, {len(refusals)} refusals)")  # fmt: skip
        if refusals:
            print(
                f"  two at once: loser refused after    {statistics.median(refusals) * 1000:7.0f} ms"
            )
    finally:
        labmod.down(args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
