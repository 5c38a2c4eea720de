"""Requests that fail under wrk: member changes at run time (rollouts) against reloads (applies).

On a lab of one HAProxy, one nginx and one Apache before three backends, under wrk keep-alive
GETs and POSTs through all three front ends at once (wrk never resends, so a keep-alive
connection a server closes under a request is one of its socket errors): first `--rounds`
rollouts of the three backends (drain, maint and restore go through each kind's runtime
interface), then `--rounds` applies of a structural change (the web service's client timeout
toggled), which every kind takes by a reload. Prints, per kind, the requests and errors of
each, how many of the changes reloaded the front end, and the ratio of the two error rates.
The lab is removed at the end, whatever happens.

Usage: sudo .venv/bin/python bench/runtime_vs_reload.py [--rounds 20] [--connections 2]
       [--lab bench-rvr] [--verbose]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clusterctl import lab as labmod  # noqa: E402
from tests.helpers.wrk import WrkLoad  # noqa: E402
from tests.integration.labfixtures import Lab, Run, cli, own_lab  # noqa: E402

KINDS = ("haproxy", "nginx", "apache")


@dataclass
class Tally:
    """One phase on one kind: wrk's counts (GETs and POSTs together) and the reloads seen."""

    requests: int = 0
    socket_errors: int = 0
    non_2xx: int = 0
    reloads: int = 0

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx

    def per_mille(self) -> float:
        return 1000 * self.errors / self.requests if self.requests else 0.0


def inventory(lab: Lab, timeout: str | None) -> Path:
    inv: dict[str, Any] = labmod.lab_inventory(lab.info)
    if timeout:
        inv["services"][0]["timeouts"] = {"client": timeout}
    return lab.write(inv)


def phase(
    lab: Lab, work: Path, args: argparse.Namespace, change: Callable[[int], Run]
) -> tuple[dict[str, Tally], float]:
    """`change(i)` --rounds times under wrk; per kind, what wrk counted and the reloads."""
    hosts = {h.kind: h.name for h in lab.frontends}
    tallies = {k: Tally() for k in KINDS}
    urls = {h.kind: h.url for h in lab.frontends}
    took = 0.0
    with WrkLoad(
        urls, work, connections=args.connections, max_seconds=args.rounds * 30 + 60
    ) as load:
        try:
            for i in range(args.rounds):
                before = {name: lab.pids(name) for name in hosts.values()}
                started = time.monotonic()
                run = change(i)
                took += time.monotonic() - started
                if run.rc != 0:
                    raise SystemExit(f"round {i + 1} failed:{run}")
                if args.verbose:
                    print(f"round {i + 1}: {run.seconds:.1f} s\n{run.out}", file=sys.stderr)
                reloaded = lab.not_reloaded(before)
                for kind, name in hosts.items():
                    tallies[kind].reloads += name in reloaded
        finally:
            counts = load.stop()
    for kind, runs in counts.items():
        for w in runs.values():
            t = tallies[kind]
            t.requests += w.requests
            t.socket_errors += w.socket_errors
            t.non_2xx += w.non_2xx
    return tallies, took / args.rounds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20, help="rollouts, then applies (default 20)")
    ap.add_argument(
        "--connections", type=int, default=2, help="per wrk (a GET and a POST one per kind)"
    )
    ap.add_argument("--lab", default="bench-rvr")
    ap.add_argument("--verbose", action="store_true", help="each change's output, as it ends")
    args = ap.parse_args()
    if not 1 <= args.rounds <= 200:
        raise SystemExit("--rounds must be between 1 and 200")
    with (
        tempfile.TemporaryDirectory() as tmp,
        own_lab(args.lab, Path(tmp), frontends=list(KINDS)) as lab,
    ):
        work = Path(tmp)
        first = cli("apply", "-i", str(inventory(lab, None)), "--yes")
        if first.rc != 0:
            raise SystemExit(f"the first apply failed:{first}")
        path = str(lab.inventory)
        rollouts, roll_s = phase(
            lab, work, args, lambda i: cli("rollout", "-i", path, "--version", f"bench-{i + 1}")
        )
        timeouts = ("31s", "30s")  # toggled: every apply changes every front end's config
        applies, apply_s = phase(
            lab,
            work,
            args,
            lambda i: cli("apply", "-i", str(inventory(lab, timeouts[i % 2])), "--yes"),
        )
    n = args.rounds
    print(
        f"\nunder wrk keep-alive, {2 * args.connections} connections per front end (GETs and POSTs)"
    )
    print(
        f"{n} rollouts of 3 backends ({roll_s:.1f} s each), {n} structural applies ({apply_s:.1f} s each)\n"
    )
    head = ("kind", "what", "requests", "socket errors", "non-2xx", "per 1,000", "reloads")
    rows = [head]
    for kind in KINDS:
        for what, t in (("rollouts", rollouts[kind]), ("structural applies", applies[kind])):
            rows.append((kind, what, f"{t.requests:,}", str(t.socket_errors), str(t.non_2xx),
                         f"{t.per_mille():.2f}", f"{t.reloads}/{n}"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print()
    for kind in KINDS:
        r, a = rollouts[kind], applies[kind]
        per_apply = a.errors / n
        if r.errors:
            ratio = f"{a.per_mille() / r.per_mille():.1f}x the rollouts' error rate"
        else:
            ratio = "rollouts failed nothing"
        print(f"{kind}: applies fail {a.errors} of {a.requests:,} ({per_apply:.1f} per apply), "
              f"rollouts {r.errors} of {r.requests:,}: {ratio}")  # fmt: skip


if __name__ == "__main__":
    main()
