"""sudo for a non-root login: the password goes to sudo alone, and only when sudo asks.

1. `sudo -n true`: NOPASSWD sudo (or cached credentials) needs nothing more; every command then
   runs as `sudo -n -- ARGV` and no password is ever sent.
2. Otherwise, with CLUSTERCTL_SUDO_PASSWORD set, `sudo -S -v` on a channel of its own that
   carries nothing else checks the password once. It is written only after sudo's prompt (a
   random one, so no other output can pass for it) appears; a second prompt (a wrong password)
   gets end-of-file, never the password again.
3. If sudo then keeps the credentials (`timestamp_type=global`), every command runs as
   `sudo -n`. Debian's default (per-terminal, or without one per session) keeps them for one
   SSH channel only, and every command has its own. Then each command runs as `sudo -A`
   with an askpass helper of clusterctl's own that reads a FIFO in a private folder of the
   login user's. Another channel, carrying nothing else, opens the FIFO for writing: that open
   returns only when sudo has started the helper, that is, only when sudo asks, and only then
   is the password sent down that channel. A command sudo lets run without asking never sees it.

The password is never in a command's stdin, argv or environment, nor in any file on the host:
the FIFO holds no data at rest, and the helper and its folder hold none.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from typing import TYPE_CHECKING

from clusterctl.execute.ssh import Result, SSHError, quote
from clusterctl.execute.sshlib import paramiko

if TYPE_CHECKING:
    from clusterctl.execute.ssh import Remote

ENV_PASSWORD = "CLUSTERCTL_SUDO_PASSWORD"  # noqa: S105 (the variable's name)

# A private folder of the login user's: the FIFO, and the helper that reads it once per
# command (a second ask means the password was wrong: the helper fails, sudo stops).
_SETUP = r"""set -e
umask 077
d=$(mktemp -d "${TMPDIR:-/tmp}/clusterctl-sudo.XXXXXXXX")
mkfifo -m 600 "$d/pass"
printf '#!/bin/sh\n[ -e "%s/used" ] && exit 1\n: > "%s/used"\nexec cat -- "%s/pass"\n' \
  "$d" "$d" "$d" > "$d/askpass"
