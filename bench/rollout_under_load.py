"""Consecutive rollouts under steady load, per front-end kind: requests, failures, overhead.

For each front-end kind, N rollouts of every backend (alternating two versions) run one after
the other through the CLI (`clusterctl rollout --output json`, as a user or CI runs it), while
clusterctl's load client sends GETs and POSTs through that front end. Printed per kind:
requests served, failed requests, resends on a closed keep-alive connection, and per node
  overhead = node total - deploy time - drain wait (drain wait: waiting for sessions, twice:
  after drain and after maint)
with what the overhead is made of (setting the drain, restoring, the private check).

With --wrk, a second pass does the same under wrk (GETs, fixed-duration runs back to back
while the rollouts go on) for comparison: wrk counts a keep-alive connection the server closed
as a read error, where the load client (as browsers do) resends once and counts it apart.

Usage (root; builds lab `trb`, or `trb-<kind>` with --lab-per-kind, and removes it after):
  sudo .venv/bin/python bench/rollout_under_load.py [--rollouts 20] [--kinds haproxy,nginx]
      [--no-keepalive] [--clients 4] [--wrk] [--lab-per-kind] [--lab trb] [--keep-lab]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clusterctl import lab
from clusterctl.loadgen import Load, LoadReport

REPO = Path(__file__).resolve().parents[1]
VERSIONS = ("bench-a", "bench-b")
MAX_LOAD_SECONDS = 600  # every load is bounded; a pass longer than this is split
# SIGTERM or SIGINT: finish the rollout under way (a killed one would leave the cluster lock
# and a drained node behind), report what was measured, remove the lab.
STOP = threading.Event()


def clusterctl() -> str:
    venv = REPO / ".venv" / "bin" / "clusterctl"
    return str(venv if venv.exists() else Path(sys.executable).with_name("clusterctl"))


@dataclass
class NodeRun:
    node: str
    total: float = 0.0
    deploy: float = 0.0
    drain_wait: float = 0.0
    drain_set: float = 0.0
    check: float = 0.0
    restore: float = 0.0

    @property
    def overhead(self) -> float:
        return self.total - self.deploy - self.drain_wait


@dataclass
class Pass:
    kind: str
    tool: str
    rollouts: int = 0
    failed_rollouts: list[str] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    nodes: list[NodeRun] = field(default_factory=list)
    load: LoadReport = field(default_factory=LoadReport)
    wrk: dict[str, int] = field(default_factory=dict)


def node_runs(events: list[dict[str, Any]]) -> list[NodeRun]:
    runs: dict[str, NodeRun] = {}
    for e in events:
        if e["status"] != "ok":
            continue
        r = runs.setdefault(e["node"], NodeRun(e["node"]))
        step, elapsed = e["step"], float(e["elapsed"])
        if step == "done":
            r.total = elapsed
        elif step == "deploy":
            r.deploy = elapsed
        elif step in ("wait", "maint"):
            r.drain_wait += elapsed
        elif step == "drain":
            r.drain_set = elapsed
        elif step == "check":
            r.check = elapsed
        elif step == "restore":
            r.restore = elapsed
    return [r for r in runs.values() if r.total]


def rollout(inventory: Path, version: str) -> tuple[int, list[dict[str, Any]], str, float]:
    started = time.monotonic()
    res = subprocess.run(
        [
            clusterctl(),
            *("rollout", "-i", str(inventory), "--version", version),
            *("--output", "json", "--lock-wait", "300"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
        start_new_session=True,  # a ^C stops the bench after this rollout, not the rollout
    )
    wall = time.monotonic() - started
    events = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    return res.returncode, events, res.stderr.strip(), wall


_WRK_REQUESTS = re.compile(r"(\d+) requests in")
_WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


class WrkLoop(threading.Thread):
    """wrk runs of a fixed duration back to back until stopped; their counts added up."""

    def __init__(self, url: str, clients: int, keepalive: bool, chunk: int = 10) -> None:
        super().__init__(daemon=True)
        self.url, self.clients, self.keepalive, self.chunk = url, clients, keepalive, chunk
        self.stopping = threading.Event()
        self.totals = dict.fromkeys(
            ["requests", "connect", "read", "write", "timeout", "non2xx", "runs"], 0
        )

    def run(self) -> None:
        deadline = time.monotonic() + MAX_LOAD_SECONDS * 3
        while not self.stopping.is_set() and time.monotonic() < deadline:
            argv = ["wrk", "-t", "2", "-c", str(self.clients), "-d", f"{self.chunk}s"]
            if not self.keepalive:
                argv += ["-H", "Connection: close"]
            out = subprocess.run(
                [*argv, self.url], capture_output=True, text=True, timeout=self.chunk + 30
            ).stdout
            self.totals["runs"] += 1
            if m := _WRK_REQUESTS.search(out):
                self.totals["requests"] += int(m.group(1))
            if m := _WRK_ERRORS.search(out):
                for key, value in zip(
                    ("connect", "read", "write", "timeout"), m.groups(), strict=True
                ):
                    self.totals[key] += int(value)
            if m := _WRK_NON2XX.search(out):
                self.totals["non2xx"] += int(m.group(1))

    def stop(self) -> dict[str, int]:
        self.stopping.set()
        self.join()
        return self.totals


def one_pass(
    info: lab.LabInfo, inventory: Path, kind: str, tool: str, args: argparse.Namespace
) -> Pass:
    url = next(h.url for h in info.frontends if h.kind == kind)
    result = Pass(kind, tool)
    wrk = None

    def new_load() -> Load:
        return Load(
            url,
            clients=args.clients,
            duration=MAX_LOAD_SECONDS,
            max_requests=10_000_000,
            keepalive=args.keepalive,
        ).start()

    def finish(load: Load) -> None:
        part = load.stop()
        result.load.merge(part)
        result.load.seconds += part.seconds

    if tool == "wrk":
        wrk = WrkLoop(url, args.clients, args.keepalive)
        wrk.start()
        current = None
    else:
        current = new_load()
    time.sleep(1.0)
    for i in range(args.rollouts):
        if STOP.is_set():
            break
        if current is not None and time.monotonic() - current.started > MAX_LOAD_SECONDS - 60:
            finish(current)
            current = new_load()
        version = VERSIONS[i % 2]
        rc, events, err, wall = rollout(inventory, version)
        result.rollouts += 1
        result.walls.append(wall)
        result.nodes += node_runs(events)
        if rc != 0:
            result.failed_rollouts.append(f"#{i + 1} {version}: {err[-300:]}")
        print(
            f"  {kind:<7} {tool:<7} rollout {i + 1:>2}/{args.rollouts} {version}: "
            f"{'ok' if rc == 0 else 'FAILED'} in {wall:.1f}s",
            flush=True,
        )
    time.sleep(1.0)
    if current is not None:
        finish(current)
    if wrk is not None:
        result.wrk = wrk.stop()
    return result


def stats(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"mean {statistics.mean(values):.2f}s median {statistics.median(values):.2f}s "
        f"p95 {p95:.2f}s max {max(values):.2f}s"
    )


def report(p: Pass, keepalive: bool, alone: bool) -> None:
    where = "its own lab, the only front end" if alone else "lab with all three kinds"
    print(f"\n== {p.kind} ({p.tool}, keep-alive {'on' if keepalive else 'off'}; {where}) ==")
    print(f"rollouts: {p.rollouts}, failed: {len(p.failed_rollouts)}")
    for f in p.failed_rollouts:
        print(f"  {f}")
    print(f"rollout wall time (CLI start to exit): {stats(p.walls)}")
    if p.tool == "loadgen":
        print(f"load: {p.load.summary()}")
        print(
            f"  requests served {p.load.requests - p.load.failed}, failed {p.load.failed}, "
            f"resent on closed keep-alive {p.load.resent}"
        )
    else:
        w = p.wrk
        print(
            f"wrk ({w.get('runs', 0)} runs): {w.get('requests', 0)} requests, non-2xx/3xx "
            f"{w.get('non2xx', 0)}, socket errors connect {w.get('connect', 0)} read "
            f"{w.get('read', 0)} write {w.get('write', 0)} timeout {w.get('timeout', 0)}"
        )
    print(f"per node ({len(p.nodes)} node upgrades):")
    print(f"  total      {stats([n.total for n in p.nodes])}")
    print(f"  deploy     {stats([n.deploy for n in p.nodes])}")
    print(f"  drain wait {stats([n.drain_wait for n in p.nodes])}")
    print(f"  overhead   {stats([n.overhead for n in p.nodes])}")
    print(f"    of which setting drain {stats([n.drain_set for n in p.nodes])}")
    print(f"    of which restore       {stats([n.restore for n in p.nodes])}")
    print(f"    of which check         {stats([n.check for n in p.nodes])}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--lab", default="trb")
    parser.add_argument("--rollouts", type=int, default=20)
    parser.add_argument("--kinds", default="haproxy,nginx,apache")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--keepalive", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--wrk", action="store_true", help="a second pass under wrk")
    parser.add_argument("--keep-lab", action="store_true")
    parser.add_argument(
        "--lab-per-kind", action="store_true", help="one lab per kind, that front end alone"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 2
    kinds = [k for k in args.kinds.split(",") if k]
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: STOP.set())

    started = time.monotonic()
    passes: list[Pass] = []
    # One lab with every kind (each rollout drains on all three front ends, as a cluster with
    # three kinds of front end does), or --lab-per-kind: one lab per kind with that front end
    # alone, so the overhead is that kind's own.
    groups = [(f"{args.lab}-{k}", [k]) for k in kinds] if args.lab_per_kind else [(args.lab, kinds)]
    for name, group in groups:
        if STOP.is_set():
            break
        lab.down(name)
        try:
            info = lab.up(name, frontends=group) if args.lab_per_kind else lab.up(name)
            inventory = info.inventory_path
            subprocess.run(
                [clusterctl(), "apply", "-i", str(inventory), "--yes", "--lock-wait", "300"],
                check=True,
                capture_output=True,
                env={**os.environ, "NO_COLOR": "1"},
            )
            for kind in group:
                for tool in ("loadgen", "wrk") if args.wrk else ("loadgen",):
                    if not STOP.is_set():
                        passes.append(one_pass(info, inventory, kind, tool, args))
        finally:
            if not args.keep_lab:
                lab.down(name)
    for p in passes:
        report(p, args.keepalive, args.lab_per_kind)
    print(f"\nbench took {time.monotonic() - started:.0f}s")
    return 1 if any(p.failed_rollouts or p.load.failed for p in passes) else 0


if __name__ == "__main__":
    sys.exit(main())
