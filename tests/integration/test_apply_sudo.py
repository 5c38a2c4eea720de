"""Issue #9: the sudo password goes to sudo alone, and only when sudo asks for one.

One lab (`tsu`: an HAProxy and an nginx front end) whose hosts have their own users: `deploy`
with NOPASSWD sudo and `deploypw` whose sudo asks for a password. Each applies a change with
a TLS key among the uploads while a watcher on every front end reads every process's argv and
environment; the password must show up in no uploaded or installed file, no message, no argv
and no environment, and both applies must work.
"""

from __future__ import annotations

import contextlib
import copy
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clusterctl.execute.endpoints import frontend_endpoints
from clusterctl.execute.ssh import Remote, SSHError
from clusterctl.lab.users import add_user
from clusterctl.model import load
from tests.integration.labfixtures import (
    Lab,
    acceptance_inventory,
    cli,
    needs_root,
    own_lab,
    results_table,
    wait_serving,
)

pytestmark = [pytest.mark.lab, needs_root]

PASSWORD = "pw-" + secrets.token_hex(12)

# Reads the password from stdin (so it is in no argv of its own), then scans every other
# process's cmdline and environ until stdin closes; prints what it found.
WATCH = r"""
import os, select, sys, time
needle = sys.stdin.readline().strip().encode()
me = str(os.getpid())
hits = set()
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        for part in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{part}", "rb") as fh:
                    if needle in fh.read():
                        hits.add(f"{pid}/{part}")
            except OSError:
                pass
    if select.select([sys.stdin], [], [], 0.02)[0] and not sys.stdin.readline():
        break
print("HITS", " ".join(sorted(hits)) or "none", flush=True)
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with own_lab("tsu", tmp_path_factory.mktemp("tsu"), frontends=["haproxy", "nginx"]) as lab:
        for host in lab.info.hosts:  # the cluster lock may live on any of them
            add_user(lab.info, host.name, "deploy")
            add_user(lab.info, host.name, "deploypw", PASSWORD)
        yield lab


def as_user(lab: Lab, user: str, route: str) -> dict[str, Any]:
    data = acceptance_inventory(lab.info)
    data["defaults"]["ssh"] = {**data["defaults"]["ssh"], "user": user, "sudo": True}
    data["services"][0]["routes"] = [*data["services"][0]["routes"], {"path": route,
                                                                        "pool": "course"}]  # fmt: skip
    return copy.deepcopy(data)


class Watchers:
    """The argv/environ watcher on every front end, run as root over the lab's own ssh."""

    def __init__(self, lab: Lab) -> None:
        self.procs = {
            fe.name: subprocess.Popen(
                lab.info.ssh_argv(fe.name, "python3", "-c", shlex.quote(WATCH)),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for fe in lab.frontends
        }
        for p in self.procs.values():
            assert p.stdin is not None
            p.stdin.write(PASSWORD + "\n")
            p.stdin.flush()

    def hits(self) -> dict[str, str]:
        out = {}
        for name, p in self.procs.items():
            text, _ = p.communicate(timeout=60)
            out[name] = text.strip()
        return out


def assert_nowhere(lab: Lab, text: str) -> None:
    assert PASSWORD not in text
    for fe in lab.frontends:
        found = lab.ssh(
            fe.name,
            f"grep -rlF -e {PASSWORD} /etc/haproxy /etc/nginx /var/lib/clusterctl /tmp "
            "/var/log 2>/dev/null || true",
        ).out
        assert found.strip() == "", f"{fe.name}: the password is in {found}"


@pytest.mark.parametrize("user", ["deploy", "deploypw"])
def test_apply_as_a_sudo_user_never_lets_the_password_out(lab: Lab, user: str) -> None:
    lab.write(as_user(lab, user, f"/as-{user}"))
    watchers = Watchers(lab)
    run = cli("apply", "-i", str(lab.inventory), "--yes",
              env={"CLUSTERCTL_SUDO_PASSWORD": PASSWORD})  # fmt: skip
    hits = watchers.hits()
    assert run.rc == 0, run
    assert set(results_table(run).values()) == {"changed"}, run
    assert hits == dict.fromkeys(("lb1", "lb2"), "HITS none"), hits
    assert_nowhere(lab, run.text)
    for fe in lab.frontends:
        wait_serving(fe.address, f"/as-{user}")
    # The files were installed by root through sudo, as rendered.
    assert cli("plan", "-i", str(lab.inventory), "--detailed-exitcode",
               env={"CLUSTERCTL_SUDO_PASSWORD": PASSWORD}).rc == 0  # fmt: skip


def test_password_sudo_without_or_with_a_wrong_password_says_so(lab: Lab) -> None:
    lab.write(as_user(lab, "deploypw", "/never"))
    missing = cli("plan", "-i", str(lab.inventory))
    assert missing.rc == 1, missing
    assert "sudo for deploypw asks for a password: set CLUSTERCTL_SUDO_PASSWORD" in missing.text
    wrong = cli("apply", "-i", str(lab.inventory), "--yes",
                env={"CLUSTERCTL_SUDO_PASSWORD": "not-" + PASSWORD})  # fmt: skip
    assert wrong.rc == 1, wrong
    assert "sudo for deploypw refused the password" in wrong.text, wrong
    assert PASSWORD not in wrong.text


def test_a_dropped_session_is_named_with_its_step_and_reconnect_recovers(lab: Lab) -> None:
    lab.write(as_user(lab, "deploy", "/dropped"))
    inv = load(lab.inventory)
    with Remote.connect(frontend_endpoints(inv)["lb1"]) as remote:
        # The host's sshd process serving this connection dies, as on a crashed link.
        with contextlib.suppress(SSHError):
            remote.sh('kill -9 "$PPID"', sudo=False)
        with pytest.raises(SSHError) as lost:
            for _ in range(20):
                remote.sh("true", step="reload")
                time.sleep(0.1)
        assert str(lost.value).startswith(
            f"connection to lb1 ({lab.address('lb1')}) lost during reload: "
        ), lost.value
        remote.reconnect()
        assert remote.sh("id -un").out == "root\n"  # through sudo, on the new session
