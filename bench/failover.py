"""Takeover time of a keepalived pair at advert 1 s and 200 ms, in the lab.

One lab (`clusterctl lab up NAME --frontends haproxy,haproxy --vip`), applied; for each advert
interval the group is re-applied with it, then for each way of losing the master:
- proxy: the master's HAProxy is killed (the probe script sees its listener gone; the lab
  cannot use track_process: a namespace gets no process connector);
- host: the master's link to the bridge goes down (its veth, from the machine's side): no
  goodbye advert, so the backup waits out the master-down interval (about 3 adverts + skew);
  when the link comes back both are MASTER for a moment, and the time until exactly one
  holds the address again is measured too ("partition healed");
- planned: `failover` (the hold file) moves the address;
a GET every 10 ms through the virtual address measures the time from the event until the
first answer from the other member, and counts the failed requests in between. Everything is
put back after each round. Then a planned failover under steady load of 4 clients (loadgen),
with Connection: close and again with keep-alive: how many requests failed. Prints one table
and those lines; tears the lab down whatever happens.

Usage: sudo .venv/bin/python bench/failover.py [--name h5bench] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clusterctl import lab as labmod  # noqa: E402
from clusterctl.execute.runner import execute_plan, make_plan  # noqa: E402
from clusterctl.lab.vrrp import vip  # noqa: E402
from clusterctl.model import load, parse  # noqa: E402
from clusterctl.model.schema import Inventory  # noqa: E402
from clusterctl.orchestrate import failover as fo  # noqa: E402

BACKEND_OF = "X-Served-By"


def apply(inv: Inventory) -> None:
    bad = [r for r in execute_plan(inv, make_plan(inv)) if r.status in ("failed", "rolled back")]
    if bad:
        raise SystemExit(f"apply failed: {bad}")


def holder(inv: Inventory) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with fo.members(inv) as ms:
            seen = fo.survey(ms, inv.vrrp[0])
        held = [n for n, m in seen.items() if m.holds(inv.vrrp[0])]
        healthy = all(m.state(inv.vrrp[0]) in ("MASTER", "BACKUP") for m in seen.values())
        if len(held) == 1 and healthy:
            return held[0]
        time.sleep(0.2)
    raise SystemExit("no single healthy holder")


def ask(address: str) -> bool:
    try:
        c = http.client.HTTPConnection(address, 80, timeout=0.3)
        c.request("GET", "/", headers={"Connection": "close"})
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False


HEALED: list[float] = []
LOADS: list[str] = []


def veth(info: labmod.LabInfo, host: str, state: str) -> None:
    from clusterctl.lab.naming import Naming

    name = Naming(info.name).veth(host)
    subprocess.run(["ip", "link", "set", name, state], check=True, timeout=10)


def one_holder(inv: Inventory) -> None:
    """Until exactly one member holds the address (both MASTER right after a partition)."""
    g = inv.vrrp[0]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with fo.members(inv) as ms:
            if sum(ms.read(n).holds(g) for n in g.members) == 1:
                return
        time.sleep(0.05)
    raise SystemExit("the partition did not heal")


def ssh(info: labmod.LabInfo, host: str, line: str) -> None:
    subprocess.run(info.ssh_argv(host, line), check=True, capture_output=True, timeout=30)


def measure(info: labmod.LabInfo, inv: Inventory, how: str) -> tuple[float, int]:
    """Seconds from the event until the address answers from the other member, and the failed
    requests in between (10 ms apart)."""
    old = holder(inv)
    address = vip(info)
    for _ in range(20):  # steady before the event
        ask(address)
    if how == "proxy":
        event = time.monotonic()
        ssh(info, old, "kill -KILL $(cat /run/haproxy.pid)")
    elif how == "host":
        event = time.monotonic()
        veth(info, old, "down")
    else:
        event = time.monotonic()
        subprocess.Popen(  # the CLI as a user runs it, in the background while we poll
            [str(REPO / ".venv/bin/clusterctl"), "failover", "-i", str(info.inventory_path), "lab"],
            stdout=subprocess.DEVNULL,
        )
    failed = 0
    deadline = event + 30
    while time.monotonic() < deadline:
        if ask(address):
            if how == "host":  # the old master is cut off: whoever answers is the other
                break
            with fo.members(inv) as ms:
                if not ms.read(old).holds(inv.vrrp[0]):
                    break
        else:
            failed += 1
        time.sleep(0.01)
    took = time.monotonic() - event
    if how == "host":
        veth(info, old, "up")
        healed = time.monotonic()
        one_holder(inv)
        HEALED.append(time.monotonic() - healed)
    elif how == "proxy":
        ssh(info, old, "/srv/lab/bin/lab-service haproxy start")
    time.sleep(1)
    holder(inv)
    return took, failed


def planned_under_load(info: labmod.LabInfo, keepalive: bool) -> str:
    """A planned failover (the CLI) under 4 clients of steady load: what the load saw."""
    from clusterctl.loadgen import Load

    load_ = Load(f"http://{vip(info)}/", clients=4, duration=60, keepalive=keepalive, timeout=3)
    load_.start()
    time.sleep(1)
    cli = [str(REPO / ".venv/bin/clusterctl"), "failover", "-i", str(info.inventory_path), "lab"]
    subprocess.run(cli, check=True, capture_output=True, timeout=60)
    time.sleep(1)
    return load_.stop().summary()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="h5bench")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    labmod.down(args.name)
    rows = []
    try:
        info = labmod.up(args.name, backends=1, frontends=["haproxy", "haproxy"], vip=True)
        base = info.inventory_path.read_text()
        for advert in ("1s", "200ms"):
            text = base.replace("advert: 1s", f"advert: {advert}")
            info.inventory_path.write_text(text)
            inv = parse(text, str(info.inventory_path))
            apply(inv)
            holder(inv)
            HEALED.clear()
            for how in ("proxy", "host", "planned"):
                got = [measure(info, inv, how) for _ in range(args.rounds)]
                times = [t for t, _ in got]
                label = "planned (CLI)" if how == "planned" else how
                rows.append(
                    (advert, label, statistics.median(times), max(times), sum(f for _, f in got))
                )
            rows.append((advert, "partition healed", statistics.median(HEALED), max(HEALED), 0))
            for keepalive in (False, True):
                mode = "keep-alive" if keepalive else "Connection: close"
                LOADS.append(f"{advert} {mode}: {planned_under_load(info, keepalive)}")
                holder(inv)
        info.inventory_path.write_text(base)
        load(info.inventory_path)
    finally:
        labmod.down(args.name)
    print(f"{'advert':<7} {'master lost by':<15} {'median s':>9} {'max s':>7} {'failed GETs':>12}")
    for advert, how, med, worst, failed in rows:
        print(f"{advert:<7} {how:<15} {med:>9.2f} {worst:>7.2f} {failed:>12}")
    print("planned failover under steady load (4 clients):")
    for line in LOADS:
        print(f"  {line}")
    print(
        f"({args.rounds} rounds each; a GET every 10 ms with Connection: close; planned: the "
        "CLI end to end, its lock and SSH sessions included; partition healed: link back up "
        "until one member holds the address, asked over SSH)"
    )


if __name__ == "__main__":
    main()
