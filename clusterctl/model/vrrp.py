# ruff: noqa: RUF009  # opt()/req() wrap dataclasses.field, as in schema.py
"""Front ends in pairs (or more) sharing a virtual address by VRRP (keepalived): the inventory's
`vrrp:` section, its checks, and the keepalived units plan and apply handle per member.

A member's keepalived is modelled as one more front end (kind keepalived) on the member's
host, reached over the member's own SSH settings, so the per-host path (facts, plan, stage,
validate, swap, reload, confirm, roll back) handles it as it handles the proxies.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from clusterctl.model import checks as c
from clusterctl.model.schema import Frontend, Pos, meta, opt, req

if TYPE_CHECKING:
    from clusterctl.model.schema import Inventory

T = TypeVar("T")

# A member's keepalived unit is called MEMBER+keepalived: `+` is in no front-end name, so the
# unit's name (its state folder on the host) never collides with a front end's.
UNIT_SUFFIX = "+keepalived"
# Priorities in member order: the first member highest. Far apart, so a probe weight or a
# tracked file can never reorder them by accident.
TOP_PRIORITY = 200
PRIORITY_STEP = 50


def interface(value: Any) -> str:
    """A Linux interface name: at most 15 characters (IFNAMSIZ), no `/` or spaces."""
    return str(c.text(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}", "interface name", "eth0")(value))


def virtual_address(value: Any) -> str:
    """An address with its prefix, as it goes on the interface: 198.18.0.250/24."""
    s = c.text(r"[0-9A-Fa-f:.]{2,39}/[0-9]{1,3}", "address with prefix", "192.0.2.250/24")(value)
    try:
        iface = ipaddress.ip_interface(s)
    except ValueError:
        raise c.CheckFailed(
            f"{c.show(s)} is not an address with prefix (e.g. 192.0.2.250/24)"
        ) from None
    if (
        iface.ip == iface.network.network_address
        and iface.network.prefixlen < iface.max_prefixlen - 1
    ):
        raise c.CheckFailed(f"{s} is its network's own address; pick a host address in it")
    return str(iface)


def advert(value: Any) -> int:
    """VRRPv3 advert interval, in milliseconds: 10ms to 40950ms in steps of 10ms (centiseconds)."""
    ms = c.duration(value)
    if ms < 10 or ms > 40_950 or ms % 10:
        raise c.CheckFailed(
            f"{c.show(value)}: VRRPv3 adverts are 10ms to 40950ms in whole centiseconds (e.g. 1s, 200ms)"
        )
    return ms


def probe_interval(value: Any) -> int:
    """Seconds (a bare number, as keepalived reads a script's interval) or a duration: 1s to 60s
    in whole seconds, or 50ms to 950ms, when one run of the probe asks several times (keepalived
    2.2.7 runs a script at most once a second)."""
    if isinstance(value, float):
        raise c.CheckFailed(
            f"{value}: write a duration (e.g. {round(value * 1000)}ms) or whole seconds"
        )
    if isinstance(value, c.LongNumber) or (isinstance(value, int) and not isinstance(value, bool)):
        return int(c.integer(1, 60)(value)) * 1000
    ms = c.duration(value)
    if ms < 1000:
        if ms < 50:
            raise c.CheckFailed(f"{c.show(value)}: probes are at least 50ms apart")
        return ms
    if ms > 60_000 or ms % 1000:
        raise c.CheckFailed(
            f"{c.show(value)}: from 1s, probes are whole seconds apart, up to 60s (or 50ms-950ms)"
        )
    return ms


@dataclass(frozen=True, kw_only=True)
class Probe:
    port: int = req(c.PORT, "the member's own listener to ask (a port its services listen on)")
    path: str = opt(c.url_path, default="/", doc="URL path asked (http and https)")
    scheme: str = opt(c.choice("http", "https", "tcp"), default="http")
    interval: int = opt(
        probe_interval, default=1000, doc="time between probes: seconds, or 50ms-950ms"
    )
    fall: int = opt(c.integer(1, 20), default=2, doc="failures in a row that make it step down")
    rise: int = opt(c.integer(1, 20), default=2, doc="successes in a row that make it eligible")
    at: dict[str, Pos] = meta()


@dataclass(frozen=True, kw_only=True)
class Group:
    name: str = req(c.NAME, "the VRRP instance's name")
    address: str = req(virtual_address, "virtual address with prefix, e.g. 192.0.2.250/24")
    interface: str = req(interface, "interface the address goes on, on every member")
    members: tuple[str, ...] = req(c.names, "front-end names, two or more, in priority order")
    router_id: int = req(c.integer(1, 255), "VRRP virtual router id, unique in the cluster")
    advert: int = opt(advert, default=1000, doc="advert interval (VRRPv3: 200ms is allowed)")
    unicast: bool = opt(
        c.boolean, default=True, doc="adverts to the other members' addresses (false: multicast)"
    )
    preempt: bool = opt(
        c.boolean,
        default=False,
        doc="a higher-priority member back takes the address again (false: nopreempt)",
    )
    track_process: bool = opt(
        c.boolean,
        default=True,
        doc="step down when the member's proxy process is gone (needs the proc connector)",
    )
    probe: Probe | None = opt(None, doc="step down when the member's own listener stops answering")
    start: tuple[str, ...] | None = opt(c.argv(), doc="starts keepalived when it is not running")
    reload: tuple[str, ...] | None = opt(c.argv(), doc="reloads keepalived (default: SIGHUP)")
    at: dict[str, Pos] = meta()


def priority(group: Group, member: str) -> int:
    return TOP_PRIORITY - PRIORITY_STEP * group.members.index(member)


def groups_of(inv: Inventory, member: str) -> list[Group]:
    return [g for g in inv.vrrp if member in g.members]


def unit_name(member: str) -> str:
    return member + UNIT_SUFFIX


def member_of(unit: str) -> str:
    return unit[: -len(UNIT_SUFFIX)] if unit.endswith(UNIT_SUFFIX) else unit


def units(inv: Inventory, names: list[str] | None = None) -> list[Frontend]:
    """The keepalived unit of every member (of the named front ends only, if given)."""
    out: list[Frontend] = []
    for fe in inv.frontends:
        gs = groups_of(inv, fe.name)
        if not gs or (names is not None and fe.name not in names):
            continue
        out.append(
            dataclasses.replace(
                fe,
                name=unit_name(fe.name),
                kind="keepalived",
                version=None,
                paths=dataclasses.replace(fe.paths, config=None, tls_dir=None, pid_file=None),
                reload=gs[0].reload,
                start=gs[0].start,
                services=(),
            )
        )
    return out


def check_vrrp(inv: Inventory, add: Any) -> None:
    """The section's cross-checks; `add(obj, key, path, message)` reports one problem."""
    fronts = {fe.name: fe for fe in inv.frontends}
    names: dict[str, int] = {}
    ids: dict[int, int] = {}
    for gi, g in enumerate(inv.vrrp):
        where = f"vrrp[{gi}]"
        if g.name in names:
            add(
                g,
                "name",
                f"{where}.name",
                f"duplicate group {g.name!r} (first at [{names[g.name]}])",
            )
        names.setdefault(g.name, gi)
        if g.router_id in ids:
            add(
                g,
                "router_id",
                f"{where}.router_id",
                f"router id {g.router_id} is already used by vrrp[{ids[g.router_id]}]; "
                "each group needs its own",
            )
        ids.setdefault(g.router_id, gi)
        if len(g.members) < 2:
            add(g, "members", f"{where}.members", "a group needs two or more members")
        seen: set[str] = set()
        for m in g.members:
            if m in seen:
                add(g, "members", f"{where}.members", f"{m!r} is listed twice")
            seen.add(m)
            fe = fronts.get(m)
            if fe is None:
                add(g, "members", f"{where}.members", _not_a_frontend(m, fronts))
                continue
            if g.unicast and not _is_ip(fe.address):
                add(
                    g,
                    "unicast",
                    f"{where}.unicast",
                    f"unicast adverts go to the members' IP addresses, and {m!r} has "
                    f"{fe.address!r}; give it an IP address or set unicast: false",
                )
        _check_families(g, fronts, where, add)
        _check_probe(inv, g, where, add)


def _check_families(g: Group, fronts: dict[str, Frontend], where: str, add: Any) -> None:
    vip = ipaddress.ip_interface(g.address)
    for m in g.members:
        fe = fronts.get(m)
        if fe is None or not _is_ip(fe.address):
            continue
        own = ipaddress.ip_address(fe.address)
        if own.version != vip.version:
            add(
                g,
                "address",
                f"{where}.address",
                f"IPv{vip.version} address, but {m!r} is IPv{own.version}",
            )
        elif own == vip.ip:
            add(g, "address", f"{where}.address", f"{vip.ip} is {m!r}'s own address")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _not_a_frontend(name: str, fronts: dict[str, Frontend]) -> str:
    import difflib

    near = difflib.get_close_matches(name, list(fronts), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else f" (front ends: {', '.join(fronts)})"
    return f"{name!r} is not a front end{hint}"


def vip_problems(g: Group, member: str, addresses: tuple[tuple[str, str], ...] | None) -> list[str]:
    """Against the member's facts (interface, address/prefix pairs): the virtual address is not
    one of the host's own and lies inside the subnet of the group's interface there."""
    if addresses is None:
        return []
    vip = ipaddress.ip_interface(g.address)
    on_if = []
    for ifname, cidr in addresses:
        try:
            have = ipaddress.ip_interface(cidr)
        except ValueError:
            continue
        if ifname == g.interface:
            on_if.append(have)
    if not on_if:
        return [f"{member} has no address on interface {g.interface} (group {g.name})"]
    if any(have.network == vip.network for have in on_if):
        return []
    nets = ", ".join(str(h.network) for h in on_if)
    return [
        f"{g.address} of group {g.name} lies outside {member}'s subnet on {g.interface} ({nets})"
    ]


def own_address_problems(
    g: Group, member: str, addresses: tuple[tuple[str, str], ...] | None, holds: bool
) -> list[str]:
    """The virtual address is a host's own address (not put there by keepalived): `holds`
    says whether the member's keepalived reports it holds the address now."""
    if addresses is None or holds:
        return []
    vip = ipaddress.ip_interface(g.address).ip
    for ifname, cidr in addresses:
        try:
            if ipaddress.ip_interface(cidr).ip == vip:
                return [f"{vip} of group {g.name} is already {member}'s own address ({ifname})"]
        except ValueError:
            continue
    return []


def bound_vips(inv: Inventory, member: str) -> list[str]:
    """The virtual addresses of the member's groups that its own services listen on."""
    from clusterctl.model.queries import frontend_services

    proxy = next((f for f in inv.frontends if f.name == member), None)
    if proxy is None:
        return []
    vips = {str(ipaddress.ip_interface(g.address).ip) for g in groups_of(inv, member)}
    return sorted({ln.address for s in frontend_services(inv, proxy) for ln in s.listen} & vips)


def nonlocal_families(inv: Inventory, member: str) -> tuple[str, ...]:
    """ "ipv4"/"ipv6": the families in which the member's services bind a virtual address that
    it may not hold, so non-local binding must be on before its proxy starts on the config."""
    return tuple(sorted({f"ipv{ipaddress.ip_address(a).version}" for a in bound_vips(inv, member)}))


def virtual_addresses(inv: Inventory) -> set[str]:
    """Every group's virtual address, bare."""
    return {str(ipaddress.ip_interface(g.address).ip) for g in inv.vrrp}


def _check_probe(inv: Inventory, g: Group, where: str, add: Any) -> None:
    """A probe asks the member's own listener on the port: there must be one, and one bound
    only to the virtual address cannot be asked by a member that does not hold it."""
    from clusterctl.model.queries import frontend_services

    if g.probe is None:
        return
    port = g.probe.port
    vips = virtual_addresses(inv)
    none: list[str] = []
    only_vip: list[str] = []
    seen: set[str] = set()
    for fe in inv.frontends:
        if fe.name in g.members:
            on_port = {
                ln.address for s in frontend_services(inv, fe) for ln in s.listen if ln.port == port
            }
            if not on_port:
                none.append(fe.name)
            elif on_port <= vips:
                only_vip.append(fe.name)
                seen |= on_port
    if none:
        add(
            g.probe,
            "port",
            f"{where}.probe.port",
            f"{', '.join(none)} {'has' if len(none) == 1 else 'have'} no service listening on "
            f"port {port}: the probe would never pass",
        )
    if only_vip:
        add(
            g.probe,
            "port",
            f"{where}.probe.port",
            f"{', '.join(only_vip)} {'listens' if len(only_vip) == 1 else 'listen'} on port "
            f"{port} only at virtual addresses ({', '.join(sorted(seen))}), "
            "which a member that does not hold them cannot ask; add a listener on '*' or "
            "127.0.0.1 at that port, or probe another",
        )


__all__ = ["Group", "Probe", "check_vrrp", "groups_of", "priority", "units"]


def with_units(inv: Inventory, by_host: dict[str, T]) -> dict[str, T]:
    """A per-front-end map (SSH endpoints) with each keepalived unit given its member's."""
    return by_host | {
        u.name: by_host[member_of(u.name)] for u in units(inv) if member_of(u.name) in by_host
    }
