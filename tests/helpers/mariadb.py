"""Real MariaDB servers for tests: Debian's mariadbd on a loopback port with its own datadir.

`MariaDB.start()` creates the datadir on first use (mariadb-install-db) and waits until the
server answers; `kill()` ends it with SIGKILL, as a crash would; `start()` again brings it back
on the same datadir and port. Only the processes started here are ever signalled.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pymysql

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "mariadb-install-db"


def have_mariadb() -> bool:
    return Path(MARIADBD).exists() and shutil.which(INSTALL_DB) is not None


class MariaDB:
    def __init__(self, name: str, port: int, workdir: Path, server_id: int) -> None:
        self.name = name
        self.port = port
        self.dir = workdir / name
        self.server_id = server_id
        self.proc: subprocess.Popen[bytes] | None = None

    def _install(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                INSTALL_DB,
                "--no-defaults",
                f"--datadir={self.dir / 'data'}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )

    def start(self, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        if not (self.dir / "data").exists():
            self._install()
        log = (self.dir / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [
                MARIADBD,
                "--no-defaults",
                f"--datadir={self.dir / 'data'}",
                "--user=root",
                "--bind-address=127.0.0.1",
                f"--port={self.port}",
                f"--socket={self.dir / 'mysqld.sock'}",
                f"--pid-file={self.dir / 'mysqld.pid'}",
                f"--server-id={self.server_id}",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                "--innodb-log-file-size=8M",
                # No fsync per commit: a commit still survives the process being killed (it
                # is in the OS cache), only not a crash of the machine, which no test does.
                "--innodb-flush-log-at-trx-commit=2",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect(user="root", password="").close()
                return
            except pymysql.err.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    text = (self.dir / "server.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{self.name} did not start:\n{text}") from None
                time.sleep(0.1)

    def connect(self, **kw: Any) -> pymysql.connections.Connection[Any]:
        args: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": "root",
            "password": "",
            "connect_timeout": 2,
            "autocommit": True,
        }
        args.update(kw)
        return pymysql.connect(**args)

    def sql(self, *statements: str) -> list[tuple[Any, ...]]:
        """Run statements as root; the rows of the last one."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                for st in statements:
                    cur.execute(st)
                return list(cur.fetchall())
        finally:
            conn.close()

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown, connections cut."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self.proc = None
