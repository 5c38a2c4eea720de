"""MySQL writes through HAProxy land on one primary at a time, across a failure and a return.

Two real MariaDB servers (Debian's mariadbd, each with its own datadir on a loopback port)
are the write pool's primary and backup primary; HAProxy runs on the rendered config in front
of them. Two writers keep inserting rows stamped with the server's own clock: one holds its
connection (reconnecting only when cut), one opens a new connection per write. Ordered by that
clock, the rows of both servers must switch from one server to the other only at a failover:
never back and forth, which is what writes on two primaries at once look like.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from clusterctl.drivers.haproxy import HAProxyDriver
from clusterctl.model import load
from clusterctl.model.schema import Frontend, Paths
from tests.helpers.frontends import RunningFrontend, free_port, have, launch, short_root
from tests.helpers.mariadb import MariaDB, have_mariadb

pytestmark = pytest.mark.servers
DEADLINE_S = 60  # the whole scenario, writers included, ends within this


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MariaDB, MariaDB]]:
    if not have_mariadb() or not have("haproxy"):
        pytest.skip("needs mariadb-server and haproxy (bash scripts/setup.sh installs them)")
    work = tmp_path_factory.mktemp("mariadb")
    pair = (MariaDB("db1", free_port(), work, 1), MariaDB("db2", free_port(), work, 2))
    try:
        for db in pair:
            db.start()
            db.sql(
                "CREATE DATABASE w",
                "CREATE TABLE w.writes (id INT AUTO_INCREMENT PRIMARY KEY,"
                " writer VARCHAR(8), at DATETIME(6) NOT NULL DEFAULT NOW(6))",
                "CREATE USER 'haproxy_check'@'127.0.0.1'",
                "CREATE USER 'app'@'127.0.0.1'",
                "GRANT INSERT, SELECT ON w.* TO 'app'@'127.0.0.1'",
            )
        yield pair
    finally:
        for db in pair:
            db.kill()


def inventory(db1: MariaDB, db2: MariaDB, port: int, peer: int, failback: bool) -> str:
    return f"""\
cluster: mysql-test
frontends:
  - {{name: fe-haproxy, kind: haproxy, address: 127.0.0.1, peer_port: {peer}}}
pools:
  - name: db-primary
    balance: first
    failback: {"true" if failback else "false"}
    health: {{type: mysql, user: haproxy_check, interval: 200ms, timeout: 500ms, rise: 1, fall: 1}}
    servers:
      - {{name: db1, address: 127.0.0.1, port: {db1.port}, maxconn: 50}}
      - {{name: db2, address: 127.0.0.1, port: {db2.port}, maxconn: 50, backup: true}}
services:
  - name: mysql-write
    mode: tcp
    listen: [{{address: 127.0.0.1, port: {port}}}]
    default_pool: db-primary
    timeouts: {{client: 1h, server: 1h}}
"""


@dataclass
class Rig:
    fe: RunningFrontend
    port: int
    model: Frontend  # the front end as the inventory has it


class Writers:
    """Two bounded writer threads through HAProxy; failures are retried, not counted."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.deadline = time.monotonic() + DEADLINE_S
        self.threads = [
            threading.Thread(target=self._long, daemon=True),
            threading.Thread(target=self._short, daemon=True),
        ]

    def _connect(self) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user="app", connect_timeout=1, autocommit=True
        )

    def _running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def _long(self) -> None:
        conn = None
        while self._running():
            try:
                conn = conn or self._connect()
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO w.writes (writer) VALUES ('long')")
            except pymysql.err.MySQLError:
                conn = None
                time.sleep(0.02)
            time.sleep(0.002)

    def _short(self) -> None:
        while self._running():
            try:
                conn = self._connect()
                try:
                    with conn.cursor() as cur:
                        cur.execute("INSERT INTO w.writes (writer) VALUES ('short')")
                finally:
                    conn.close()
            except pymysql.err.MySQLError:
                time.sleep(0.02)
            time.sleep(0.002)

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def count(db: MariaDB, writer: str | None = None) -> int:
    where = f" WHERE writer = '{writer}'" if writer else ""
    return int(db.sql(f"SELECT COUNT(*) FROM w.writes{where}")[0][0])


def until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# Rows each writer adds in a phase before it counts as observed (a new connection per write
# is the slow one: some 40 ms a connect here).
PHASE = {"long": 40, "short": 6}


def _rows(dbs: tuple[MariaDB, ...]) -> dict[str, int]:
    return {w: sum(count(db, w) for db in dbs) for w in PHASE}


def grows(*dbs: MariaDB) -> Callable[[], bool]:
    """True once each writer has written a phase's rows more to `dbs` than now."""
    start = _rows(dbs)
    return lambda: all(n >= start[w] + PHASE[w] for w, n in _rows(dbs).items())


