"""SSH to one host: strict host keys, argv-only commands quoted in one place, `sudo -n`.

paramiko directly rather than fabric's Connection: fabric hard-codes AutoAddPolicy, and the
only things clusterctl needs (run an argv, feed stdin, open a jump channel) are a few lines here.
"""

from __future__ import annotations

import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from clusterctl.errors import SSHError as SSHError
from clusterctl.execute.sshlib import paramiko
from clusterctl.model.queries import host_port

if TYPE_CHECKING:
    from clusterctl.execute.sudo import Sudo


@dataclass(frozen=True)
class Endpoint:
    """Everything needed to reach one host, resolved from inventory, ~/.ssh/config and defaults."""

    name: str
    address: str
    user: str = "root"
    port: int = 22
    identity: str | None = None
    known_hosts: str | None = None
    sudo: bool = False
    jump: Endpoint | None = None
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    rc: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def words(self) -> str:
        """What the command said, for a one-line report."""
        text = (self.err.strip() or self.out.strip()).replace("\n", " | ")
        return text[:500] or f"exit status {self.rc}"


# Called after every remote command with (host, what ran, step, seconds, exit status); set by
# `--verbose`. It is given a description, never the argv's values nor the stdin.
Trace = Callable[[str, str, str | None, float, int], None]
trace: Trace | None = None


def describe(argv: list[str] | tuple[str, ...]) -> str:
    """What a command runs, without its arguments: `sudo sh: test -d "$1"`, `systemctl`.

    Arguments may be file contents or names from the inventory; a script of clusterctl's own is
    fixed text (its variable parts come as $1, $2, ...), so its first line is safe to show.
    """
    words = list(argv)
    prefix = ""
    i = 0
    while i < len(words):
        w = words[i]
        if w == "env" or ("=" in w and not w.startswith("-") and prefix == ""):
            i += 1
        elif w == "sudo":
            prefix = "sudo "
            i += 1
            while i < len(words) and words[i].startswith("-"):
                i += 2 if words[i] == "-p" else 1
        else:
            break
    if i >= len(words):
        return prefix.strip() or "?"
    if words[i] == "sh" and i + 2 < len(words) and words[i + 1] == "-c":
        # The first line that does something: not a comment nor `set -e`.
        lines = [
            ln.strip()
            for ln in words[i + 2].splitlines()
            if ln.strip() and not ln.strip().startswith(("#", "set "))
        ]
        first = lines[0] if lines else ""
        first = first[2:] if first.startswith(": ") else first  # a label (execute/chain.py)
        first = first if len(first) <= 60 else first[:57] + "..."
        return f"{prefix}sh: {first}"
    return prefix + PurePosixPath(words[i]).name


def quote(argv: list[str] | tuple[str, ...]) -> str:
    """The one place an argv becomes a shell command line: every argument quoted."""
    return " ".join(shlex.quote(a) for a in argv)


def _known_hosts_file(ep: Endpoint) -> Path:
    return Path(ep.known_hosts or "~/.ssh/known_hosts").expanduser()


def _host_key_name(ep: Endpoint) -> str:
    # known_hosts' own form, not host_port: any address on a port other than 22 is bracketed,
    # an IPv4 one too ("[192.0.2.1]:2222"), and an IPv6 one on port 22 is not.
    return ep.address if ep.port == 22 else f"[{ep.address}]:{ep.port}"


