"""molecule verify (broken-release): the rollout of a release broken on be2 stopped at be2.

be1 (upgraded before be2) serves the new release; be2 is drained on every front end and back
on its old release; be3 is untouched and serving; no request through a front end reaches be2.
Hosts are reached through clusterctl.verify (testinfra, strict host keys), states read with
`clusterctl status --output json`.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from clusterctl.rollout import state_file
from clusterctl.verify.targets import Connections, Settings, http_probe, make_targets

BROKEN = os.environ.get("BROKEN_VERSION", "9.9.9")
OLD = os.environ.get("OLD_VERSION", "1.0.0")


@pytest.fixture(scope="module")
def conn() -> Iterator[Connections]:
    connections = Connections.open(make_targets(Settings.from_env()))
    try:
        yield connections
    finally:
        connections.close()


@pytest.fixture(scope="module")
def status(conn: Connections) -> list[dict[str, Any]]:
    inventory = str(conn.targets.settings.inventory)
    proc = subprocess.run(
        [sys.executable, "-m", "clusterctl", "status", "-i", inventory, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    views: list[dict[str, Any]] = json.loads(proc.stdout)
    return views


def health(conn: Connections, node: str) -> tuple[int, str | None]:
    """(status, release) of the node's health URL, asked on the node itself."""
    b = next(b for b in conn.targets.backends if b.name == node)
    code, release, err = http_probe(conn.backend(node), b.health_url, b.version_header)
    assert code, f"{node}: {b.health_url} did not answer: {err}"
    return code, release


def views_of(status: list[dict[str, Any]], node: str) -> dict[str, dict[str, Any]]:
    return {v["frontend"]: v for v in status if v["server"] == node}


def frontends(conn: Connections) -> set[str]:
    return {fe.name for fe in conn.targets.frontends}


def test_be1_serves_the_new_release(conn: Connections) -> None:
    assert health(conn, "be1") == (200, BROKEN)


def test_be1_is_back_in_service(conn: Connections, status: list[dict[str, Any]]) -> None:
    views = views_of(status, "be1")
    assert set(views) == frontends(conn)
    for fe, v in views.items():
        assert v["state"] == "ready", f"{fe}: {v}"
        assert v["health"] in ("up", "unknown"), f"{fe}: {v}"


def test_be2_is_back_on_its_old_release(conn: Connections) -> None:
    assert health(conn, "be2") == (200, OLD)
    current = conn.backend("be2").file("/srv/app/current")
    assert current.linked_to.endswith(f"/releases/{OLD}")
    broken = conn.backend("be2").file(f"/srv/app/releases/{BROKEN}/BROKEN")
    assert broken.exists, "the broken release's mark is gone"


def test_be2_is_drained_on_every_front_end(conn: Connections, status: list[dict[str, Any]]) -> None:
    views = views_of(status, "be2")
    assert set(views) == frontends(conn)
    for fe, v in views.items():
        # drained, or taken further out (maint) once its sessions were gone: no new traffic
        assert v["state"] in ("drain", "maint"), f"{fe} does not have be2 drained: {v}"


def test_be3_is_untouched_and_serving(conn: Connections, status: list[dict[str, Any]]) -> None:
    assert health(conn, "be3") == (200, OLD)
    assert not conn.backend("be3").file(f"/srv/app/releases/{BROKEN}").exists
    views = views_of(status, "be3")
    assert set(views) == frontends(conn)
    for fe, v in views.items():
        assert v["state"] == "ready", f"{fe}: {v}"
        assert v["health"] in ("up", "unknown"), f"{fe}: {v}"


def test_rollout_stopped_at_be2_private_check(conn: Connections) -> None:
    lock_host = conn.targets.inventory.frontends[0].name
    state = json.loads(
        conn.frontend(lock_host).file(state_file(conn.targets.inventory.cluster)).content_string
    )
    assert state["version"] == BROKEN
    assert state["status"] == "failed"
    assert state["failed"]["node"] == "be2"
    assert state["failed"]["step"] == "check", state["failed"]
    assert state["failed"]["drained"] is True
    assert state["done"] == ["be1"]


def test_no_request_reaches_be2(conn: Connections) -> None:
    """Fresh clients (no cookie) through every front end land on be1 and be3 only."""
    for fe in conn.targets.frontends:
        seen: dict[str, int] = {}
        for _ in range(12):
            c = http.client.HTTPConnection(fe.address, 80, timeout=10)
            try:
                c.request("GET", "/", headers={"Connection": "close"})
                resp = c.getresponse()
                resp.read()
            finally:
                c.close()
            assert resp.status == 200, f"{fe.name}: HTTP {resp.status}"
            backend = resp.getheader("X-Backend") or "?"
            seen[backend] = seen.get(backend, 0) + 1
        assert "be2" not in seen, f"{fe.name} sent requests to the drained be2: {seen}"
        assert set(seen) <= {"be1", "be3"}, f"{fe.name}: {seen}"
