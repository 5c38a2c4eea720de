"""Labs of our own for the apply tests, and the ways a user (or an operator) looks at them.

Everything here talks to a real lab the way a user would: the `clusterctl` command as a
subprocess (NO_COLOR=1), the real `ssh` client with strict host keys, and HTTP with
http.client straight to a front end's 198.18 address. Nothing here imports clusterctl's
executor, so a bug there cannot hide itself in the checks.
"""

from __future__ import annotations

import contextlib
import copy
import http.client
import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from clusterctl import lab as labmod

REPO = Path(__file__).resolve().parents[2]
# The command under test: the checkout's own, unless CLUSTERCTL_BIN names another (an installed
# wheel, say).
CLUSTERCTL = os.environ.get("CLUSTERCTL_BIN") or (
    str(REPO / ".venv" / "bin" / "clusterctl")
    if (REPO / ".venv" / "bin" / "clusterctl").exists()
    else shutil.which("clusterctl") or "clusterctl"
)
EXAMPLE_FILES = REPO / "inventories" / "files"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to build the lab")

CONFIG = {
    "haproxy": "/etc/haproxy/haproxy.cfg",
    "nginx": "/etc/nginx/nginx.conf",
    "apache": "/etc/apache2/apache2.conf",
}
PID_FILE = {
    "haproxy": "/run/haproxy.pid",
    "nginx": "/run/nginx.pid",
    "apache": "/run/apache2/apache2.pid",
}
VALIDATOR = {
    "haproxy": "haproxy -c -f /etc/haproxy/haproxy.cfg",
    "nginx": "nginx -t",
    "apache": "apache2 -t -f /etc/apache2/apache2.conf",
}
TLS_FILES = {  # where the `secure` service's certificate and key land on each kind
    "haproxy": {"/etc/haproxy/certs/secure.pem": (0o600, True)},
    "nginx": {
        "/etc/nginx/tls/secure.crt": (0o644, False),
        "/etc/nginx/tls/secure.key": (0o600, True),
    },
    "apache": {
        "/etc/apache2/tls/secure.crt": (0o644, False),
        "/etc/apache2/tls/secure.key": (0o600, True),
    },
}


def page_path(kind: str, service: str) -> str:
    """Where a service's own unavailable page lands beside the kind's config."""
    return f"{CONFIG[kind].rsplit('/', 1)[0]}/clusterctl-pages/{service}.html"


TLS_PORT = 443


# ------------------------------------------------------------------------------ the CLI