@dataclass
class Remote:
    """An open SSH session to one host."""

    ep: Endpoint
    client: paramiko.SSHClient
    _jump: paramiko.SSHClient | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sudo: Sudo | None = None

    shared: bool = False  # one of shared_sessions()' connections: `with` keeps it open

    @classmethod
    def connect(cls, ep: Endpoint) -> Remote:
        """A session to ep: inside shared_sessions(), the one already open to it, if alive."""
        pool = _pool
        return cls.open(ep) if pool is None else pool.get(ep)

    @classmethod
    def open(cls, ep: Endpoint) -> Remote:
        """A new session to ep, whatever is shared."""
        jump_client = None
        sock: Any = None
        if ep.jump is not None:
            jump_client = _open_client(ep.jump, None)
            transport = jump_client.get_transport()
            if transport is None:
                raise SSHError(f"{ep.name}: jump host {ep.jump.address} closed the connection")
            try:
                sock = transport.open_channel(
                    "direct-tcpip", (ep.address, ep.port), ("127.0.0.1", 0)
                )
            except (paramiko.SSHException, OSError) as exc:
                jump_client.close()
                raise SSHError(
                    f"{ep.name}: jump host {ep.jump.address} cannot reach "
                    f"{host_port(ep.address, ep.port)}: {exc}"
                ) from None
        try:
            client = _open_client(ep, sock)
        except SSHError:
            if jump_client is not None:
                jump_client.close()
            raise
        return cls(ep, client, jump_client)

    def alive(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def close(self) -> None:
        """Close the session for good (a shared one leaves the pool: whoever closes it on
        purpose, e.g. after it broke or hung, wants the next user to get a fresh one)."""
        pool = _pool
        if self.shared and pool is not None:
            pool.forget(self)
        self._close()

    def _close(self) -> None:
        if self._sudo is not None:
            self._sudo.close()
            self._sudo = None
        self.client.close()
        if self._jump is not None:
            self._jump.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.shared or _pool is None:
            self.close()

    def reconnect(self) -> None:
        """Replace a dropped session with a new one to the same host (same checks)."""
        fresh = Remote.open(self.ep)
        self._close()
        self.client, self._jump = fresh.client, fresh._jump

    def lost(self, step: str | None, argv: list[str] | tuple[str, ...], exc: object) -> SSHError:
        what = step or f"a remote command ({argv[0] if argv else '?'})"
        why = str(exc) or type(exc).__name__
        return SSHError(
            f"connection to {self.ep.name} ({self.ep.address}) lost during {what}: {why}"
        )

    def open_channel(self) -> paramiko.Channel:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise EOFError("the session is closed")
        return transport.open_session()

    def exec_argv(
        self, argv: list[str], stdin: bytes | None, timeout: float, step: str | None
    ) -> Result:
        """Run argv as the login user; a dropped session is named with `step`."""
        started = time.monotonic()
        if self.shared and not self.alive():
            # A shared session someone closed on purpose (it broke or hung for them): this
            # user gets a fresh one to the same host, with the same checks.
            self.reconnect()
        try:
            chan_in, chan_out, chan_err = self.client.exec_command(quote(argv), timeout=timeout)
            if stdin is not None:
                chan_in.write(stdin)
            chan_in.channel.shutdown_write()
            out = chan_out.read()
            err = chan_err.read()
            rc = chan_out.channel.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self.lost(step, argv, exc) from None
        if trace is not None:
            trace(self.ep.name, describe(argv), step, time.monotonic() - started, rc)
        return Result(
            tuple(argv), rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        )

    def run(
        self,
        argv: list[str] | tuple[str, ...],
        *,
        stdin: bytes | None = None,
        sudo: bool = False,
        timeout: float = 120.0,
        step: str | None = None,
    ) -> Result:
        """Run argv on the host; with sudo=True and a non-root login, through sudo (sudo.py).

        `step` names what the command is part of, for the message when the session drops.
        """
        if not (sudo and self.ep.sudo and self.ep.user != "root"):
            return self.exec_argv(list(argv), stdin, timeout, step)
        # One sudo command at a time per session: its askpass state is the session's, and a
        # shared session has several users (the lock's renewals beside apply's steps).
        with self._lock:
            if self._sudo is None:
                from clusterctl.execute.sudo import Sudo

                self._sudo = Sudo(self)
            result = self._sudo.run(list(argv), stdin, timeout, step)
        return Result(tuple(argv), result.rc, result.out, result.err)

    def sh(
        self,
        script: str,
        *args: str,
        stdin: bytes | None = None,
        sudo: bool = True,
        step: str | None = None,
    ) -> Result:
        """A fixed script of clusterctl's own, with every variable part passed as $1, $2, ..."""
        return self.run(
            ["sh", "-c", script, "clusterctl", *args], stdin=stdin, sudo=sudo, step=step
        )


class _Pool:
    """The sessions of one shared_sessions() block, one per endpoint."""

    def __init__(self) -> None:
        self._open: dict[Endpoint, Remote] = {}
        self._opening: dict[Endpoint, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, ep: Endpoint) -> Remote:
        with self._guard:
            opening = self._opening.setdefault(ep, threading.Lock())
        with opening:  # two threads asking for one host at once share one handshake
            with self._guard:
                remote = self._open.get(ep)
            if remote is not None and remote.alive():
                return remote
            if remote is not None:
                remote.close()
            remote = Remote.open(ep)
            remote.shared = True
            with self._guard:
                self._open[ep] = remote
            return remote

    def forget(self, remote: Remote) -> None:
        with self._guard:
            if self._open.get(remote.ep) is remote:
                del self._open[remote.ep]

    def close(self) -> None:
        with self._guard:
            remotes, self._open = list(self._open.values()), {}
        for remote in remotes:
            remote._close()


_pool: _Pool | None = None


@contextmanager
def shared_sessions() -> Iterator[None]:
    """Within the block, Remote.connect gives every user the one session open to a host (the
    lock's, the facts', apply's): a handshake and login per host per command, not three. A
    nested block shares the outer one's."""
    global _pool
    if _pool is not None:
        yield
        return
    _pool = pool = _Pool()
    try:
        yield
    finally:
        _pool = None
        pool.close()


def _open_client(ep: Endpoint, sock: Any) -> paramiko.SSHClient:
    from clusterctl.model.localfiles import ssh_file_problem

    client = paramiko.SSHClient()
    known = _known_hosts_file(ep)
    # paramiko reads both files whole: a FIFO would hang it, /dev/zero exhaust memory.
    for what, path in (("known_hosts", known), ("identity", ep.identity)):
        why = ssh_file_problem(Path(path).expanduser()) if path else None
        if why:
            raise SSHError(f"{ep.name}: cannot read {what}: {why}")
    try:
        client.load_host_keys(str(known))
    except FileNotFoundError:
        pass
    except (OSError, paramiko.SSHException) as exc:
        raise SSHError(f"{ep.name}: cannot read known_hosts {known}: {exc}") from None
    # Unknown hosts are refused: trusting on first use is a decision for the user, not for us.
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key_filename = str(Path(ep.identity).expanduser()) if ep.identity else None
    try:
        client.connect(
            ep.address,
            port=ep.port,
            username=ep.user,
            key_filename=key_filename,
            timeout=ep.connect_timeout,
            banner_timeout=ep.connect_timeout,
            auth_timeout=ep.connect_timeout,
            sock=sock,
            allow_agent=True,
            look_for_keys=key_filename is None,
        )
    except paramiko.BadHostKeyException:
        raise SSHError(
            f"{ep.name}: the host key of {ep.address} has CHANGED since it was recorded in "
            f"{known}; if the host was rebuilt, check the new key out of band, then run: "
            f"ssh-keygen -R {shlex.quote(_host_key_name(ep))} -f {shlex.quote(str(known))}"
        ) from None
    except paramiko.SSHException as exc:
        if "not found in known_hosts" in str(exc):
            raise SSHError(
                f"{ep.name}: {ep.address} is not in {known}; verify its key, then add it: "
                f"ssh-keyscan -p {ep.port} {shlex.quote(ep.address)} >> {shlex.quote(str(known))}"
            ) from None
        raise SSHError(
            f"{ep.name}: SSH to {ep.user}@{host_port(ep.address, ep.port)} failed: {exc}"
        ) from None
    except (TimeoutError, OSError) as exc:
        raise SSHError(
            f"{ep.name}: cannot reach {host_port(ep.address, ep.port)}: {why_not(exc)}"
        ) from None
    return client


def why_not(exc: BaseException) -> str:
    """An OS error in words, without its "[Errno N]" ("connection refused", "timed out").

    paramiko's NoValidConnectionsError carries errno None and one error per address tried.
    """
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError) and exc.errors:
        exc = next(iter(exc.errors.values()))
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    text = str(exc)
    return text or type(exc).__name__
