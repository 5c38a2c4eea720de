"""Apache's balancer-manager as data: its page, its POSTs, and the member lines Apache renders.

Every request is one curl run on the host to 127.0.0.1:admin_port. The host's token goes as a
header from its root-only file (`-H @file`; curl sends none when it cannot read it, and the
manager refuses), a form goes on standard input (`--data-binary @-`), and since 2.4.41 a POST
needs a Referer naming the manager itself. New members take slots the balancer reserved
(`growth`); Apache cannot delete a member at run time, so a removed one is disabled.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from dataclasses import dataclass

from clusterctl.drivers.control import (
    ALL_CHANGES,
    AdminState,
    Change,
    Command,
    ControlRefused,
    Health,
    Live,
    Member,
    PoolMembers,
    ServerView,
    ViewState,
)
from clusterctl.model.queries import host_port

# Free member slots each balancer reserves for members added at run time (ProxySet growth).
GROWTH = 8

_ROW = re.compile(
    r'<td><a href="/balancer-manager\?b=(?P<b>[^&"]+)&amp;w=(?P<w>[^&"]+)&amp;nonce=(?P<n>[^"&]+)">'
    r"[^<]*</a></td><td>(?P<route>[^<]*)</td><td>[^<]*</td><td>(?P<factor>[^<]*)</td><td>[^<]*</td>"
    r"<td>(?P<status>[^<]*)</td><td>[^<]*</td><td>(?P<busy>\d+)</td>"
)
_BALANCER = re.compile(
    r'<a href="/balancer-manager\?b=(?P<b>[^&"]+)&amp;nonce=(?P<n>[^"&]+)">balancer://[^<]*</a>'
    r".*?<td>(?P<max>\d+) \[(?P<used>\d+) Used\]</td>",
    re.S,
)


@dataclass(frozen=True)
class ApacheWorker:
    balancer: str
    url: str
    nonce: str
    route: str
    status: str
    busy: int
    factor: str = ""


def parse_balancer_manager(text: str) -> list[ApacheWorker]:
    return [
        ApacheWorker(
            html.unescape(m["b"]),
            html.unescape(m["w"]),
            m["n"],
            m["route"].strip(),
            m["status"].strip(),
            int(m["busy"]),
            m["factor"].strip(),
        )
        for m in _ROW.finditer(text)
    ]


def _weight(factor: str) -> int | None:
    try:
        return round(float(factor))
    except ValueError:
        return None


def apache_view(fe_name: str, workers: list[ApacheWorker]) -> list[ServerView]:
    out = []
    for w in workers:
        flags = w.status.split()
        state: ViewState = "maint" if "Dis" in flags else "drain" if "Drn" in flags else "ready"
        health: Health = "down" if any(f in flags for f in ("Err", "HcFl")) else "up"
        out.append(ServerView(fe_name, w.balancer, w.route, state, health, w.busy))
    return out


def free_slots(text: str) -> dict[str, int]:
    """Each balancer's member slots still free for members added at run time."""
    return {html.unescape(m["b"]): int(m["max"]) - int(m["used"]) for m in _BALANCER.finditer(text)}


def live_view(fe_name: str, outputs: list[str]) -> Live:
    text = outputs[0] if outputs else ""
    workers = parse_balancer_manager(text)
    tokens: dict[str, str] = {}
    for w in workers:
        tokens[f"nonce:{w.balancer}"] = w.nonce
        tokens[f"url:{w.balancer}/{w.route}"] = w.url
    for m in _BALANCER.finditer(text):
        tokens[f"nonce:{html.unescape(m['b'])}"] = m["n"]
    for pool, n in free_slots(text).items():
        tokens[f"free:{pool}"] = str(n)
    return Live(tuple(apache_view(fe_name, workers)), tokens)


def manager_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/balancer-manager"


def read_command(port: int, header_file: str) -> Command:
    url = manager_url(port)
    # The Referer only keeps Apache from logging every poll as cross-site (AH10187).
    argv = ("curl", "-fsS", "--max-time", "5", "-H", f"@{header_file}", "-H", f"Referer: {url}")
    return Command((*argv, "--", url), what="read balancer-manager")


def post(port: int, header_file: str, form: dict[str, str], what: str) -> Command:
    url = manager_url(port)
    argv = (
        "curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}",
        "-H", f"@{header_file}", "-H", f"Referer: {url}", "--data-binary", "@-", "--", url,
    )  # fmt: skip
    return Command(argv, stdin=urllib.parse.urlencode(form).encode(), what=what)


# balancer-manager status flags per admin state: N drain (only sticky sessions of its own),
# D disabled (no request at all; sticky clients go to another member).
FLAGS: dict[str, tuple[str, str]] = {"ready": ("0", "0"), "drain": ("1", "0"), "maint": ("1", "1")}

