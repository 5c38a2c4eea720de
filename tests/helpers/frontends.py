"""Run a real haproxy, nginx or apache2 on a config clusterctl rendered under a private root.

`launch()` renders a front end with every path moved under `root` (as `render --check` does),
writes the tree, creates the runtime folders and starts the server in the foreground, in its
own process group. `RunningFrontend.stop()` ends it (and only it) and is safe to call twice.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from clusterctl.drivers import driver_for
from clusterctl.drivers.apache import MAKE_MANAGER_FILES, ApacheDriver
from clusterctl.localcheck import write_tree
from clusterctl.model.schema import Frontend, Inventory
from clusterctl.render import render_frontend

BINARY = {"haproxy": "haproxy", "nginx": "nginx", "apache": "apache2"}


def have(kind: str) -> bool:
    return shutil.which(BINARY[kind]) is not None or Path("/usr/sbin", BINARY[kind]).exists()


def exe(kind: str) -> str:
    return shutil.which(BINARY[kind]) or str(Path("/usr/sbin", BINARY[kind]))


_GIVEN: set[int] = set()


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel's pick for port 0), never one this
    process was given before: the kernel may pick a port again once its socket is closed, and
    two services of one inventory on one port are refused."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((address, 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port
    raise RuntimeError("no fresh free port in 100 tries")


def short_root(prefix: str = "cc-") -> Path:
    """A fresh folder for a rendered tree, with a short path and readable by the workers.

    Short because HAProxy's admin socket lives under it and a Unix socket path holds at most
    107 bytes; world-traversable (0755) because nginx and Apache workers run as www-data.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)
    return root.resolve()


def argv(kind: str, config: str, root: Path) -> list[str]:
    if kind == "haproxy":
        return [exe(kind), "-W", "-db", "-f", config]
    if kind == "nginx":
        return [
            exe(kind),
            "-c",
            config,
            "-p",
            f"{root}/",
            "-e",
            f"{root}/var/log/nginx/error.log",
            "-g",
            "daemon off;",
        ]
    return [exe(kind), "-f", config, "-DFOREGROUND"]


class FrontendFailed(RuntimeError):
    pass


class RunningFrontend:
    def __init__(self, kind: str, root: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.kind = kind
        self.root = root
        self.proc = proc
        self.log = log

    def output(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        for name in ("var/log/nginx/error.log", "var/log/apache2/error.log"):
            p = self.root / name
            if p.exists():
                text += f"\n--- {name}\n" + p.read_text(errors="replace")[-4000:]
        return text

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_listening(self, ports: Iterable[int], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        for port in ports:
            while True:
                if not self.alive():
                    raise FrontendFailed(
                        f"{self.kind} exited ({self.proc.returncode}):\n{self.output()}"
                    )
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise FrontendFailed(
                            f"{self.kind} not listening on {port} after {timeout}s:\n{self.output()}"
                        ) from None
                    time.sleep(0.05)

    def stop(self) -> None:
        """End the server and every process of its group; wait for them to be gone."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        # Workers are in the master's process group (start_new_session): end any straggler.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


def _systemd_file_limit() -> None:
    """The open-files limit systemd gives a Debian unit (soft 1024), not this shell's: a
    config that needs more must raise it itself, as on a real host."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))


def manager_header(fe: Frontend, root: Path) -> Path:
    """Apache: the file clusterctl's curl sends its balancer-manager token from, under `root`."""
    return Path(f"{root}{ApacheDriver().manager_token_paths(fe)[1]}")


def launch(
    inv: Inventory, fe: Frontend, root: Path, ports: Iterable[int], manager_token: bool = True
) -> RunningFrontend:
    """Render `fe` under `root`, start the real server on it and wait for `ports` to listen.

    Apache starts as clusterctl starts it: with its balancer-manager token made first
    (`manager_token=False` starts it without one, as under a start command of the user's).
    """
    driver = driver_for(fe.kind)
    files = render_frontend(inv, fe, root=str(root))
    write_tree(files, root)
    if fe.kind == "apache" and manager_token:
        conf, header = (f"{root}{p}" for p in ApacheDriver().manager_token_paths(fe))
        subprocess.run(
            ["sh", "-c", MAKE_MANAGER_FILES, "clusterctl", conf, header], check=True, timeout=30
        )
    for d in driver.runtime_dirs(fe):
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    config = str(root) + driver.paths(fe).config
    log = root / "server-output.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv(fe.kind, config, root),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=root,
            preexec_fn=_systemd_file_limit,
        )
    running = RunningFrontend(fe.kind, root, proc, log)
    try:
        running.wait_listening(ports)
    except BaseException:
        running.stop()
        raise
    return running