@dataclass(repr=False)
class Run:
    """A finished command; shown in full (argv, exit status, output) when an assert fails."""

    argv: list[str]
    rc: int
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err

    def __repr__(self) -> str:
        return (
            f"\n$ {shlex.join(self.argv)}\n-> exit {self.rc} in {self.seconds:.1f}s\n"
            f"--- stdout\n{self.out}--- stderr\n{self.err}"
        )

    __str__ = __repr__


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 180,
) -> Run:
    """`clusterctl ARGS` as a user runs it: a subprocess, plain output, stdin not a terminal."""
    argv = [CLUSTERCTL, *args]
    started = time.monotonic()
    proc = subprocess.run(
        argv,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})},
        check=False,
    )
    return Run(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


# ------------------------------------------------------------------------------ inventories


def load_yaml(path: Path) -> dict[str, Any]:
    data = YAML(typ="safe").load(path.read_text())
    assert isinstance(data, dict)
    return data


def dump_yaml(data: dict[str, Any], path: Path) -> None:
    yaml = YAML()
    yaml.default_flow_style = False
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as fh:
        yaml.dump(data, fh)
    tmp.replace(path)


def server(info: labmod.LabInfo, name: str) -> dict[str, Any]:
    h = info.host(name)
    return {"name": h.name, "address": h.address, "port": labmod.core.APP_PORT}


def acceptance_inventory(info: labmod.LabInfo) -> dict[str, Any]:
    """The lab's own inventory plus what issue #4 asks for.

    - every front end gets its lab `start` command (the lab writes only `reload`; without it a
      rollback that finds the server stopped would call systemctl, which the lab has not got);
    - a second pool `course` with be3 only, and a `/course` route to it;
    - a TLS service `secure` on 443 with the example certificate and key, copied next to the
      inventory (relative paths are relative to the inventory's folder).
    """
    data = copy.deepcopy(load_yaml(info.inventory_path))
    for fe in data["frontends"]:
        fe["start"] = ["/srv/lab/bin/lab-service", fe["kind"], "start"]
    data["pools"].append(
        {
            "name": "course",
            "health": {"path": "/health", "interval": "2s", "rise": 2, "fall": 3},
            "servers": [server(info, "be3")],
        }
    )
    web = data["services"][0]
    web["routes"] = [{"path": "/course", "pool": "course"}]
    data["services"].append(
        {
            "name": "secure",
            "listen": [{"port": TLS_PORT, "tls": True}],
            "tls": {"certificate": "example.com.crt", "key": "example.com.key", "redirect": False},
            "default_pool": "app",
        }
    )
    return data


# ------------------------------------------------------------------------------ SSH


@dataclass
class Lab:
    """One running lab of ours and the inventory the tests edit."""

    info: labmod.LabInfo
    workdir: Path
    inventory: Path = field(init=False)

    def __post_init__(self) -> None:
        self.inventory = self.workdir / "inventory.yaml"

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def frontends(self) -> list[labmod.LabHost]:
        return self.info.frontends

    def kind(self, host: str) -> str:
        return self.info.host(host).kind

    def address(self, host: str) -> str:
        return self.info.host(host).address

    def spare_address(self, offset: int = 250) -> str:
        """An address in the lab's subnet that no host has."""
        return labmod.core.Naming(self.name).address(offset)

    def write(self, data: dict[str, Any]) -> Path:
        dump_yaml(data, self.inventory)
        return self.inventory

    def ssh_argv(self, host: str, script: str) -> list[str]:
        # One connection per host, reused: a check costs milliseconds, not a key exchange.
        control = ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_dir}/%C"]
        control += ["-o", "ControlPersist=60"]
        return self.info.ssh_argv(host, script, options=control)

    @property
    def control_dir(self) -> Path:
        return Path(f"/tmp/clssh-{self.name}")

    def close_ssh(self) -> None:
        """Stop the shared SSH connections of this lab's hosts."""
        for h in self.info.hosts:
            argv = self.ssh_argv(h.name, "true")
            subprocess.run(
                [*argv[:-2], "-O", "exit", argv[-2]], capture_output=True, timeout=10, check=False
            )
        shutil.rmtree(self.control_dir, ignore_errors=True)

    def ssh(self, host: str, script: str, check: bool = True, timeout: float = 60) -> Run:
        """Run a shell script on a lab host (inside its network and mount namespaces)."""
        argv = self.ssh_argv(host, script)
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        run = Run(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
        if check and run.rc != 0:
            raise AssertionError(f"on {host}: {run}")
        return run

    # -- what an operator would look at ---------------------------------------------------

    def validate(self, host: str) -> Run:
        """The server's own validator over the live config, over SSH."""
        return self.ssh(
            host, "PATH=$PATH:/usr/sbin:/sbin; " + VALIDATOR[self.kind(host)], check=False
        )

    def stat(self, host: str, paths: list[str]) -> dict[str, dict[str, Any]]:
        """mode, owner, group, inode, mtime (ns) and sha256 of each path that exists."""
        script = (
            'for f in "$@"; do [ -e "$f" ] || continue; '
            'printf "%s %s\\n" "$(stat -c "%a %U %G %i %.9Y" -- "$f")" "$(sha256sum -- "$f")"; done'
        )
        out = self.ssh(host, f"sh -c {shlex.quote(script)} sh {shlex.join(paths)}").out
        found: dict[str, dict[str, Any]] = {}
        for line in out.splitlines():
            mode, owner, group, inode, mtime, sha, path = line.split(maxsplit=6)
            found[path] = {
                "mode": int(mode, 8),
                "owner": owner,
                "group": group,
                "inode": int(inode),
                "mtime": mtime,
                "sha256": sha,
            }
        return found

    def managed_paths(self, host: str) -> list[str]:
        return [CONFIG[self.kind(host)], *TLS_FILES[self.kind(host)]]

    def snapshot(self, host: str) -> dict[str, dict[str, Any]]:
        return self.stat(host, self.managed_paths(host))

    def pids(self, host: str) -> tuple[int, frozenset[int]]:
        """The server's master pid and its children (the workers that serve)."""
        pid_file = PID_FILE[self.kind(host)]
        script = (
            f"pid=$(head -n1 {pid_file}); echo $pid; "
            "awk -v p=$pid '$4 == p {print $1}' /proc/[0-9]*/stat 2>/dev/null"
        )
        out = self.ssh(host, script).out.split()
        return int(out[0]), frozenset(int(x) for x in out[1:])

    def not_reloaded(self, before: dict[str, tuple[int, frozenset[int]]]) -> dict[str, str]:
        """Hosts of `before` that reloaded since: a reload replaces every worker, so all of
        the old ones still alive under the same master means none happened. Apache's own
        process management starts children under load and stops idle ones by itself, so there
        one old child still serving under the same master is the proof (a graceful restart
        tells every old child to go, and they do as soon as their requests are done)."""
        out = {}
        for host, (master, workers) in before.items():
            now_master, now_workers = self.pids(host)
            apache = self.kind(host) == "apache"
            kept = workers & now_workers if apache else workers
            if now_master != master or not kept <= now_workers or (apache and not kept):
                out[host] = (
                    f"master {master}->{now_master}, workers {sorted(workers)}->{sorted(now_workers)}"
                )
        return out

    def temp_files(self, host: str) -> list[str]:
        dirs = sorted({p.rsplit("/", 1)[0] for p in self.managed_paths(host)})
        script = "ls -1d " + " ".join(f"{d}/.*.clusterctl-new" for d in dirs) + " 2>/dev/null; true"
        return self.ssh(host, script).out.split()


def assert_private_state_dir(lab: Lab) -> None:
    """Each front end has its own /var/lib/clusterctl (cluster lock, backups, markers), as
    separate machines have: shared, one lab's apply would hold the lock another lab's tests
    then wait for, and parallel applies would share backups. The lab binds a private copy."""
    for fe in lab.frontends:
        run = lab.ssh(fe.name, "mountpoint -q /var/lib/clusterctl", check=False)
        assert run.rc == 0, f"{fe.name}: /var/lib/clusterctl is the machine's, not the host's own"


@contextlib.contextmanager
def own_lab(
    name: str, workdir: Path, frontends: list[str] | None = None, backends: int = 3
) -> Iterator[Lab]:
    """Lab `name` built for this test module and removed afterwards, whatever happens."""
    labmod.down(name)  # leftovers of an aborted earlier run
    lab: Lab | None = None
    try:
        info = labmod.up(name, backends=backends, frontends=frontends)
        lab = Lab(info, workdir)
        lab.control_dir.mkdir(mode=0o700, exist_ok=True)
        workdir.mkdir(parents=True, exist_ok=True)
        for ext in ("crt", "key"):
            shutil.copy2(EXAMPLE_FILES / f"example.com.{ext}", workdir / f"example.com.{ext}")
        assert_private_state_dir(lab)
        yield lab
    finally:
        if lab is not None:
            lab.close_ssh()
        labmod.down(name)


# ------------------------------------------------------------------------------ HTTP


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    cookies: dict[str, str]
    body: bytes

    @property
    def backend(self) -> str | None:
        return self.headers.get("x-backend")


def http_get(
    address: str,
    path: str = "/",
    *,
    port: int | None = None,
    tls: bool = False,
    cookies: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Reply:
    """One GET on its own connection to a front end's address."""
    conn: http.client.HTTPConnection
    if tls:
        ctx = ssl.create_default_context(cafile=str(EXAMPLE_FILES / "example.com.crt"))
        ctx.check_hostname = False  # we connect by address; the certificate is example.com's
        conn = http.client.HTTPSConnection(address, port or 443, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(address, port or 80, timeout=timeout)
    try:
        headers = {"Connection": "close"}
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        jar: dict[str, str] = {}
        for raw in resp.headers.get_all("Set-Cookie") or []:
            k, _, rest = raw.partition("=")
            jar[k.strip()] = rest.split(";", 1)[0].strip()
        return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, jar, body)
    finally:
        conn.close()


def wait_serving(address: str, path: str = "/", timeout: float = 15.0) -> Reply:
    """The front end answers 200 (health checks need a moment after a start)."""
    deadline = time.monotonic() + timeout
    last: Exception | Reply | None = None
    while time.monotonic() < deadline:
        try:
            last = http_get(address, path, timeout=2.0)
            if last.status == 200:
                return last
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{address}{path} does not serve: {last}")


@dataclass
class LoadResult:
    target: str
    requests: int = 0
    ok: int = 0
    bad_status: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    retried: int = 0
    backends: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(self.bad_status.values()) + len(self.errors)


def keepalive_load(
    address: str,
    seconds: float,
    clients: int = 4,
    path: str = "/",
    port: int = 80,
    until: threading.Event | None = None,
) -> LoadResult:
    """A bounded load: `clients` keep-alive HTTP/1.1 connections, requests back to back, for
    `seconds` at most (or until `until` is set, if sooner).

    Counts every answer that is not 200 and every connection error. One thing only is not a
    failure: a GET on a kept-alive connection that the server closed *before sending any byte
    of a response* (it closes idle connections when it reloads) is sent again on a new
    connection, as RFC 9112 section 9.3.1 lets clients do and browsers, curl and every HTTP
    library do. Those are counted in `retried`, never hidden.
    """
    result = LoadResult(f"{address}:{port}")
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        conn: http.client.HTTPConnection | None = None
        used = 0  # requests answered on this connection
        while time.monotonic() < stop and not (until is not None and until.is_set()):
            if conn is None:
                conn = http.client.HTTPConnection(address, port, timeout=10)
                used = 0
            answered = False
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                answered = True
                resp.read()
            except OSError as exc:  # RemoteDisconnected, resets, refusals, timeouts
                conn.close()
                conn = None
                idle_close = isinstance(
                    exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError
                )
                if used and not answered and idle_close:
                    with lock:
                        result.retried += 1
                    continue
                with lock:
                    result.requests += 1
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            except http.client.HTTPException as exc:  # a broken answer
                conn.close()
                conn = None
                with lock:
                    result.requests += 1
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            used += 1
            with lock:
                result.requests += 1
                if resp.status == 200:
                    result.ok += 1
                else:
                    result.bad_status[resp.status] = result.bad_status.get(resp.status, 0) + 1
                name = resp.getheader("X-Backend") or "?"
                result.backends[name] = result.backends.get(name, 0) + 1
            if resp.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return result


# ------------------------------------------------------------------------------ plan facts


def results_table(run: Run) -> dict[str, str]:
    """host -> result, from apply's results: a table on a terminal (`host │ result │ ...`),
    one `host: result in 1.2s: detail` line each when piped (as the tests run it)."""
    out: dict[str, str] = {}
    for line in run.out.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) >= 3 and cells[0] and cells[1]:
            out[cells[0]] = cells[1]
            continue
        m = _RESULT_LINE.match(line)
        if m:
            out[m["host"]] = m["result"]
    return out


_RESULT_LINE = re.compile(
    r"^(?P<host>[^\s:]+): (?P<result>changed|unchanged|failed|rolled back) in \d+(\.\d+)?s(: |$)"
)


def plan_json(inventory: Path, *extra: str) -> dict[str, Any]:
    run = cli("plan", "-i", str(inventory), "--output", "json", *extra)
    assert run.rc in (0, 1), run
    data = json.loads(run.out)
    assert isinstance(data, dict)
    return data


def host_status(plan: dict[str, Any]) -> dict[str, str]:
    return {h["host"]: h["status"] for h in plan["hosts"]}


__all__ = [
    "CLUSTERCTL",
    "CONFIG",
    "TLS_FILES",
    "Lab",
    "LoadResult",
    "Reply",
    "Run",
    "acceptance_inventory",
    "assert_private_state_dir",
    "cli",
    "host_status",
    "http_get",
    "keepalive_load",
    "needs_root",
    "own_lab",
    "page_path",
    "plan_json",
    "results_table",
    "wait_serving",
]
