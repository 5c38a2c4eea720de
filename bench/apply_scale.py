"""Time `clusterctl apply` against labs of 1, 5, 20 and 50 front ends (kinds mixed).

For each size: `clusterctl lab up NAME --frontends haproxy,nginx,apache,...`, then a first
apply (every front end gets its config and reloads), a no-op apply and a no-op plan, all run
as a user runs them (the CLI as a subprocess), then `clusterctl lab down NAME`, whatever
happens. Prints one table, then each size's times as a ratio of the smallest size's (the goal:
20 front ends at most 1.3x the time of 1, 50 at most 2x). `--kinds haproxy` makes every front
end HAProxy (as bench/ansible_compare.py does).

Usage: sudo .venv/bin/python bench/apply_scale.py [--sizes 1,5,20,50] [--forks 0] [--prefix bench]
  [--kinds haproxy,nginx,apache]   (--forks 0: clusterctl's own default)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ruamel.yaml import YAML  # noqa: E402

from clusterctl import lab as labmod  # noqa: E402
from tests.integration.labfixtures import Lab, assert_private_state_dir, cli  # noqa: E402

KINDS = ("haproxy", "nginx", "apache")


@dataclass
class Row:
    frontends: int
    kinds: str
    lab_up: float
    first_apply: float
    noop_apply: float
    noop_plan: float
    note: str = ""


def inventory_for(info: labmod.LabInfo, path: Path) -> Path:
    """The lab's own inventory, plus each front end's lab `start` command."""
    data: dict[str, Any] = YAML(typ="safe").load(info.inventory_path.read_text())
    for fe in data["frontends"]:
        fe["start"] = ["/srv/lab/bin/lab-service", fe["kind"], "start"]
    yaml = YAML()
    yaml.default_flow_style = False
    with path.open("w") as fh:
        yaml.dump(data, fh)
    return path


def measure(name: str, size: int, forks: int, workdir: Path, mix_of: tuple[str, ...]) -> Row:
    kinds = [mix_of[i % len(mix_of)] for i in range(size)]
    mix = ", ".join(f"{kinds.count(k)} {k}" for k in mix_of if k in kinds)
    fork_args = ["--forks", str(forks)] if forks else []
    cli("lab", "down", name, timeout=900)
    try:
        up = cli("lab", "up", name, "--frontends", ",".join(kinds), "--output", "json", timeout=900)
        if up.rc != 0:
            raise SystemExit(f"lab up {name} failed: {up.err or up.out}")
        info = labmod.LabInfo.from_dict(json.loads(up.out))
        lab = Lab(info, workdir)
        lab.control_dir.mkdir(mode=0o700, exist_ok=True)
        try:
            assert_private_state_dir(lab)
        finally:
            lab.close_ssh()
        inv = str(inventory_for(info, workdir / f"{name}.yaml"))
        first = cli("apply", "-i", inv, "--yes", *fork_args, timeout=900)
        if first.rc != 0:
            raise SystemExit(f"first apply on {name} failed:{first}")
        noop = cli("apply", "-i", inv, "--yes", *fork_args, timeout=900)
        ok = noop.rc == 0 and "nothing to do" in noop.out
        note = "" if ok else f"no-op apply said: {noop.err or noop.out}"
        plan = cli("plan", "-i", inv, "--detailed-exitcode", *fork_args, timeout=900)
        if plan.rc != 0:
            note += f" plan after apply exited {plan.rc}"
        return Row(size, mix, up.seconds, first.seconds, noop.seconds, plan.seconds, note.strip())
    finally:
        cli("lab", "down", name, timeout=900)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,5,20,50", help="front-end counts, comma-separated")
    parser.add_argument("--forks", type=int, default=0, help="clusterctl --forks (0: default)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="front-end kinds, in turn")
    parser.add_argument("--prefix", default="bench", help="lab names are PREFIX<size>")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/apply_scale.py builds labs: run it as root", file=sys.stderr)
        return 2
    workdir = Path(f"/tmp/clusterctl-{args.prefix}-apply-scale")
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        kinds = tuple(k for k in args.kinds.split(",") if k)
        row = measure(f"{args.prefix}{size}", size, args.forks, workdir, kinds)
        rows.append(row)
        print(
            f"{row.frontends} front ends: first apply {row.first_apply:.2f}s, "
            f"no-op apply {row.noop_apply:.2f}s",
            file=sys.stderr,
        )
    load = os.getloadavg()[0]
    forks = args.forks or "default"
    print(f"\nclusterctl apply, --forks {forks}, {os.cpu_count()} CPUs, load {load:.1f}")
    header = f"{'front ends':>10}  {'kinds':<28} {'lab up':>7} {'first apply':>12} {'no-op apply':>12} {'no-op plan':>11}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.frontends:>10}  {r.kinds:<28} {r.lab_up:>6.2f}s {r.first_apply:>11.2f}s "
            f"{r.noop_apply:>11.2f}s {r.noop_plan:>10.2f}s" + (f"  ({r.note})" if r.note else "")
        )
    if len(rows) > 1:
        base = rows[0]
        print(f"\nratios to {base.frontends} front end(s):")
        for r in rows[1:]:
            print(
                f"{r.frontends:>10}  first apply {r.first_apply / base.first_apply:.2f}x, "
                f"no-op apply {r.noop_apply / base.noop_apply:.2f}x, "
                f"no-op plan {r.noop_plan / base.noop_plan:.2f}x"
            )
    return 1 if any(r.note for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
