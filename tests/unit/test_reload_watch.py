"""How a reload is judged from what the host reports (a scripted host, no SSH)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clusterctl.execute.reload import reload_and_confirm
from clusterctl.execute.ssh import Result
from clusterctl.execute.steps import StepFailed
from clusterctl.model import load

REPO = Path(__file__).resolve().parents[2]
INV = load(REPO / "inventories" / "full.yaml")
HAPROXY = next(fe for fe in INV.frontends if fe.kind == "haproxy")
NGINX = next(fe for fe in INV.frontends if fe.kind == "nginx")

ALERT = (
    "[ALERT]    (23) : Binding [/etc/haproxy/haproxy.cfg:32] for frontend svc-web: cannot bind "
    "socket (Address already in use) for [0.0.0.0:8181]"
)


class ScriptedHost:
    """Answers clusterctl's scripts: the watch gets `watches` in turn (the last one repeats)."""

    def __init__(self, watches: list[str], ss: str = "") -> None:
        self.watches = watches
        self.ss = ss
        self.calls: list[str] = []

    def sh(self, script: str, *args: str, **kw: Any) -> Result:
        if script.startswith(": reload watch"):
            out = self.watches.pop(0) if len(self.watches) > 1 else self.watches[0]
            self.calls.append("watch")
            return Result(("sh",), 0, out, "")
        if "ss -Htlnp" in script:
            return Result(("sh",), 0, self.ss, "")
        self.calls.append(" ".join(args))
        return Result(("sh",), 0, "", "")


def test_haproxy_s_own_alert_ends_the_wait_and_is_reported() -> None:
    log = "LOG 100 /var/log/haproxy/master.log\n"
    failing = (
        "MASTER 23\nCHILD 31\nLOG 400 /var/log/haproxy/master.log\n"
        "TEXT [NOTICE]   (23) : Reloading HAProxy\n"
        "TEXT [ALERT]    (23) : config : parsing [x:4] : 'pidfile' already specified. Continuing.\n"
        f"TEXT {ALERT}\nTEXT [WARNING]  (23) : Loading failure!\n"
    )
    host = ScriptedHost(["MASTER 23\nCHILD 31\n" + log, failing])
    with pytest.raises(StepFailed) as info:
        reload_and_confirm(host, HAPROXY, timeout=10)  # type: ignore[arg-type]
    words = str(info.value)
    assert words.startswith("reload: the new configuration did not load ")
    assert ALERT in words
    assert "already specified" not in words  # HAProxy's harmless alerts do not crowd it out


def test_new_workers_confirm_a_reload() -> None:
    log = "LOG 100 /var/log/nginx/error.log\n"
    host = ScriptedHost(["MASTER 5\nCHILD 6\n" + log, "MASTER 5\nCHILD 6\nCHILD 7\n" + log])
    reload_and_confirm(host, NGINX, timeout=10)  # type: ignore[arg-type]


def test_nginx_s_repeated_bind_alerts_are_said_once() -> None:
    emerg = "[emerg] 22#22: bind() to 0.0.0.0:8181 failed (98: Address already in use)"
    text = "".join(f"TEXT 2026/12/01 20:21:4{i} {emerg}\n" for i in range(5))
    host = ScriptedHost(
        [
            "MASTER 5\nCHILD 6\nLOG 100 /var/log/nginx/error.log\n",
            "MASTER 5\nCHILD 6\nLOG 900 /var/log/nginx/error.log\n" + text,
        ],
        ss='LISTEN 0 8 0.0.0.0:8181 0.0.0.0:* users:(("python3",pid=977,fd=3))\n',
    )
    with pytest.raises(StepFailed) as info:
        reload_and_confirm(host, NGINX, timeout=10, ports=frozenset({8181}))  # type: ignore[arg-type]
    words = str(info.value)
    assert words.count("bind() to 0.0.0.0:8181 failed") == 1, words
    assert "0.0.0.0:8181 is already in use by python3 (pid 977)" in words


def test_a_server_that_exits_is_reported_at_once() -> None:
    host = ScriptedHost(["MASTER 5\nCHILD 6\n", ""])
    with pytest.raises(StepFailed, match=r"^reload: the server exited "):
        reload_and_confirm(host, NGINX, timeout=10)  # type: ignore[arg-type]
