"""Small JSON records (a rollout's progress) kept on a majority of the cluster's hosts.

A record is written to every host that answers and counts as saved once a quorum (the lock's:
more than half of all hosts, or half with the first front end) has it. A read asks every host
and needs answers from a quorum; any two quorums share a host, so the newest copy (the highest
sequence number) is among the answers. Writers hold the cluster lock, so "one more than the
newest seen" orders them without trusting anyone's clock.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from clusterctl.errors import ClusterctlError
from clusterctl.errors import RecordError as RecordError
from clusterctl.execute import quorum
from clusterctl.execute.ssh import Remote
from clusterctl.model.schema import Inventory

SEQ = "record_seq"
DOWN_FOR = 60.0  # a host that did not connect is not asked again for this long

Opener = Callable[[], Remote]

_WRITE = r"""mkdir -p -- "$(dirname -- "$1")" &&
printf '%s\n' "$2" | cat > "$1.tmp" && [ "$(cat -- "$1.tmp")" = "$2" ] && mv -f -- "$1.tmp" "$1" ||
{ rm -f -- "$1.tmp"; exit 1; }
"""
_READ = r"""if [ -e "$1" ]; then echo PRESENT; cat -- "$1"; else echo ABSENT; fi"""

_down: dict[str, float] = {}
_last_seq: dict[str, int] = {}
_guard = threading.Lock()


def sources(
    inv: Inventory, frontends: Mapping[str, Remote], node: Callable[[str], Remote]
) -> dict[str, Opener]:
    """How to reach each voting host through sessions a command already has (front ends) or
    opens once when needed (backends)."""
    out: dict[str, Opener] = {}
    for name in quorum.voters(inv).endpoints:
        if name in frontends:
            out[name] = lambda n=name: frontends[n]  # type: ignore[misc]
        else:
            out[name] = lambda n=name: node(n)  # type: ignore[misc]
    return out


def _each(hosts: Mapping[str, Opener], fn: Callable[[Remote], Any]) -> dict[str, Any]:
    def one(name: str) -> Any:
        with _guard:
            if time.monotonic() - _down.get(name, -DOWN_FOR) < DOWN_FOR:
                return ClusterctlError(f"{name}: did not answer a moment ago")
        try:
            remote = hosts[name]()
        except ClusterctlError as exc:
            with _guard:
                _down[name] = time.monotonic()
            return exc
        try:
            return fn(remote)
        except ClusterctlError as exc:
            return exc

    names = list(hosts)
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(names)))) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


def parse_copy(text: str) -> tuple[bool, dict[str, Any] | None]:
    """(answered, record) from one host's reply: an absent file is an answer with no record; a
    copy that does not parse is no answer (that host may have held the newest)."""
    first, _, rest = text.partition("\n")
    if first.strip() == "ABSENT":
        return True, None
    if first.strip() != "PRESENT":
        return False, None
    try:
        data = json.loads(rest)
    except ValueError:
        return False, None
    return (True, data) if isinstance(data, dict) else (False, None)


def newest(
    copies: Mapping[str, tuple[bool, dict[str, Any] | None]], total: int, tiebreaker: str
) -> dict[str, Any] | None:
    """The copy with the highest sequence among the answers, if the answers make a quorum."""
    answered = [h for h, (ok, _) in copies.items() if ok]
    if not quorum.is_quorum(len(answered), total, tiebreaker in answered):
        raise RecordError(
            f"only {len(answered)} of {total} hosts answered; reading needs {quorum.need_text(total)}"
        )
    found = [data for ok, data in copies.values() if ok and data is not None]
    if not found:
        return None
    return max(found, key=lambda d: int(d.get(SEQ, 0)) if str(d.get(SEQ, 0)).isdigit() else 0)


def _read_all(hosts: Mapping[str, Opener], tiebreaker: str, path: str) -> dict[str, Any] | None:
    results = _each(hosts, lambda r: r.sh(_READ, path).out)
    copies = {h: parse_copy(v) if isinstance(v, str) else (False, None) for h, v in results.items()}
    try:
        return newest(copies, len(hosts), tiebreaker)
    except RecordError as exc:
        silent = "; ".join(
            quorum.named(h, str(v)) for h, v in results.items() if not isinstance(v, str)
        )
        raise RecordError(
            f"cannot read {path}: {exc}" + (f" ({silent})" if silent else "")
        ) from None


def load_record(hosts: Mapping[str, Opener], tiebreaker: str, path: str) -> dict[str, Any] | None:
    """The newest copy of the record at `path`, without its sequence number; None if none."""
    data = _read_all(hosts, tiebreaker, path)
    if data is None:
        return None
    seq = data.get(SEQ, 0)
    with _guard:
        _last_seq[path] = max(_last_seq.get(path, 0), int(seq) if str(seq).isdigit() else 0)
    return {k: v for k, v in data.items() if k != SEQ}


def save_record(
    hosts: Mapping[str, Opener], tiebreaker: str, path: str, data: dict[str, Any]
) -> None:
    """Write the record to every host that answers; fails unless a quorum has it."""
    with _guard:
        known = path in _last_seq
    if not known:
        load_record(hosts, tiebreaker, path)
    with _guard:
        seq = _last_seq.get(path, 0) + 1
        _last_seq[path] = seq
    text = json.dumps({**data, SEQ: seq}, indent=2)

    def write(remote: Remote) -> str:
        res = remote.sh(_WRITE, path, text)
        return "" if res.ok else res.words()

    results = _each(hosts, write)
    saved = [h for h, v in results.items() if v == ""]
    if not quorum.is_quorum(len(saved), len(hosts), tiebreaker in saved):
        failed = "; ".join(quorum.named(h, str(v)) for h, v in results.items() if v != "")
        raise RecordError(
            f"could not save {path} on enough hosts ({len(saved)} of {len(hosts)}; it needs "
            f"{quorum.need_text(len(hosts))}): {failed}"
        )
