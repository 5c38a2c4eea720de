"""ssh.shared_sessions: one session per host for the lock, the facts and apply of one command."""

from __future__ import annotations

from typing import Any

import pytest

from clusterctl.execute import ssh
from clusterctl.execute.ssh import Endpoint, Remote, shared_sessions


class FakeTransport:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


class FakeClient:
    def __init__(self) -> None:
        self.transport = FakeTransport()
        self.closed = False

    def get_transport(self) -> FakeTransport:
        return self.transport

    def close(self) -> None:
        self.closed = True
        self.transport.active = False


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Remote]:
    made: list[Remote] = []

    def fake_open(cls: Any, ep: Endpoint) -> Remote:
        remote = Remote(ep, FakeClient())  # type: ignore[arg-type]
        made.append(remote)
        return remote

    monkeypatch.setattr(Remote, "open", classmethod(fake_open))
    return made


EP = Endpoint("lb1", "192.0.2.10")


def test_one_session_per_host_inside_the_block(opened: list[Remote]) -> None:
    with shared_sessions():
        with Remote.connect(EP) as first:
            pass
        with Remote.connect(EP) as second:
            assert second is first
        other = Remote.connect(Endpoint("lb2", "192.0.2.11"))
        assert other is not first
        assert not first.client.closed  # type: ignore[attr-defined]
    assert len(opened) == 2
    assert all(r.client.closed for r in opened)  # type: ignore[attr-defined]
    assert ssh._pool is None


def test_outside_the_block_each_connect_opens_and_with_closes(opened: list[Remote]) -> None:
    with Remote.connect(EP) as first:
        pass
    with Remote.connect(EP) as second:
        pass
    assert second is not first
    assert first.client.closed and second.client.closed  # type: ignore[attr-defined]


def test_a_closed_or_dead_session_is_replaced(opened: list[Remote]) -> None:
    with shared_sessions():
        first = Remote.connect(EP)
        first.close()  # on purpose (it broke, it hung): the next user gets a fresh one
        second = Remote.connect(EP)
        assert second is not first
        second.client.get_transport().active = False  # type: ignore[attr-defined]
        third = Remote.connect(EP)
        assert third is not second
        assert second.client.closed  # type: ignore[attr-defined]
    assert len(opened) == 3


def test_a_nested_block_shares_the_outer_one(opened: list[Remote]) -> None:
    with shared_sessions():
        outer = Remote.connect(EP)
        with shared_sessions():
            assert Remote.connect(EP) is outer
        assert not outer.client.closed  # type: ignore[attr-defined]
        assert Remote.connect(EP) is outer
    assert outer.client.closed  # type: ignore[attr-defined]
