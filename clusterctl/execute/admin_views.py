"""The interpreter of a driver's runtime control: run its Commands on the host, feed it the answers.

What to run and what the answers mean is the driver's (drivers/control.py and each kind's
*_control.py); this module only runs argv over the Remote, without a shell of its own, with
the command's stdin (socket commands, forms) never in argv. nginx's re-render path is in
admin.py.
"""

from __future__ import annotations

import time

from clusterctl.drivers import driver_for
from clusterctl.drivers.apache_control import (
    ApacheWorker,
    apache_view,
    parse_balancer_manager,
)
from clusterctl.drivers.control import Change, Command, ControlRefused, Live, ServerView
from clusterctl.drivers.haproxy_control import parse_haproxy_stat
from clusterctl.execute.chain import Part, sh_many
from clusterctl.execute.ssh import Remote, Result
from clusterctl.model.queries import frontend_pools
from clusterctl.model.queries import node_pools as node_pools
from clusterctl.model.schema import Frontend

__all__ = ["ApacheWorker", "ServerView", "apache_view", "parse_balancer_manager"]
__all__ += ["parse_haproxy_stat"]

# One exception for what a front end's runtime interface refuses or cannot answer.
AdminError = ControlRefused
pools_of = frontend_pools  # the old name; model/queries.py answers it


_RETRY_EVERY = 0.5


def run_command(remote: Remote, fe: Frontend, cmd: Command, step: str = "runtime") -> str:
    """Run one Command on the host as root and return its output; a failed run is an error.

    A command with `retry_while` runs again while its answer says so, for at most `retry_for`
    seconds (a server the front end cannot delete while its last connections close).
    """
    deadline = time.monotonic() + cmd.retry_for
    while True:
        res = remote.sh('exec "$@"', *cmd.argv, stdin=cmd.stdin or None, step=step)
        if not res.ok:
            raise AdminError(f"{fe.name}: {cmd.what or cmd.argv[0]}: {res.words()}")
        if not cmd.retry_while or cmd.retry_while not in res.out:
            return res.out
        if time.monotonic() >= deadline:
            raise AdminError(
                f"{fe.name}: {cmd.what}: still refused after {cmd.retry_for:.0f} s: "
                f"{res.out.strip()[:200]}"
            )
        time.sleep(_RETRY_EVERY)


def read_live(remote: Remote, fe: Frontend) -> Live:
    driver = driver_for(fe.kind)
    cmds = driver.read_commands(fe)
    if len(cmds) < 2 or any(c.retry_while for c in cmds):
        return driver.parse_live(fe, [run_command(remote, fe, c, "read") for c in cmds])
    # Several reads (nginx's Lua balancer): one round trip, each still failing as itself.
    results = sh_many(remote, [_part(c) for c in cmds], step="read")
    return driver.parse_live(fe, _answers(fe, cmds, results))


def run_changes(
    remote: Remote, fe: Frontend, changes: list[Change], live: Live | None = None
) -> int:
    """Make member changes through the front end's runtime interface; how many commands ran.

    The commands are built before any runs (a change the kind cannot make refuses them all);
    each answer is checked before the next command goes, so a refusal stops the rest.
    """
    driver = driver_for(fe.kind)
    commands = driver.change_commands(fe, live or read_live(remote, fe), changes)
    outputs: list[str] = []
    for cmd in commands:
        outputs.append(run_command(remote, fe, cmd))
        try:
            driver.check_change(fe, changes, outputs)
        except ControlRefused as exc:
            raise AdminError(f"{exc} (after: {cmd.what})") from None
    for cmd in driver.persist_commands(fe):
        run_command(remote, fe, cmd, "persist")
    return len(commands)


def _part(cmd: Command) -> Part:
    return Part('exec "$@"', tuple(cmd.argv), stdin=cmd.stdin or None)


def _answers(fe: Frontend, cmds: list[Command], results: list[Result]) -> list[str]:
    """Each command's output; a command that failed (or never ran) is an error by its name."""
    for cmd, res in zip(cmds, results, strict=False):
        if not res.ok:
            raise AdminError(f"{fe.name}: {cmd.what or cmd.argv[0]}: {res.words()}")
    if len(results) < len(cmds):
        raise AdminError(f"{fe.name}: {cmds[len(results)].what}: did not run")
    return [res.out for res in results]


def change_read(remote: Remote, fe: Frontend, changes: list[Change], live: Live) -> Live:
    """Make state changes, save them, and read the front end's view back: one remote command.

    Every answer is checked as run_changes checks it, in order (the first refusal is the
    error), and the view after the change is the front end's own report, parsed from the same
    output. Only for state changes: they are independent (one per pool of one node), so a
    refusal need not stop the next one before it runs; a failed run still ends the chain.
    """
    if {ch.kind for ch in changes} - {"state"}:
        raise ValueError("change_read makes state changes only")
    driver = driver_for(fe.kind)
    commands = driver.change_commands(fe, live, changes)
    persist = driver.persist_commands(fe)
    reads = driver.read_commands(fe)
    every = [*commands, *persist, *reads]
    if any(c.retry_while for c in every):
        run_changes(remote, fe, changes, live)
        return read_live(remote, fe)
    results = sh_many(remote, [_part(c) for c in every], step="runtime")
    outputs: list[str] = []
    for cmd, res in zip(commands, results, strict=False):
        outputs += _answers(fe, [cmd], [res])
        try:
            driver.check_change(fe, changes, outputs)
        except ControlRefused as exc:
            raise AdminError(f"{exc} (after: {cmd.what})") from None
    answers = _answers(fe, every, results)
    return driver.parse_live(fe, answers[len(commands) + len(persist) :])


def shows(live: Live, node: str, state: str) -> bool:
    """The view lists the node, in `state` in every pool it is in."""
    mine = [v for v in live.views if v.server == node]
    return bool(mine) and all(v.state == state for v in mine)


def set_state_read(
    remote: Remote, fe: Frontend, node: str, state: str, live: Live | None = None
) -> Live:
    """Put `node` in `state` in every pool the front end runs it in; its view after the change.

    `live` is an earlier view over the same session (the pools the node is in and, for
    Apache, the manager's nonce): then the change and the read that confirms it are one round
    trip. When the view after it does not show the state (Apache ignores a form with a nonce
    it renewed since, and still answers 200), the change goes again from that fresher view,
    as it would have with a read first. From a fresh view the answers are the confirmation, as
    they were (a HAProxy server that is down reports DOWN, not its admin state).
    """
    fresh = live is None
    view = live if live is not None else read_live(remote, fe)
    while True:
        pools = sorted({v.pool for v in view.views if v.server == node})
        if not pools:
            if fresh:
                raise AdminError(
                    f"{fe.name}: its runtime interface lists no member with route {node}"
                )
            view, fresh = read_live(remote, fe), True
            continue
        changes = [Change("state", p, node, state=state) for p in pools]  # type: ignore[arg-type]
        after = change_read(remote, fe, changes, view)
        if fresh or shows(after, node, state):
            return after
        view, fresh = after, True


# ---------------------------------------------------------------------------- Apache's words


def apache_workers(remote: Remote, fe: Frontend) -> list[ApacheWorker]:
    """The balancer-manager's members as its page lists them."""
    (cmd,) = driver_for(fe.kind).read_commands(fe)
    return parse_balancer_manager(run_command(remote, fe, cmd, "read"))


def apache_set(remote: Remote, fe: Frontend, node: str, state: str) -> None:
    set_state_read(remote, fe, node, state)
