"""molecule verify (failover): every `clusterctl verify` check, and for the pair: keepalived
running on each member with the keepalived.conf clusterctl renders, the virtual address on
exactly one member, answering there, the other member BACKUP.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request

from clusterctl import lab as labmod
from clusterctl.lab.vrrp import vip
from clusterctl.model import load
from clusterctl.model.vrrp import member_of, units
from clusterctl.orchestrate import failover as fo
from clusterctl.render import render_frontend
from clusterctl.verify.checks import *  # noqa: F403


def _lab() -> labmod.LabInfo:
    return labmod.info(os.environ["CLUSTERCTL_VERIFY_LAB"])


def test_keepalived_runs_with_the_rendered_config() -> None:
    inv = load(_lab().inventory_path)
    with fo.members(inv) as ms:
        for unit in units(inv):
            member = member_of(unit.name)
            state = ms.read(member)
            assert state.instances is not None, f"{member}: keepalived is not running"
            for path, f in render_frontend(inv, unit).items():
                res = ms.remote(member).sh('sha256sum -- "$1"', path, step="verify")
                have = res.out.split()[0] if res.ok else "absent"
                assert have == hashlib.sha256(f.content).hexdigest(), f"{member}: {path} differs"


def test_the_address_is_on_exactly_one_member_and_answers() -> None:
    info = _lab()
    inv = load(info.inventory_path)
    g = inv.vrrp[0]
    with fo.members(inv) as ms:
        seen = fo.survey(ms, g)
    holders = [n for n, m in seen.items() if m.holds(g)]
    assert len(holders) == 1, {n: m.state(g) for n, m in seen.items()}
    assert seen[holders[0]].state(g) == "MASTER"
    assert all(m.state(g) == "BACKUP" for n, m in seen.items() if n != holders[0])
    with urllib.request.urlopen(f"http://{vip(info)}/", timeout=5) as resp:
        assert resp.status == 200
