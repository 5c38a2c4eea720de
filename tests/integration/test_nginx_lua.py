"""nginx's Lua balancer on a real nginx (Debian's libnginx-mod-http-lua) before real backends.

One nginx, three backends and a backup, shared by the module. Member changes go through the
commands the driver builds (curl on the control socket), and nginx's master and workers must
keep their pids: nothing here reloads.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clusterctl import lab as labmod
from clusterctl.drivers import driver_for
from clusterctl.drivers import nginx_lua as nl
from clusterctl.drivers.control import Change, Command, ControlRefused, Live, ServerView
from clusterctl.localcheck import check_frontend
from clusterctl.model import load
from tests.helpers.backends import HttpBackend
from tests.helpers.frontends import RunningFrontend, free_port, have, launch, short_root
from tests.helpers.http import request
from tests.helpers.wrk import WrkLoad
from tests.integration.labfixtures import Lab as LabHosts
from tests.integration.labfixtures import cli, own_lab, server

pytestmark = pytest.mark.servers
LUA = all(Path(p).exists() for p in nl.PROBE_FILES)


@dataclass
class Lab:
    port: int
    root: Path
    backends: dict[str, HttpBackend]
    inv_path: Path
    front: RunningFrontend

    def master(self) -> int:
        return int((self.root / "run/nginx.pid").read_text().split()[0])

    def restart(self) -> None:
        """Stop nginx and start it again on the same files (as after a reboot)."""
        self.front.stop()
        inv = load(self.inv_path)
        self.front = launch(inv, inv.frontends[0], self.root, [self.port])

    def run(self, cmd: Command) -> str:
        # The host's paths are under this lab's root (the socket, the saved states).
        argv = [f"{self.root}{a}" if a.startswith(nl.SOCKET_DIR + "/") else a for a in cmd.argv]
        res = subprocess.run(argv, input=cmd.stdin, capture_output=True, timeout=10, check=False)
        return res.stdout.decode()

    @property
    def sock(self) -> str:
        return f"{self.root}{nl.SOCKET}"

    def change(self, *changes: Change) -> None:
        """As clusterctl makes them: the changes, then what saves them for the next start."""
        driver = driver_for("nginx")
        fe = load(self.inv_path).frontends[0]
        live = self.views_live()
        cmds = driver.change_commands(fe, live, list(changes))
        outs = [self.run(c) for c in cmds]
        driver.check_change(fe, list(changes), outs)
        for cmd in driver.persist_commands(fe):
            self.run(cmd)

    def views_live(self) -> Live:
        driver = driver_for("nginx")
        fe = load(self.inv_path).frontends[0]
        return driver.parse_live(fe, [self.run(c) for c in driver.read_commands(fe)])

    def views(self) -> dict[str, ServerView]:
        return {f"{v.pool}/{v.server}": v for v in self.views_live().views}

    def pids(self) -> set[int]:
        master = self.master()
        kids = subprocess.run(
            ["pgrep", "-P", str(master)], capture_output=True, text=True, check=False
        ).stdout.split()
        return {master, *map(int, kids)}


def inventory_text(backends: dict[str, HttpBackend], port: int, sticky: bool) -> str:
    lines = "".join(
        f"      - {{name: {b.name}, address: {b.address}, port: {b.port}"
        f"{', backup: true' if b.name == 'bk' else ''}}}\n"
        for b in backends.values()
    )
    return f"""\
cluster: lua-test
frontends:
  - {{name: fe-nginx, kind: nginx, address: 127.0.0.1}}
