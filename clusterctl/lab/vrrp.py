"""`clusterctl lab up --vip`: the lab's front ends share a virtual address on the lab bridge.

keepalived from Debian runs in each front end's namespace (lab-service keepalived), the
address is the lab subnet's .250, and the group goes into the lab's JSON and inventory like
any user's group, so `clusterctl apply` manages its keepalived.conf as it would on real hosts.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

from clusterctl.lab.types import LabError

if TYPE_CHECKING:
    from clusterctl.lab.naming import Naming
    from clusterctl.lab.types import LabHost, LabInfo
    from clusterctl.model.schema import Inventory

VIP_OFFSET = 250
GROUP = "lab"
SERVICE = "/srv/lab/bin/lab-service"


def router_id(lab: str) -> int:
    """A router id per lab (1-255): labs on one machine share no bridge, but a stable id per
    name keeps a lab's adverts recognisable in a capture."""
    return 1 + zlib.crc32(lab.encode()) % 255


def groups(naming: Naming, lab: str, frontends: list[LabHost]) -> list[dict[str, Any]]:
    if len(frontends) < 2:
        raise LabError("--vip needs two or more front ends (e.g. --frontends haproxy,haproxy)")
    return [
        {
            "name": GROUP,
            "address": f"{naming.address(VIP_OFFSET)}/{naming.subnet.prefixlen}",
            "interface": "eth0",
            "members": [h.name for h in frontends],
            "router_id": router_id(lab),
        }
    ]


def vip(info: LabInfo, group: str = GROUP) -> str:
    """The bare virtual address of a lab group."""
    for g in info.vrrp:
        if g["name"] == group:
            return str(g["address"]).split("/", 1)[0]
    raise LabError(f"lab {info.name!r} has no virtual address (bring it up with --vip)")


def vrrp_section(info: LabInfo) -> dict[str, Any]:
    """The lab inventory's vrrp section. Step-down by a probe of the member's own port 80 every
    100 ms (two refusals in a row and it steps down): track_process needs the kernel's process connector, which a network namespace other than
    the machine's own does not get (keepalived says "Failed to set/clear process event listen")."""
    if not info.vrrp:
        return {}
    return {
        "vrrp": [
            {
                **g,
                "advert": "1s",
                "track_process": False,
                "probe": {"port": 80, "path": "/", "interval": "100ms", "fall": 2, "rise": 1},
                "start": [SERVICE, "keepalived", "start"],
                "reload": [SERVICE, "keepalived", "reload"],
            }
            for g in info.vrrp
        ]
    }


def start(info: LabInfo) -> None:
    """Install each member's keepalived.conf and start keepalived, through clusterctl's own
    plan and apply of the keepalived units (the proxies keep their seed configs)."""
    from clusterctl.execute.endpoints import frontend_endpoints
    from clusterctl.execute.runner import _plan_one, execute_plan
    from clusterctl.model import load
    from clusterctl.model.vrrp import units, with_units
    from clusterctl.plan import Plan

    inv = load(info.inventory_path)
    eps = with_units(inv, frontend_endpoints(inv))
    plan = Plan(tuple(_plan_one(inv, u, eps[u.name]) for u in units(inv)))
    bad = [f"{h.host}: {h.error or '; '.join(h.refused)}" for h in plan.failed]
    results = execute_plan(inv, plan)
    bad += [f"{r.host}: {r.message}" for r in results if r.status in ("failed", "rolled back")]
    if bad:
        raise LabError("keepalived did not start: " + "; ".join(bad))


def without_probes(inv: Inventory) -> Inventory:
    """The inventory with its groups stepping down by adverts alone (no probe): for a
    partition in the lab, where the backends lie across the same bridge as the other member."""
    import dataclasses

    return dataclasses.replace(
        inv, vrrp=tuple(dataclasses.replace(g, probe=None) for g in inv.vrrp)
    )


def holders(info: LabInfo, group: str = GROUP) -> list[str]:
    """The members with the group's virtual address on an interface, read from the machine's
    side (`ip netns exec`): a member cut off from the bridge is seen too."""
    import subprocess

    from clusterctl.lab.naming import Naming

    g = next((x for x in info.vrrp if x["name"] == group), None)
    if g is None:
        raise LabError(f"lab {info.name!r} has no vrrp group {group!r}")
    out = []
    for m in g["members"]:
        argv = ["ip", "netns", "exec", Naming(info.name).netns(m), "ip", "-o", "addr", "show"]
        # A namespace that cannot be read is an error, never "holds nothing".
        run = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=10)
        if f" {g['address']} " in run.stdout:
            out.append(str(m))
    return out
