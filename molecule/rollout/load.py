"""Bounded background load through every front end of a lab, for the rollout scenario.

Sends steady GETs and POSTs (clusterctl.loadgen) to each front end of lab --lab until the
--stop file appears or --max-seconds pass (at most 600), then writes a JSON report to
--report: per front end the requests, failures, statuses and errors, and the totals. Only
the lab's own 198.18.0.0/15 addresses are ever sent to (loadgen refuses any other).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from clusterctl import lab
from clusterctl.loadgen import Load, LoadReport

MAX_REQUESTS = 2_000_000  # per front end; the time bound comes first


def report_json(report: LoadReport) -> dict[str, object]:
    return {
        "requests": report.requests,
        "failed": report.failed,
        "resent": report.resent,
        "seconds": round(report.seconds, 2),
        "statuses": {str(k): v for k, v in sorted(report.statuses.items())},
        "errors": dict(report.errors),
        "backends": dict(report.backends),
        "summary": report.summary(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lab", required=True)
    parser.add_argument("--report", required=True, type=Path)
    parser.add_argument("--started", required=True, type=Path)
    parser.add_argument("--stop", required=True, type=Path)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--clients", type=int, default=2, help="per front end")
    args = parser.parse_args()
    seconds = min(max(args.max_seconds, 1.0), 600.0)

    info = lab.info(args.lab)
    loads = {
        h.name: Load(
            h.url, clients=args.clients, duration=seconds, max_requests=MAX_REQUESTS
        ).start()
        for h in info.frontends
    }
    args.started.write_text("started\n")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not args.stop.exists():
        time.sleep(0.2)
    reports = {name: load.stop() for name, load in loads.items()}
    out = {
        "lab": args.lab,
        "frontends": {name: report_json(r) for name, r in reports.items()},
        "requests": sum(r.requests for r in reports.values()),
        "failed": sum(r.failed for r in reports.values()),
        "stopped_by": "stop file" if args.stop.exists() else "time bound",
    }
    tmp = args.report.with_name(args.report.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(args.report)
    for name, r in reports.items():
        print(f"{name}: {r.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