# The member line's health-check keys and the manager's names for them.
_HC = {"hcmethod": "w_hm", "hcuri": "w_hu", "hcexpr": "w_he", "hcpasses": "w_hp", "hcfails": "w_hf"}


def _member_form(ch: Change) -> dict[str, str]:
    opts = dict(o.split("=", 1) for o in ch.options if "=" in o)
    form = {"w_wr": ch.server, "w_lf": str(ch.weight or 1)}
    form["w_status_H"] = "1" if "H" in opts.get("status", "") else "0"
    for key, field in _HC.items():
        if key in opts:
            form[field] = opts[key]
    if "hcinterval" in opts:
        form["w_hi"] = opts["hcinterval"] + "s"  # the manager reads a bare number as ms
    return form


def change_commands(
    port: int, header_file: str, live: Live, changes: list[Change]
) -> list[Command]:
    out: list[Command] = []
    for ch in changes:
        nonce = live.tokens.get(f"nonce:{ch.pool}")
        if nonce is None:
            raise ControlRefused(f"balancer-manager lists no balancer {ch.pool}")
        url = live.tokens.get(f"url:{ch.pool}/{ch.server}")
        base = {"b": ch.pool, "nonce": nonce}
        if ch.kind == "add":
            new = f"http://{host_port(ch.address, ch.port)}"
            if url is None:  # a member removed earlier is still there, disabled: reuse it
                if int(live.tokens.get(f"free:{ch.pool}", "0")) < 1:
                    raise ControlRefused(f"balancer {ch.pool} has no free member slot left")
                add = {**base, "b_nwrkr": new, "b_wyes": "1"}
                out.append(post(port, header_file, add, f"add {ch.pool}/{ch.server}"))
            elif url != new:
                raise ControlRefused(f"{ch.pool}/{ch.server} runs at {url}, not {new}")
            drain, disabled = FLAGS[ch.state or "ready"]
            form = {**base, "w": new, **_member_form(ch), "w_status_N": drain}
            form["w_status_D"] = disabled  # new members start disabled: this enables it
            out.append(post(port, header_file, form, f"set up {ch.pool}/{ch.server}"))
            continue
        if url is None:
            raise ControlRefused(f"balancer-manager lists no member with route {ch.server}")
        if ch.kind == "weight":
            form = {**base, "w": url, "w_lf": str(ch.weight)}
        else:
            # Both flags every time: restoring a member clears a drain and a disable alike.
            # A removed member is disabled: Apache keeps it until its next restart.
            drain, disabled = FLAGS["maint" if ch.kind == "remove" else ch.state or "ready"]
            form = {**base, "w": url, "w_status_N": drain, "w_status_D": disabled}
        out.append(post(port, header_file, form, ch.describe()))
    return out


def check_answers(fe_name: str, outputs: list[str]) -> None:
    for out in outputs:
        code = out.strip()
        if code not in ("200", "302"):
            raise ControlRefused(f"{fe_name}: balancer-manager refused: HTTP {code or '?'}")


# ---------------------------------------------------------------------------- the config file

_PROXY = re.compile(r'^<Proxy "balancer://([^"]+)">$')
_MEMBER = re.compile(r'^    BalancerMember "http://(\[[^\]]+\]|[^":]+):(\d+)"((?: \S+)*)$')


def _member(pool: str, m: re.Match[str]) -> Member:
    opts: list[str] = []
    route, weight, state = "", 1, "ready"
    for word in m[3].split():
        key, _, value = word.partition("=")
        if key == "route":
            route = value
        elif key == "loadfactor":
            weight = int(value)
        elif key == "status":
            flags = value.lstrip("+")
            state = "maint" if "D" in flags else "drain" if "N" in flags else "ready"
            rest = flags.replace("N", "").replace("D", "")
            if rest:
                opts.append(f"status=+{rest}")
        else:
            opts.append(word)
    admin: AdminState = "maint" if state == "maint" else "drain" if state == "drain" else "ready"
    return Member(pool, route, m[1].strip("[]"), int(m[2]), admin, weight, tuple(opts), m[0])


def parse_members(text: str) -> tuple[dict[str, PoolMembers], str]:
    """Each balancer's members in an apache2.conf clusterctl rendered, and the text without them."""
    pools: dict[str, PoolMembers] = {}
    masked: list[str] = []
    pool = ""
    members: list[Member] = []
    for line in text.split("\n"):
        head = _PROXY.match(line)
        if head:
            pool, members = head[1], []
        elif line == "</Proxy>" and pool:
            pools[pool] = PoolMembers(pool, tuple(members), ALL_CHANGES)
            pool = ""
        member = _MEMBER.match(line) if pool else None
        if member:
            if not members:
                masked.append(f"    # members of {pool}")
            members.append(_member(pool, member))
            continue
        masked.append(line)
    return pools, "\n".join(masked)