def admin(fe: RunningFrontend, command: str) -> str:
    """A command on HAProxy's admin socket (the runtime API), and its answer."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(fe.root / "run" / "haproxy" / "admin.sock"))
        s.sendall(command.encode() + b"\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out.decode()


def _state(fe: RunningFrontend, server: str) -> list[str]:
    out = admin(fe, "show servers state db-primary")
    for line in out.splitlines():
        f = line.split()
        if len(f) > 6 and f[3] == server:
            return f
    raise AssertionError(f"{server} not in:\n{out}")


def server_up(fe: RunningFrontend, server: str) -> bool:
    return _state(fe, server)[5] == "2"  # srv_op_state: 2 is running


def maint(fe: RunningFrontend, server: str) -> bool:
    return bool(int(_state(fe, server)[6]) & 1)  # srv_admin_state: forced maintenance


def reload(fe: RunningFrontend, host_fe: Frontend) -> None:
    """What apply does: the driver's step before a reload on the host, then the reload."""
    model = dataclasses.replace(
        host_fe,
        paths=Paths(
            admin_socket=f"{fe.root}/run/haproxy/admin.sock",
            state_file=f"{fe.root}/var/lib/haproxy/server-state",
        ),
    )
    script, args = HAProxyDriver().before_reload(model) or ("", [])
    res = subprocess.run(
        ["sh", "-c", script, "clusterctl", *args], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0, res.stderr
    fe.proc.send_signal(signal.SIGUSR2)


def timeline(db1: MariaDB, db2: MariaDB) -> list[str]:
    """Which server took each write, in the order of the servers' own clock."""
    rows = [(at, db.name) for db in (db1, db2) for (at,) in db.sql("SELECT at FROM w.writes")]
    return [name for _, name in sorted(rows)]


def switches(order: list[str]) -> list[str]:
    """The servers in turn: ['db1', 'db2', 'db1'] for a failover and a failback."""
    return [name for i, name in enumerate(order) if i == 0 or order[i - 1] != name]


@pytest.fixture
def haproxy(
    dbs: tuple[MariaDB, MariaDB], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Rig]:
    db1, db2 = dbs
    for db in dbs:
        db.start()
        db.sql("TRUNCATE w.writes")
    port = free_port()
    path = tmp_path / "inventory.yaml"
    path.write_text(inventory(db1, db2, port, free_port(), request.param))
    inv = load(path)
    root = short_root("cc-my-")
    fe = launch(inv, inv.frontends[0], root, [port])
    try:
        until(lambda: server_up(fe, "db1") and server_up(fe, "db2"), "both servers up")
        yield Rig(fe, port, inv.frontends[0])
    finally:
        fe.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("haproxy", [False], indirect=True)
def test_writes_stay_on_the_backup_after_the_primary_returns(
    dbs: tuple[MariaDB, MariaDB], haproxy: Rig
) -> None:
    db1, db2 = dbs
    fe, port = haproxy.fe, haproxy.port
    with Writers(port):
        until(grows(db1), "writes on db1")
        db1.kill()
        until(grows(db2), "writes moving to db2")
        db1.start()
        until(lambda: server_up(fe, "db1"), "HAProxy to see db1 up again")
        back = count(db1)
        until(grows(*dbs), "more writes after db1's return")
        reload(
            fe, haproxy.model
        )  # an apply meanwhile: the new process must not send writes to db1 either
        until(grows(*dbs), "writes after the reload")
        assert count(db1) == back, "db1 took writes while db2 was the active primary"
        assert maint(fe, "db1")  # until the operator wants writes there again
        admin(fe, "set server db-primary/db1 state ready")  # what clusterctl restore does
        db2.kill()
        until(grows(db1), "writes moving to db1 once db2 fails")
    db2.start()  # to read what it took
    assert switches(timeline(db1, db2)) == ["db1", "db2", "db1"]


@pytest.mark.parametrize("haproxy", [True], indirect=True)
def test_failback_moves_every_write_back_to_the_primary_at_once(
    dbs: tuple[MariaDB, MariaDB], haproxy: Rig
) -> None:
    db1, db2 = dbs
    port = haproxy.port
    with Writers(port):
        until(grows(db1), "writes on db1")
        db1.kill()
        until(grows(db2), "writes moving to db2")
        db1.start()
        until(grows(db1), "writes back on db1")
        after = count(db2)
        until(grows(*dbs), "more writes")
        assert count(db2) == after, "db2 kept taking writes after db1 took over again"
    assert switches(timeline(db1, db2)) == ["db1", "db2", "db1"]
