"""Takeover time of a keepalived pair at advert 1 s and 200 ms, in the lab.

One lab (`clusterctl lab up NAME --frontends haproxy,haproxy --vip`), applied; for each advert
interval the group is re-applied with it, then for each way of losing the master, under wrk
through the virtual address (4 connections, Connection: close and again keep-alive):
- proxy: the master's HAProxy is killed (the probe script, every 100 ms, sees its listener
  gone; the lab cannot use track_process: a namespace gets no process connector);
- host: the master's keepalived and HAProxy are killed and its link to the bridge goes down:
  no goodbye advert, so the backup waits out the master-down interval (3 adverts + skew);
- link: only the master's link goes down (its keepalived sees the carrier gone: FAULT);
- planned: `clusterctl failover` (the hold file) moves the address;
a GET every 10 ms through the virtual address measures the window from the event until the
first answer from the other member. wrk runs three times: the second before the event, the
window, and the second after it; its errors outside the window should be 0. Everything is
put back after each round. Then a partition: the group re-applied without its probe (its
backends are across the bridge too), the holder's link taken off the bridge but left up, so
both members are MASTER; the time from putting it back until exactly one member holds the
address (read in the namespaces every 20 ms) is "partition healed". Prints one table; tears
the lab down whatever happens.

Usage: sudo .venv/bin/python bench/failover.py [--name h5bench] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clusterctl import lab as labmod  # noqa: E402
from clusterctl.execute.runner import execute_plan, make_plan  # noqa: E402
from clusterctl.lab.vrrp import vip  # noqa: E402
from clusterctl.model import load, parse  # noqa: E402
from clusterctl.model.schema import Inventory  # noqa: E402
from clusterctl.orchestrate import failover as fo  # noqa: E402
from tests.helpers.wrk import Wrk  # noqa: E402
from tests.helpers.wrk import parse as parse_wrk  # noqa: E402

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


def veth(info: labmod.LabInfo, host: str, state: str) -> None:
    from clusterctl.lab.naming import Naming

    name = Naming(info.name).veth(host)
    subprocess.run(["ip", "link", "set", name, state], check=True, timeout=10)


def in_netns(info: labmod.LabInfo, host: str, *argv: str) -> None:
    """A command in the host's namespace from the machine's side (its link may be down)."""
    from clusterctl.lab.naming import Naming

    ns = Naming(info.name).netns(host)
    subprocess.run(["ip", "netns", "exec", ns, *argv], check=False, timeout=30)


def healed(info: labmod.LabInfo, inv: Inventory, rounds: int) -> list[float]:
    """Seconds from a partition's end until exactly one member holds the address, per round
    (the group without its probe, so only adverts decide; put back afterwards)."""
    from clusterctl.lab.naming import Naming
    from clusterctl.lab.vrrp import holders, without_probes

    quiet = without_probes(inv)
    apply(quiet)
    naming = Naming(info.name)
    took = []
    for _ in range(rounds):
        old = holder(quiet)
        subprocess.run(["ip", "link", "set", naming.veth(old), "nomaster"], check=True, timeout=10)
        try:
            wait_for(lambda: len(holders(info)) == 2, "both members MASTER")
        finally:
            argv = ["ip", "link", "set", naming.veth(old), "master", naming.bridge]
            subprocess.run(argv, check=True, timeout=10)
        mended = time.monotonic()
        wait_for(lambda: len(holders(info)) == 1, "one holder", every=0.02)
        took.append(time.monotonic() - mended)
        holder(quiet)
    apply(inv)
    holder(inv)
    return took


def wait_for(done: Callable[[], bool], what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + 30
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"no {what} within 30 s")
        time.sleep(every)


def ssh(info: labmod.LabInfo, host: str, line: str) -> str:
    run = subprocess.run(info.ssh_argv(host, line), check=True, capture_output=True, timeout=30)
    return run.stdout.decode()


def killed_at(info: labmod.LabInfo, host: str, line: str) -> float:
    """Run `line` on the host, which kills something: the host's clock just before the kill
    (one kernel, one clock), so the window leaves out the SSH set-up."""
    return float(ssh(info, host, "date +%s.%N; " + line).split()[0])


def wrk_start(url: str, keepalive: bool) -> subprocess.Popen[str]:
    """wrk through the address, 4 connections, until stopped (bounded by -d)."""
    argv = ["wrk", "-t1", "-c4", "-d60s", "--timeout", "5s"]
    if not keepalive:
        argv += ["-H", "Connection: close"]
    p = subprocess.Popen([*argv, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.05)  # its SIGINT handler is set: a stop prints what it counted
    return p


def wrk_stop(p: subprocess.Popen[str]) -> Wrk:
    p.send_signal(signal.SIGINT)  # wrk stops and prints what it counted
    try:
        text, _ = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        text, _ = p.communicate()
    if "unable to connect" in text:  # wrk gives up when its first connect is refused
        return Wrk(0, 1, 0, text)
    if "requests in" not in text:
        raise SystemExit(f"wrk {p.args!r} exited {p.returncode} and printed: {text!r}")
    return parse_wrk(text)


@dataclass
class Round:
    took: float  # event until the other member answers through the address
    probe_failed: int  # failed GETs of the 10 ms prober in that window
    inside: Wrk  # wrk from the event until the other member answered
    outside: int  # wrk's errors in the second before the event and the second after


def measure(info: labmod.LabInfo, inv: Inventory, how: str, keepalive: bool) -> Round:
    """One event under wrk: the window until the address answers from the other member, what
    a GET every 10 ms saw in it, and wrk's counts before, inside and after it."""
    old = holder(inv)
    address = vip(info)
    url = f"http://{address}/"
    before = wrk_start(url, keepalive)
    time.sleep(1)
    inside = wrk_start(url, keepalive)
    pre = wrk_stop(before)
    event = time.time()
    if how == "proxy":
        event = killed_at(info, old, "kill -KILL $(cat /run/haproxy.pid)")
    elif how == "host":  # keepalived and the proxy killed, no goodbye advert, the link gone
        # The VRRP child first, its parent held: a parent's death would stop the child gently
        # (a goodbye advert), and a running parent would start a new child.
        event = killed_at(
            info,
            old,
            "p=$(cat /run/keepalived.pid); kill -STOP $p; "
            "kill -KILL $(cat /run/keepalived_vrrp.pid) $p $(cat /run/haproxy.pid)",
        )
        veth(info, old, "down")
    elif how == "link":
        veth(info, old, "down")
    else:
        cli = subprocess.Popen(  # the CLI as a user runs it, in the background while we poll
            [str(REPO / ".venv/bin/clusterctl"), "failover", "-i", str(info.inventory_path), "lab"],
            stdout=subprocess.DEVNULL,
        )
    failed = 0
    answered = event + 30
    while time.time() < event + 30:
        if ask(address):
            answered = time.time()
            if how != "planned":  # the old master's proxy is dead or cut off: the other
                break
            with fo.members(inv) as ms:  # the old master answers until the move
                if not ms.read(old).holds(inv.vrrp[0]):
                    break
        else:
            failed += 1
        time.sleep(0.01)
    took = answered - event
    after = wrk_start(url, keepalive)
    during = wrk_stop(inside)
    time.sleep(1)
    post = wrk_stop(after)
    if how == "host":  # back as after a reboot: no stale address, then keepalived and proxy
        g = inv.vrrp[0]
        in_netns(info, old, "ip", "addr", "del", g.address, "dev", g.interface)
        veth(info, old, "up")
        ssh(info, old, "/srv/lab/bin/lab-service keepalived start")
        ssh(info, old, "/srv/lab/bin/lab-service haproxy start")
    elif how == "link":
        veth(info, old, "up")
    elif how == "proxy":
        ssh(info, old, "/srv/lab/bin/lab-service haproxy start")
    elif cli.wait(timeout=60) != 0:
        raise SystemExit(f"clusterctl failover exited {cli.returncode}")
    time.sleep(1)
    holder(inv)
    return Round(took, failed, during, pre.errors + post.errors)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="h5bench")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--events", default="proxy,host,link,planned")
    args = ap.parse_args()
    labmod.down(args.name)
    rows: list[tuple[str, str, bool, list[Round]]] = []
    heals: dict[str, list[float]] = {}
    try:
        info = labmod.up(args.name, backends=1, frontends=["haproxy", "haproxy"], vip=True)
        base = info.inventory_path.read_text()
        for advert in ("1s", "200ms"):
            text = base.replace("advert: 1s", f"advert: {advert}")
            info.inventory_path.write_text(text)
            inv = parse(text, str(info.inventory_path))
            apply(inv)
            holder(inv)
            for how in args.events.split(","):
                for keepalive in (False, True):
                    got = [measure(info, inv, how, keepalive) for _ in range(args.rounds)]
                    rows.append((advert, how, keepalive, got))
            heals[advert] = healed(info, inv, args.rounds)
        info.inventory_path.write_text(base)
        load(info.inventory_path)
    finally:
        labmod.down(args.name)
    print(
        f"{'advert':<7} {'master lost by':<15} {'wrk mode':<18} {'median s':>9} {'max s':>7}"
        f" {'wrk errors in window (a round)':>31} {'outside':>8} {'requests':>9}"
    )
    for advert, how, keepalive, got in rows:
        times = [r.took for r in got]
        mode = "keep-alive" if keepalive else "Connection: close"
        errors = f"{sum(r.inside.errors for r in got)} (max {max(r.inside.errors for r in got)})"
        print(
            f"{advert:<7} {how:<15} {mode:<18} {statistics.median(times):>9.2f} "
            f"{max(times):>7.2f} {errors:>31} {sum(r.outside for r in got):>8} "
            f"{sum(r.inside.requests for r in got):>9}"
        )
    for advert, took in heals.items():
        med, worst = statistics.median(took), max(took)
        print(f"{advert:<7} {'partition healed':<15} {'-':<18} {med:>9.2f} {worst:>7.2f}")
    print(
        f"({args.rounds} rounds each; window: from the event until a GET (every 10 ms, "
        "Connection: close) is answered by the other member; wrk: 4 connections, never "
        "resending; errors are wrk's socket errors (a refused connect is one) and non-2xx, "
        "'outside' counts them in the second before the event and the second after the "
        "window; requests: wrk's completed requests inside the windows; host: keepalived and "
        "HAProxy killed and the link cut; link: the master's link cut; "
        "partition healed: from the link back on the bridge until one member holds it; planned: the CLI end to end, its "
        "lock and SSH sessions included)"
    )


if __name__ == "__main__":
    main()
