"""Apache's balancer-manager answers clusterctl only, not any local user.

`Require local` checks only the address, and every user of the host shares 127.0.0.1. A real
Apache runs the rendered config; the host-side step that precedes every reload (the driver's
before_reload script, run here as apply runs it, as root) makes the token files, and a
graceful restart loads them. Then a user with uid 65534 is refused while clusterctl's own
calls (admin.apache_workers and apache_set, their real curl scripts run as root on this host)
list and drain members.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterctl.drivers.apache import ApacheDriver
from clusterctl.execute.admin import AdminError, apache_set, apache_workers
from clusterctl.execute.ssh import Result
from clusterctl.model.schema import Frontend, Paths
from tests.helpers.cluster import Cluster, running_cluster
from tests.helpers.frontends import have

pytestmark = pytest.mark.servers
NOBODY = 65534


class LocalRemote:
    """clusterctl's Remote.sh, run on this host as root instead of over SSH."""

    def sh(self, script: str, *args: str, **kw: object) -> Result:
        argv = ("sh", "-c", script, "clusterctl", *args)
        stdin = kw.get("stdin")
        proc = subprocess.run(
            argv, capture_output=True, input=stdin if isinstance(stdin, bytes) else None,
            timeout=30, check=False,
        )  # fmt: skip
        out, err = proc.stdout.decode(), proc.stderr.decode()
        return Result(argv, proc.returncode, out, err)


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def status(c: Cluster, *curl_args: str) -> str:
    url = f"http://127.0.0.1:{c.ports['admin']}/balancer-manager"
    proc = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *curl_args, "--", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.stdout


@pytest.fixture(scope="module")
def apache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Frontend]]:
    if not have("apache"):
        pytest.skip("apache2 is not installed (bash scripts/setup.sh installs it)")
    work = tmp_path_factory.mktemp("manager")
    with running_cluster("apache", work, manager_token=False) as c:
        # The front end as admin.py sees it on the host: its config where this test put it.
        fe = c.inv.frontends[0]
        config = f"{c.frontend.root}{ApacheDriver().paths(fe).config}"
        yield c, dataclasses.replace(fe, paths=Paths(config=config))


def test_without_a_token_file_the_manager_refuses_everyone(
    apache: tuple[Cluster, Frontend],
) -> None:
    c, fe = apache
    conf, _ = ApacheDriver().manager_token_paths(fe)
    assert not Path(conf).exists()  # nothing made it yet: fails closed, even for root
    assert status(c) == "403"
    assert status(c, "-H", "X-Clusterctl-Token: ${CLUSTERCTL_MANAGER_TOKEN}") == "403"


@pytest.fixture(scope="module")
def with_token(apache: tuple[Cluster, Frontend]) -> tuple[Cluster, Frontend]:
    c, fe = apache
    script, args = ApacheDriver().before_reload(fe) or ("", [])
    res = LocalRemote().sh(script, *args)
    assert res.ok, res.err
    header = ApacheDriver().manager_token_paths(fe)[1]
    os.kill(c.frontend.proc.pid, signal.SIGUSR1)  # graceful, as apache2ctl graceful
    deadline = time.monotonic() + 15
    while status(c, "-H", f"@{header}") != "200":
        assert time.monotonic() < deadline, "the manager never took the token"
        time.sleep(0.1)
    return c, fe


def test_the_token_files_are_root_only(with_token: tuple[Cluster, Frontend]) -> None:
    _, fe = with_token
    for path in ApacheDriver().manager_token_paths(fe):
        st = Path(path).stat()
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600), path
        assert as_nobody("cat", path).returncode != 0


def test_a_local_user_is_refused(with_token: tuple[Cluster, Frontend]) -> None:
    c, _ = with_token
    url = f"http://127.0.0.1:{c.ports['admin']}/balancer-manager"
    page = as_nobody("curl", "-s", "-w", "\n%{http_code}", "--", url)
    assert page.stdout.endswith("\n403"), page.stdout[-300:]
    assert "nonce" not in page.stdout  # nothing to forge a change with
    assert status(c, "-H", "X-Clusterctl-Token: " + "0" * 64) == "403"


def test_clusterctl_lists_and_drains_members(with_token: tuple[Cluster, Frontend]) -> None:
    _, fe = with_token
    remote = LocalRemote()
    workers = apache_workers(remote, fe)  # type: ignore[arg-type]
    assert {w.route for w in workers} >= {"a1", "a2", "h1"}
    try:
        apache_set(remote, fe, "a2", "drain")  # type: ignore[arg-type]
        (a2,) = [w for w in apache_workers(remote, fe) if w.route == "a2"]  # type: ignore[arg-type]
        assert "Drn" in a2.status
    finally:
        apache_set(remote, fe, "a2", "ready")  # type: ignore[arg-type]


def test_clusterctl_without_the_header_file_is_refused_too(
    with_token: tuple[Cluster, Frontend],
) -> None:
    _, fe = with_token
    elsewhere = dataclasses.replace(fe, paths=Paths(config="/nonexistent/apache2.conf"))
    with pytest.raises(AdminError, match="403"):
        apache_workers(LocalRemote(), elsewhere)  # type: ignore[arg-type]