pools:
  - name: app
{"    sticky: {cookie: SRVID}" if sticky else ""}
    health: {{max_fails: 1, fail_timeout: 3s}}
    servers:
{lines}\
services:
  - name: web
    listen: [{{address: 127.0.0.1, port: {port}}}]
    default_pool: app
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if not have("nginx") or not LUA:
        pytest.fail(f"needs nginx and {nl.PACKAGE} (scripts/setup.sh installs both)")
    work = tmp_path_factory.mktemp("lua")
    with ExitStack() as stack:
        backends = {}
        for i, name in enumerate(("b1", "b2", "b3", "bk")):
            backends[name] = HttpBackend(name, f"127.0.2.{i + 2}").start()
            stack.callback(backends[name].stop)
        port = free_port()
        path = work / "inventory.yaml"
        path.write_text(inventory_text(backends, port, sticky=True))
        inv = load(path)
        root = short_root("cc-lua-")
        stack.callback(shutil.rmtree, root, True)
        lab = Lab(port, root, backends, path, launch(inv, inv.frontends[0], root, [port]))
        stack.callback(lambda: lab.front.stop())
        yield lab


def get(lab: Lab, cookie: str | None = None) -> tuple[str | None, str | None]:
    r = request(lab.port, "/", cookies={"SRVID": cookie} if cookie else None)
    assert r.status == 200, r.status
    return r.backend, r.cookies().get("SRVID")


def test_the_rendered_lua_config_and_the_fallback_pass_nginx_t(lab: Lab) -> None:
    inv = load(lab.inv_path)
    fe = inv.frontends[0]
    assert check_frontend(inv, fe).ok
    # A host without the module: today's upstream blocks, no Lua at all.
    bare = dataclasses.replace(fe, present=())
    result = check_frontend(inv, bare)
    assert result.ok, result.output


def test_only_root_reaches_the_control_socket(lab: Lab) -> None:
    folder = Path(lab.sock).parent
    st = folder.stat()
    assert (st.st_mode & 0o777, st.st_uid) == (0o700, 0)  # nginx's master made it root-only
    (read,) = driver_for("nginx").read_commands(load(lab.inv_path).frontends[0])
    argv = [lab.sock if a == nl.SOCKET else a for a in read.argv]
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    res = subprocess.run(nobody, capture_output=True, text=True, timeout=10, check=False)
    assert res.returncode != 0 and "pools" not in res.stdout, res
    assert '"pools"' in lab.run(read)  # root is answered


def test_fresh_clients_spread_over_the_primaries_and_are_told_their_server(lab: Lab) -> None:
    seen = {}
    for _ in range(30):
        backend, cookie = get(lab)
        assert cookie == f".{backend}"
        seen[backend] = seen.get(backend, 0) + 1
    assert set(seen) == {"b1", "b2", "b3"}  # never the backup while a primary is usable
    views = lab.views()
    assert {k: (v.state, v.health, v.sessions) for k, v in views.items()} == {
        "app/b1": ("ready", "up", 0),
        "app/b2": ("ready", "up", 0),
        "app/b3": ("ready", "up", 0),
        "app/bk": ("ready", "up", 0),
    }


def test_drain_keeps_pinned_clients_and_sends_new_ones_elsewhere(lab: Lab) -> None:
    before = lab.pids()
    lab.change(Change("state", "app", "b1", state="drain"))
    try:
        assert lab.views()["app/b1"].state == "drain"
        assert {get(lab, ".b1")[0] for _ in range(5)} == {"b1"}  # pinned: stays
        assert "b1" not in {get(lab)[0] for _ in range(20)}  # new sessions avoid it
        lab.change(Change("state", "app", "b1", state="maint"))
        backend, cookie = get(lab, ".b1")  # maint: the pinned client moves and is re-pinned
        assert backend != "b1" and cookie == f".{backend}"
    finally:
        lab.change(Change("state", "app", "b1", state="ready"))
    assert "b1" in {get(lab)[0] for _ in range(12)}
    assert lab.pids() == before


def test_backups_serve_sticky_clients_only_when_no_primary_is_usable(lab: Lab) -> None:
    for name in ("b1", "b2", "b3"):
        lab.change(Change("state", "app", name, state="maint"))
    try:
        backend, cookie = get(lab, ".b2")
        assert (backend, cookie) == ("bk", ".bk")
        assert get(lab, ".bk")[0] == "bk"
    finally:
        for name in ("b1", "b2", "b3"):
            lab.change(Change("state", "app", name, state="ready"))
    # A primary is back: fresh clients go there, and the client pinned to the backup stays.
    assert "bk" not in {get(lab)[0] for _ in range(12)}
    assert get(lab, ".bk")[0] == "bk"


