"""The cluster lock as an operator sees it and breaks it by hand: `lock show`, `lock break`."""

from __future__ import annotations

from collections.abc import Mapping

from clusterctl.errors import ClusterctlError
from clusterctl.execute import lock as lk
from clusterctl.execute.quorum import (
    Sessions,
    Voters,
    break_command,
    holders,
    named,
    need_text,
    views_of,
)


def survey(vs: Voters, sessions: Sessions) -> dict[str, lk.HostView]:
    return views_of(sessions.each(vs.endpoints, lk.look))


def report_lines(
    views: Mapping[str, lk.HostView], vs: Voters, inventory: str, me: lk.Machine
) -> list[str]:
    """`lock show`: every lock seen, on which hosts, whether it is stale, how to break it; a
    lock dir without a readable record counts as held."""
    lines = []
    for lock_id, (info, hosts) in holders(views).items():
        line = f"cluster lock: {info.describe()}, on {len(hosts)} of {vs.total} hosts ({', '.join(hosts)})"
        ages = [views[h].age for h in hosts]
        stale = lk.stale_reason(info, ages, me)
        if stale is not None:
            line += f"; stale: {stale[0]}, the next command takes it over"
        elif info.lease:
            line += f"; lease {info.lease:.0f}s, renewed {min(ages):.0f}s ago"
        lines.append(f"{line}; to break it: {break_command(inventory, lock_id)}")
    blank = [h for h, v in views.items() if v.state == "unrecorded"]
    if blank:
        lines.append(
            f"cluster lock: held on {', '.join(blank)} by a lock with no readable record "
            f"({lk.LOCK_DIR}); if no clusterctl runs, break it with: "
            f"{break_command(inventory, '--no-record')}"
        )
    bad = [v for v in views.values() if v.state not in ("held", "ours", "unrecorded", "free")]
    if not lines:
        lines.append(
            f"cluster lock: free on the {vs.total - len(bad)} of {vs.total} hosts that answered "
            f"(a command needs {need_text(vs.total)})"
            if bad
            else "cluster lock: free"
        )
    return lines + [f"  {named(v.host, v.detail)}" for v in bad]


def break_lock(vs: Voters, sessions: Sessions, inventory: str, lock_id: str | None) -> list[str]:
    """Remove the lock with this id (or, with None, every lock dir without a readable record)
    from each host that has it; only that one, so a lock taken meanwhile stays."""
    views = survey(vs, sessions)
    me = lk.this_machine()
    if lock_id is None:
        raw = {h: v.raw for h, v in views.items() if v.state == "unrecorded"}
        what = "the lock with no readable record"
        if not raw:
            shown = "; ".join(report_lines(views, vs, inventory, me))
            raise ClusterctlError(f"no host has a lock without a readable record ({shown})")
        got = sessions.each(raw, lambda r: lk.break_unrecorded(r, raw[r.ep.name]))
    else:
        targets = [h for h, v in views.items() if v.info is not None and v.info.id == lock_id]
        what = f"lock {lock_id}"
        if not targets:
            shown = "; ".join(report_lines(views, vs, inventory, me))
            raise ClusterctlError(f"the cluster lock does not have id {lock_id} ({shown})")
        got = sessions.each(targets, lambda r: lk.release_view(r, lock_id))
    done = [h for h, v in views_of(got).items() if v.state in ("released", "free")]
    failed = [v for v in views_of(got).values() if v.state not in ("released", "free")]
    if failed:
        raise ClusterctlError(
            f"{what} broken on {', '.join(done) or 'no host'} but not on "
            + "; ".join(named(v.host, v.detail or f"now {v.state}") for v in failed)
            + "; run the same command again"
        )
    lines = [f"{what} broken on {len(done)} of {vs.total} hosts ({', '.join(done)})"]
    silent = [v for v in views.values() if v.state == "error"]
    if silent:
        lines.append("  not checked, run this again once they answer:")
        lines += [f"  {named(v.host, v.detail)}" for v in silent]
    return lines
