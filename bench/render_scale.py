"""Time and peak memory of load + validate + render for 10, 100 and 1,000 pools of 20 servers.

Each inventory has one front end of each kind (haproxy, nginx, apache) serving every service:
one http service per 10 pools (the first its default, the other nine by path), every pool
with the default health check, every fifth with a sticky cookie, the others with a backup
server. A size runs in its own process, so its peak resident memory (getrusage maxrss,
interpreter and imports included, taken after the first run) is its own; inside it the first
load + render is timed cold (templates compiled in that run, as a command does it), then the
best of --repeat warm runs. Then one wrong value at the end of the largest file must still be
reported as FILE:LINE:COL. Prints one table and the ratio of 1,000 to 100 pools (issue 14:
under 1 s and 300 MB, ratio at most 12).

The file stays under the loader's 1 MiB limit: block style down to each pool, its servers one
flow list on one line (so errors there differ by column), short names, TEST-NET addresses.

Usage: .venv/bin/python bench/render_scale.py [--sizes 10,100,1000] [--repeat 3] [--profile N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SERVERS = 20
POOLS_PER_SERVICE = 10


def endpoint(n: int) -> str:
    """Server n's own address and port (TEST-NET-1 holds 254 addresses, so ports vary too)."""
    return f"address: 192.0.2.{n % 254 + 1}, port: {80 + n // 254}"


def inventory(pools: int) -> str:
    out = [
        f"cluster: scale{pools}",
        "frontends:",
        "- {name: lb-haproxy, kind: haproxy, address: 192.0.2.10}",
        "- {name: lb-nginx, kind: nginx, address: 192.0.2.11}",
        "- {name: lb-apache, kind: apache, address: 192.0.2.12}",
        "pools:",
    ]
    for p in range(pools):
        out.append(f"- name: p{p}")
        out.append("  health: {}")  # an http check of /health, every default
        sticky = p % 5 == 0
        if sticky:
            out.append("  sticky: {cookie: SRVID}")
        servers = []
        for s in range(SERVERS):
            n = p * SERVERS + s
            extra = ", backup: true" if s == SERVERS - 1 and not sticky else ""
            servers.append(f"{{name: s{n}, {endpoint(n)}{extra}}}")
        out.append(f"  servers: [{', '.join(servers)}]")
    out.append("services:")
    for v in range(0, pools, POOLS_PER_SERVICE):
        group = range(v, min(v + POOLS_PER_SERVICE, pools))
        out.append(f"- name: w{v // POOLS_PER_SERVICE}")
        out.append(f"  listen: [{{port: {10000 + v // POOLS_PER_SERVICE}}}]")
        out.append(f"  default_pool: p{v}")
        routes = [f"{{path: /p{p}, pool: p{p}}}" for p in group if p != v]
        if routes:
            out.append(f"  routes: [{', '.join(routes)}]")
    return "\n".join(out) + "\n"


def measure(path: str, repeat: int) -> dict[str, float]:
    """In this process: cold load + render, then the best of `repeat` warm ones."""
    import resource

    from clusterctl.model import load
    from clusterctl.render import render

    started, cpu = time.perf_counter(), time.process_time()
    files = render(load(path))
    cold, cold_cpu = time.perf_counter() - started, time.process_time() - cpu
    # The peak of one command's work: before the warm runs, which hold two results at once.
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = sum(len(f.content) for host in files.values() for f in host.values())
    del files
    warm = []
    for _ in range(repeat):
        started = time.perf_counter()
        render(load(path))
        warm.append(time.perf_counter() - started)
    return {
        "cold": cold,
        "cpu": cold_cpu,
        "warm": min(warm, default=cold),
        "rss_mb": rss_mb,
        "out_kb": size / 1024,
    }


def broken(path: str) -> dict[str, float | str]:
    """The error for a port out of range on the file's last server, and how long it took."""
    from clusterctl.errors import InventoryError
    from clusterctl.model import load

    started = time.perf_counter()
    try:
        load(path)
    except InventoryError as exc:
        return {"seconds": time.perf_counter() - started, "error": str(exc)}
    return {"seconds": time.perf_counter() - started, "error": ""}


def child(args: list[str]) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True, timeout=600
    )
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", type=int, metavar="POOLS", help="cProfile one size instead")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        mode, path = a.child
        print(json.dumps(measure(path, a.repeat) if mode == "render" else broken(path)))
        return 0
    with tempfile.TemporaryDirectory(prefix="render-scale-") as tmp:
        if a.profile:
            return profile(Path(tmp), a.profile)
        rows = {}
        print(
            f"{'pools':>6} {'servers':>8} {'KiB in':>7} {'cold s':>7} {'cpu s':>6} {'warm s':>7} "
            f"{'peak MB':>8} {'KiB out':>8}"
        )
        for pools in (int(x) for x in a.sizes.split(",")):
            path = Path(tmp) / f"scale{pools}.yaml"
            path.write_text(inventory(pools))
            r = child(["--repeat", str(a.repeat), "--child", "render", str(path)])
            rows[pools] = r
            print(
                f"{pools:>6} {pools * SERVERS:>8} {path.stat().st_size / 1024:>7.0f} "
                f"{r['cold']:>7.3f} {r['cpu']:>6.3f} {r['warm']:>7.3f} {r['rss_mb']:>8.1f} {r['out_kb']:>8.0f}"
            )
        if 100 in rows and 1000 in rows:
            for key in ("cold", "cpu", "warm"):
                ratio = float(rows[1000][key]) / float(rows[100][key])  # type: ignore[arg-type]
                print(f"ratio 1000/100 pools ({key}): {ratio:.1f}x (goal <= 12x)")
        largest = max(rows)
        path = Path(tmp) / f"scale{largest}.yaml"
        text = path.read_text()
        cut = text.rindex(", port: ") + len(", port: ")
        bad = Path(tmp) / "broken.yaml"
        bad.write_text(text[:cut] + "999" + text[cut:])  # 999158: above 65535
        b = child(["--child", "broken", str(bad)])
        line = text[:cut].count("\n") + 1
        print(
            f"error in {largest} pools after {float(b['seconds']):.3f} s "  # type: ignore[arg-type]
            f"(expected at line {line}): {b['error']}"
        )
        return 0 if f"{bad}:{line}:" in str(b["error"]) else 1


def profile(tmp: Path, pools: int) -> int:
    import cProfile
    import pstats

    from clusterctl.model import load
    from clusterctl.render import render

    path = tmp / f"scale{pools}.yaml"
    path.write_text(inventory(pools))
    prof = cProfile.Profile()
    prof.runcall(lambda: render(load(str(path))))
    pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