def test_weight_add_and_remove_at_run_time(lab: Lab) -> None:
    before = lab.pids()
    extra = HttpBackend("b4", "127.0.2.9").start()
    try:
        lab.change(
            Change(
                "add", "app", "b4", state="ready", weight=3, address=extra.address, port=extra.port
            )
        )
        assert lab.views()["app/b4"].weight == 3
        hits = [get(lab)[0] for _ in range(30)]
        # Weighted round robin: b4 (3) gets half of 1 + 1 + 1 + 3.
        assert hits.count("b4") == 15, hits
        lab.change(Change("weight", "app", "b4", weight=1))
        assert [get(lab)[0] for _ in range(12)].count("b4") == 3
        lab.change(Change("remove", "app", "b4"))
        assert "app/b4" not in lab.views()
        assert "b4" not in {get(lab)[0] for _ in range(12)}
    finally:
        extra.stop()
    assert lab.pids() == before


def test_a_refused_change_says_why_in_the_servers_words(lab: Lab) -> None:
    with pytest.raises(ControlRefused, match="no server app/nope"):
        lab.change(Change("state", "app", "nope", state="drain"))


def test_requests_in_flight_and_passive_health_are_real(lab: Lab) -> None:
    # A slow request holds b-something for a second: the state shows it in flight.
    got: list[str | None] = []
    t = threading.Thread(
        target=lambda: got.append(
            request(lab.port, "/slow?ms=1500", cookies={"SRVID": ".b3"}).backend
        )
    )
    t.start()
    deadline = time.monotonic() + 5
    while lab.views()["app/b3"].sessions != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lab.views()["app/b3"].sessions == 1
    t.join()
    assert got == ["b3"]
    assert lab.views()["app/b3"].sessions == 0
    # A stopped backend fails a try (max_fails 1): down for fail_timeout, and no client sees it.
    lab.backends["b2"].stop()
    try:
        assert all(get(lab)[0] != "b2" for _ in range(6))
        assert lab.views()["app/b2"].health == "down"
    finally:
        lab.backends["b2"].start()


def test_no_usable_server_is_the_unavailable_page(lab: Lab) -> None:
    names = ("b1", "b2", "b3", "bk")
    for name in names:
        lab.change(Change("state", "app", name, state="maint"))
    try:
        r = request(lab.port, "/")
        assert r.status == 503 and b"Service Unavailable" in r.body
    finally:
        for name in names:
            lab.change(Change("state", "app", name, state="ready"))
    assert get(lab)[0] in {"b1", "b2", "b3"}


def test_a_reload_and_a_restart_keep_runtime_states_the_file_did_not_change(lab: Lab) -> None:
    lab.change(Change("state", "app", "b3", state="drain"))
    saved = Path(f"{lab.root}{nl.SAVED}")
    assert "app\tb3\tdrain\tready\n" in saved.read_text()
    master = lab.master()
    old = lab.pids() - {master}
    subprocess.run(["kill", "-HUP", str(master)], check=True)
    deadline = time.monotonic() + 10
    while lab.pids() & old and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not lab.pids() & old and lab.master() == master  # new workers: it did reload
    assert lab.views()["app/b3"].state == "drain"  # the file did not change b3: runtime stays
    # A restart (a reboot) starts a new dict: the saved state comes back, as HAProxy's
    # server-state file does for it.
    lab.restart()
    assert lab.master() != master
    assert lab.views()["app/b3"].state == "drain"
    assert "b3" not in {get(lab)[0] for _ in range(6)}
    # nginx.conf saying otherwise for b3 wins, and the save follows it: back to ready in the
    # file, b3 is ready after the next start too, never the old drain revived.
    text = lab.inv_path.read_text()
    lab.inv_path.write_text(text.replace("name: b3, ", "name: b3, state: maint, "))
    lab.restart()
    assert lab.views()["app/b3"].state == "maint"
    lab.inv_path.write_text(text)
    lab.restart()
    assert lab.views()["app/b3"].state == "ready"
    assert "b3" in {get(lab)[0] for _ in range(6)}


