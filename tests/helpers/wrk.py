"""wrk as the load client of lab tests and benches: it never resends a request, so a keep-alive
connection a server closes under a request is one of wrk's socket errors, not a quiet retry.

`WrkLoad` runs one wrk of GETs and one of POSTs (wrk -s with a two-line Lua script) through each
front end it is given, keep-alive or with `Connection: close`, until `stop()` sends them SIGINT:
wrk then prints what it counted, which `parse` reads. Every run is bounded by `-d`.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

POST_SCRIPT = 'wrk.method = "POST"\nwrk.body = "x=1&y=2"\nwrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
_DONE = re.compile(r"(\d+) requests in")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass(frozen=True)
class Wrk:
    """wrk's own counts for one run (and its output, shown when an assert fails)."""

    requests: int
    socket_errors: int
    non_2xx: int
    text: str

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx


def parse(text: str) -> Wrk:
    done = _DONE.search(text)
    if done is None:
        raise AssertionError(f"wrk printed no count:\n{text}")
    sock = _SOCKET.search(text)
    bad = _NON_2XX.search(text)
    return Wrk(
        int(done[1]),
        sum(int(x) for x in sock.groups()) if sock else 0,
        int(bad[1]) if bad else 0,
        text,
    )


class WrkLoad:
    """GETs and POSTs through every URL of `urls` (label -> URL) at once, until `stop()`."""

    def __init__(
        self,
        urls: dict[str, str],
        workdir: Path,
        *,
        keepalive: bool = True,
        connections: int = 2,
        max_seconds: int = 90,
    ) -> None:
        script = workdir / "wrk-post.lua"
        script.write_text(POST_SCRIPT)
        base = ["wrk", "-t1", f"-c{connections}", f"-d{max_seconds}s", "--timeout", "10s"]
        if not keepalive:
            base += ["-H", "Connection: close"]
        self.procs: dict[tuple[str, str], subprocess.Popen[str]] = {}
        for label, url in urls.items():
            for method, extra in (("GET", []), ("POST", ["-s", str(script)])):
                argv = [*base, *extra, url]
                self.procs[label, method] = subprocess.Popen(
                    argv, stdout=subprocess.PIPE, text=True
                )
        time.sleep(1)  # every wrk is connected and sending before the change starts

    def stop(self) -> dict[str, dict[str, Wrk]]:
        """label -> method -> counts; every wrk is stopped and waited for, whatever happens."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)  # wrk stops and prints what it counted
        out: dict[str, dict[str, Wrk]] = {}
        for (label, method), p in self.procs.items():
            try:
                text, _ = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                text, _ = p.communicate()
            out.setdefault(label, {})[method] = parse(text)
        return out

    def __enter__(self) -> WrkLoad:
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