chmod 700 "$d/askpass"
printf '%s\n' "$d"
"""
# $1 the FIFO, $2 the helper's once-marker. Prints its pid, then blocks in the open until the
# helper opens the FIFO for reading, says so, and only then copies its stdin into the FIFO.
_WRITER = r"""rm -f -- "$2"; echo "$$"
exec timeout 300 sh -c 'exec 3>"$1"; echo open; exec cat >&3' writer "$1"
"""


class Sudo:
    """The sudo side of one SSH session."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote
        self.mode: str | None = None  # "n": sudo -n works; "askpass": per command
        self.folder: str | None = None

    def _where(self) -> str:
        return f"{self.remote.ep.name}: sudo for {self.remote.ep.user}"

    def _password(self) -> bytes:
        password = os.environ.get(ENV_PASSWORD)
        if password is None:
            raise SSHError(
                f"{self._where()} asks for a password: set {ENV_PASSWORD}, or give "
                f"{self.remote.ep.user} NOPASSWD sudo"
            )
        return password.encode()

    def ready(self, step: str | None) -> None:
        if self.mode is not None:
            return
        r = self.remote
        probe = r.exec_argv(["sudo", "-n", "true"], None, 30.0, step)
        if probe.ok:
            self.mode = "n"
            return
        if "password" not in probe.err:
            raise SSHError(f"{self._where()} does not work: {probe.words()}")
        password = self._password()
        prompt = f"[clusterctl sudo {secrets.token_hex(8)}]".encode()
        answered, err, rc = self._answer_prompt(prompt, password, step)
        if rc != 0 or not answered:
            text = err.decode("utf-8", "replace").replace(prompt.decode(), "")
            words = " | ".join(ln.strip() for ln in text.splitlines() if ln.strip())
            raise SSHError(f"{self._where()} refused the password: {words or f'exit {rc}'}")
        if r.exec_argv(["sudo", "-n", "true"], None, 30.0, step).ok:
            self.mode = "n"
            return
        made = r.exec_argv(["sh", "-c", _SETUP], None, 30.0, step)
        if not made.ok or not made.out.strip():
            raise SSHError(f"{self._where()}: cannot make the askpass folder: {made.words()}")
        self.folder = made.out.strip().splitlines()[-1]
        self.mode = "askpass"

    def run(self, argv: list[str], stdin: bytes | None, timeout: float, step: str | None) -> Result:
        self.ready(step)
        r = self.remote
        if self.mode == "n":
            result = r.exec_argv(["sudo", "-n", "--", *argv], stdin, timeout, step)
            if result.rc == 1 and "a password is required" in result.err:
                self.mode = None  # the cached credentials ran out; sudo ran nothing
                return self.run(argv, stdin, timeout, step)
            return result
        assert self.folder is not None
        helper = f"{self.folder}/askpass"
        writer = self._start_writer(step)
        try:
            wrapped = ["env", f"SUDO_ASKPASS={helper}", "sudo", "-A", "-p", "", "--", *argv]
            return r.exec_argv(wrapped, stdin, timeout, step)
        finally:
            writer.stop()

    def _start_writer(self, step: str | None) -> _Writer:
        assert self.folder is not None
        argv = ["sh", "-c", _WRITER, "clusterctl", f"{self.folder}/pass", f"{self.folder}/used"]
        try:
            chan = self.remote.open_channel()
            chan.exec_command(quote(argv))
            chan.settimeout(30.0)
            pid = b""
            while not pid.endswith(b"\n"):
                data = chan.recv(64)
                if not data:
                    raise EOFError("the askpass writer ended early")
                pid += data
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self.remote.lost(step, argv, exc) from None
        w = _Writer(self.remote, chan, pid.decode().strip(), self._password())
        w.start()
        return w

    def _answer_prompt(
        self, prompt: bytes, password: bytes, step: str | None
    ) -> tuple[bool, bytes, int]:
        argv = ["sudo", "-S", "-v", "-p", prompt.decode()]
        deadline = time.monotonic() + 30.0
        err = b""
        answered = False
        try:
            chan = self.remote.open_channel()
            chan.settimeout(5.0)
            chan.exec_command(quote(argv))
            while True:
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(4096)
                    asked = err.count(prompt)
                    if asked == 1 and not answered:
                        chan.sendall(password + b"\n")
                        answered = True
                    elif asked > 1:
                        chan.shutdown_write()  # a wrong password: end-of-file, not a retry
                elif chan.exit_status_ready():
                    break
                elif time.monotonic() > deadline:
                    chan.close()
                    return answered, err + b"sudo did not answer within 30 s", 1
                else:
                    time.sleep(0.01)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(4096)
            rc = chan.recv_exit_status()
            chan.close()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self.remote.lost(step, argv, exc) from None
        return answered, err, rc

    def close(self) -> None:
        if self.folder is not None:
            folder, self.folder = self.folder, None
            with contextlib.suppress(SSHError):  # gone with the session; it holds no secret
                self.remote.exec_argv(["rm", "-rf", "--", folder], None, 10.0, None)


class _Writer(threading.Thread):
    """Sends the password down its own channel once the helper has opened the FIFO."""

    def __init__(self, remote: Remote, chan: paramiko.Channel, pid: str, password: bytes) -> None:
        super().__init__(daemon=True)
        self.remote, self.chan, self.pid, self.password = remote, chan, pid, password
        self.done = threading.Event()
        self.sent = False

    def run(self) -> None:
        got = b""
        self.chan.settimeout(0.1)
        while not self.done.is_set() and b"open" not in got:
            try:
                data = self.chan.recv(64)
            except TimeoutError:
                continue
            except (paramiko.SSHException, OSError, EOFError):
                return
            if not data:
                return
            got += data
        if b"open" in got:
            try:
                self.chan.sendall(self.password + b"\n")
                self.chan.shutdown_write()
                self.sent = True
            except (paramiko.SSHException, OSError, EOFError):
                return

    def stop(self) -> None:
        self.done.set()
        self.join(5.0)
        if not self.sent and self.pid.isdigit():
            # sudo never asked: the writer is still waiting in its open, the password unsent.
            with contextlib.suppress(SSHError):
                self.remote.exec_argv(["kill", self.pid], None, 10.0, None)
        self.chan.close()