# ------------------------------------------------------------------------------ the lab
# One lab (nginx before four backends; the fourth joins and leaves the pool), applied once.
# wrk is the client: it never resends, so a cut keep-alive connection is a socket error.

LAB = "tnl"
LAB_TEST = pytest.mark.lab
WRK_MAX = 90  # seconds: wrk is stopped (SIGINT, it prints its counts) once the change is done


@dataclass
class LabRig:
    lab: LabHosts
    url: str
    fe: str
    work: Path

    def inventory(self, change: Any = None) -> Path:
        inv = labmod.lab_inventory(self.lab.info)
        servers = [server(self.lab.info, n) for n in ("be1", "be2", "be3")]
        inv["pools"][0]["servers"] = servers
        if change is not None:
            change(servers, self.lab.info)
        return self.lab.write(inv)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRig]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces)")
    work = tmp_path_factory.mktemp("lualab")
    with own_lab(LAB, work, frontends=["nginx"], backends=4) as lab:
        fe = lab.frontends[0]
        r = LabRig(lab, fe.url, fe.name, work)
        run = cli("apply", "-i", str(r.inventory()), "--yes")
        assert run.rc == 0, run
        yield r


def http_get(url: str, cookie: str = "") -> tuple[str, str]:
    """The backend that answered and the sticky cookie the front end set ("" if none)."""
    req = urllib.request.Request(url, headers={"Cookie": f"SRVID={cookie}"} if cookie else {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()
        set_cookie = [c for c in resp.headers.get_all("Set-Cookie") or [] if "SRVID=" in c]
        value = set_cookie[0].split("SRVID=", 1)[1].split(";", 1)[0] if set_cookie else ""
        return resp.headers.get("X-Backend", ""), value


def pin(url: str, node: str) -> str:
    """A sticky cookie value that pins a client to `node` (fresh clients are spread evenly)."""
    for _ in range(12):
        backend, cookie = http_get(url)
        if backend == node:
            assert cookie == f".{node}"
            return cookie
    raise AssertionError(f"no fresh client was placed on {node}")


@LAB_TEST
def test_lab_status_shows_real_sessions_and_health(rig: LabRig) -> None:
    run = cli("status", "-i", str(rig.lab.inventory))
    assert run.rc == 0, run
    for node in ("be1", "be2", "be3"):
        assert f"{rig.fe} app/{node}: ready, health up, 0 sessions" in run.out, run
    # On the host as on any: the socket's folder is root's alone (0700), the socket is there.
    where = rig.lab.ssh(rig.fe, f"stat -c '%a %U' {nl.SOCKET_DIR}; test -S {nl.SOCKET}")
    assert where.out.split() == ["700", "root"], where


@LAB_TEST
def test_lab_rollout_through_nginx_under_wrk_fails_nothing_and_never_reloads(rig: LabRig) -> None:
    before = {rig.fe: rig.lab.pids(rig.fe)}
    inv = str(rig.lab.inventory)
    pinned = pin(rig.url, "be2")
    load = WrkLoad({rig.fe: rig.url}, rig.work, connections=4, max_seconds=WRK_MAX)
    try:
        run = cli("rollout", "-i", inv, "--version", "1.1.0")
        drained = cli("drain", "-i", inv, "be2")
        during = cli("status", "-i", inv).out
        # Drained: the client pinned to be2 stays there, new clients go elsewhere.
        kept = {http_get(rig.url, cookie=pinned)[0] for _ in range(4)}
        fresh = {http_get(rig.url)[0] for _ in range(9)}
        restored = cli("restore", "-i", inv, "be2")
    finally:
        counts = list(load.stop()[rig.fe].values())  # GET, POST
    assert run.rc == 0, run
    assert "rolled out 1.1.0 to be1, be2, be3" in run.out
    assert drained.rc == 0 and restored.rc == 0, (drained, restored)
    assert f"{rig.fe} app/be2: drain, health up" in during, during
    assert kept == {"be2"} and "be2" not in fresh, (kept, fresh)
    for w in counts:
        assert w.requests > 100 and (w.socket_errors, w.non_2xx) == (0, 0), w.text
    assert rig.lab.not_reloaded(before) == {}
    print(f"rollout under wrk: {[w.requests for w in counts]} requests (GET, POST), 0 errors")


def _drain_be1(servers: list[dict[str, Any]], info: Any) -> None:
    servers[0]["state"] = "drain"


def _add_be4(servers: list[dict[str, Any]], info: Any) -> None:
    servers.append(server(info, "be4"))


def _weigh_be4(servers: list[dict[str, Any]], info: Any) -> None:
    _add_be4(servers, info)
    servers[-1]["weight"] = 3


def _remove_be3(servers: list[dict[str, Any]], info: Any) -> None:
    _weigh_be4(servers, info)
    del servers[2]


@LAB_TEST
def test_lab_member_applies_under_wrk_go_at_run_time(rig: LabRig) -> None:
    before = {rig.fe: rig.lab.pids(rig.fe)}
    load = WrkLoad({rig.fe: rig.url}, rig.work, connections=4, max_seconds=WRK_MAX)
    said = []
    try:
        for change in (_drain_be1, None, _add_be4, _weigh_be4, _remove_be3):
            run = cli("apply", "-i", str(rig.inventory(change)), "--yes")
            assert run.rc == 0, run
            said.append(run.out)
            if change is _weigh_be4:
                status = cli("status", "-i", str(rig.lab.inventory)).out
                assert f"{rig.fe} app/be4: ready, health up" in status, status
    finally:
        counts = list(load.stop()[rig.fe].values())  # GET, POST
    for out in said:
        assert "no reload (runtime: " in out, out
    assert "app/be1 state drain" in said[0] and "app/be1 state ready" in said[1]
    assert "add app/be4" in said[2] and "app/be4 weight 3" in said[3]
    assert "remove app/be3" in said[4]
    for w in counts:
        assert w.requests > 100 and (w.socket_errors, w.non_2xx) == (0, 0), w.text
    assert rig.lab.not_reloaded(before) == {}
    print(f"member applies under wrk: {[w.requests for w in counts]} requests, 0 errors")


@LAB_TEST
def test_lab_a_host_without_the_module_falls_back_to_reloads_and_plan_says_so(
    rig: LabRig,
) -> None:
    # The module's files out of sight in lb1's own mount namespace: as a host without the package.
    modules = nl.MODULES[0].rsplit("/", 1)[0]
    rig.lab.ssh(rig.fe, f"mount -t tmpfs -o size=1m,mode=0755 none {modules}")
    try:
        inv = str(rig.inventory())
        planned = cli("plan", "-i", inv)
        assert f"the host has no {nl.PACKAGE}" in planned.out, planned
        applied = cli("apply", "-i", inv, "--yes")
        assert applied.rc == 0 and "reloaded" in applied.out, applied
        conf = rig.lab.ssh(rig.fe, "cat /etc/nginx/nginx.conf").out
        assert "load_module" not in conf and "balancer_by_lua" not in conf
        assert f"# Warning: the host has no {nl.PACKAGE}" in conf
        # Drains take the old path there: a re-render and a reload.
        before = rig.lab.pids(rig.fe)
        drained = cli("drain", "-i", inv, "be2")
        assert drained.rc == 0, drained
        assert rig.lab.pids(rig.fe)[1] != before[1]
        status = cli("status", "-i", inv).out
        assert f"{rig.fe} app/be2: drain, health unknown" in status, status
        assert cli("restore", "-i", inv, "be2").rc == 0
    finally:
        rig.lab.ssh(rig.fe, f"umount {modules}", check=False)
    # The module back: the next apply renders the Lua balancer again.
    back = cli("apply", "-i", str(rig.lab.inventory), "--yes")
    assert back.rc == 0, back
    assert "balancer_by_lua" in rig.lab.ssh(rig.fe, "cat /etc/nginx/nginx.conf").out
