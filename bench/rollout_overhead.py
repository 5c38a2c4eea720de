"""What a rollout costs per node beyond the deploy and the drain wait, with --batch 1 and 50%.

Brings up a lab of three front ends (haproxy, nginx, apache) and N backends, applies its
inventory, then runs `clusterctl rollout --output json` (as CI runs it) several times with each
batch size, alternating two versions. From each node's events:
  overhead = node total - deploy - drain wait (the "wait" step: sessions ending after drain)
split into drain (setting it on every front end), maint (setting it, and the look for sessions
that slipped in), check (the private health check), restore (back to ready and reported up)
and the rest. Prints medians over every node of every run, and each run's wall time.

Usage: sudo .venv/bin/python bench/rollout_overhead.py [--runs 3] [--backends 4] [--lab h10ro]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.labfixtures import cli  # noqa: E402  (CLUSTERCTL_BIN: another copy)

VERSIONS = ("ovh-a", "ovh-b")
PARTS = ("drain", "maint", "check", "restore", "rest")


@dataclass
class Node:
    total: float = 0.0
    deploy: float = 0.0
    wait: float = 0.0
    drain: float = 0.0
    maint: float = 0.0
    check: float = 0.0
    restore: float = 0.0
    _maint_start: float = 0.0

    @property
    def overhead(self) -> float:
        return self.total - self.deploy - self.wait

    @property
    def rest(self) -> float:
        return self.overhead - self.drain - self.maint - self.check - self.restore


def nodes_of(events: list[dict[str, Any]]) -> list[Node]:
    runs: dict[str, Node] = {}
    for e in events:
        if not e["node"]:
            continue
        n = runs.setdefault(e["node"], Node())
        step, status, elapsed = e["step"], e["status"], float(e["elapsed"])
        at = _stamp(e["time"])
        if step == "maint" and status == "start":
            n._maint_start = at
        if status != "ok":
            continue
        if step == "done":
            n.total = elapsed
        elif step == "deploy":
            n.deploy = elapsed
        elif step == "wait":
            n.wait = elapsed
        elif step == "drain":
            n.drain = elapsed
        elif step == "maint":
            n.maint = at - n._maint_start  # its setting and its look for sessions
        elif step == "check":
            n.check = elapsed
        elif step == "restore":
            n.restore = elapsed
    return [n for n in runs.values() if n.total]


def _stamp(text: str) -> float:
    return time.mktime(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) + float(text[19:-1] or 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="rollouts per batch size")
    parser.add_argument("--backends", type=int, default=4)
    parser.add_argument("--lab", default="h10ro")
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/rollout_overhead.py builds a lab: run it as root", file=sys.stderr)
        return 2
    try:
        up = cli("lab", "up", args.lab, "--backends", str(args.backends), timeout=600)
        if up.rc != 0:
            raise SystemExit(f"lab up {args.lab} failed: {up.err or up.out}")
        inv = f"/var/lib/clusterctl-labs/{args.lab}/inventory.yaml"
        applied = cli("apply", "-i", inv, "--yes", timeout=600)
        if applied.rc != 0:
            raise SystemExit(f"apply failed: {applied.err or applied.out}")
        print(f"{args.backends} backends, 3 front ends (haproxy, nginx, apache); medians per node")
        print(
            f"{'batch':>6} {'runs':>4} {'wall':>6} {'deploy':>7} {'wait':>6} {'overhead':>9}  "
            + " ".join(f"{p:>7}" for p in PARTS)
        )
        i = 0
        for batch in ("1", "50%"):
            nodes: list[Node] = []
            walls: list[float] = []
            for _ in range(args.runs):
                version = VERSIONS[i % 2]
                i += 1
                ran = cli(
                    "rollout", "-i", inv, "--version", version, "--batch", batch,
                    "--output", "json", "--force", timeout=600,
                )  # fmt: skip
                if ran.rc != 0:
                    raise SystemExit(
                        f"rollout --batch {batch} failed: {ran.err or ran.out[-2000:]}"
                    )
                events = [json.loads(ln) for ln in ran.out.splitlines() if ln.strip()]
                nodes += nodes_of(events)
                walls.append(ran.seconds)

            def med(values: list[float]) -> float:
                return statistics.median(values) if values else 0.0

            parts = " ".join(f"{med([getattr(n, p) for n in nodes]):>6.2f}s" for p in PARTS)
            print(
                f"{batch:>6} {args.runs:>4} {med(walls):>5.2f}s "
                f"{med([n.deploy for n in nodes]):>6.2f}s {med([n.wait for n in nodes]):>5.2f}s "
                f"{med([n.overhead for n in nodes]):>8.2f}s  {parts}"
            )
        return 0
    finally:
        if not args.keep:
            cli("lab", "down", args.lab, timeout=600)


if __name__ == "__main__":
    sys.exit(main())
