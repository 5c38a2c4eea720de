"""The proxy features' local files and cross-checks, read when the inventory loads.

A service's unavailable page is a file in the inventory's folder, read here like the TLS files
(render stays pure) and held to the same rules: it must not lead to a system file, a secret
place or an SSH key. Each kind sends it from a buffer (HAProxy's http-error is bounded by its
16 KiB buffer with the headers), so it is small UTF-8 text.
"""

from __future__ import annotations

from pathlib import Path

from clusterctl.errors import Problem
from clusterctl.model.localfiles import read_shippable, resolve_local
from clusterctl.model.schema import Inventory, Pos

MAX_PAGE = 8 * 1024


def _read_page(local: Path) -> bytes:
    data = read_shippable(
        local,
        MAX_PAGE,
        lambda _: f"is larger than {MAX_PAGE // 1024} KiB (HAProxy sends it from a buffer)",
    )
    if b"PRIVATE KEY-----" in data:
        raise ValueError("holds a private key, not a page")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"is not UTF-8 text (byte {data[exc.start]:#04x})") from None
    return data


def _problem(at: Pos, message: str) -> Problem:
    return Problem(at.file, at.line, at.col, message)


def read_pages(model: Inventory, base: Path) -> tuple[dict[str, bytes], list[Problem]]:
    """The unavailable pages' contents, and every problem with them or the other features."""
    files: dict[str, bytes] = {}
    problems: list[Problem] = []
    for i, svc in enumerate(model.services):
        ref = svc.unavailable.page
        if ref is None:
            continue
        at = svc.unavailable.at.get("page", svc.unavailable.at.get("", svc.at[""]))
        where = f"services[{i}].unavailable.page"
        if svc.mode != "http":
            problems.append(_problem(at, f"{where}: a tcp service has no pages to show"))
            continue
        try:
            files[ref] = _read_page(resolve_local(ref, base))
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            problems.append(_problem(at, f"{where}: {ref}: {why}"))
    return files, problems + _frontend_problems(model) + _pool_problems(model)


def _frontend_problems(model: Inventory) -> list[Problem]:
    from clusterctl.drivers import driver_for  # the drivers import the model

    problems: list[Problem] = []
    for i, fe in enumerate(model.frontends):
        driver = driver_for(fe.kind)
        if "syslog" in fe.at and not driver.logs_to_syslog:
            msg = f"frontends[{i}].syslog: only haproxy front ends log to syslog"
            problems.append(_problem(fe.at["syslog"], msg + f" ({fe.kind} writes its own files)"))
        m = fe.metrics
        if m is None:
            continue
        taken = {fe.admin_port: "admin_port"} if driver.has_admin_port else {}
        if driver.has_admin_socket:
            taken[fe.peer_port] = "peer_port"
        for svc in model.services:
            if fe.services is None or svc.name in fe.services:
                for ln in svc.listen:
                    if ln.address in ("*", m.address) or m.address == "*":
                        taken.setdefault(ln.port, f"service {svc.name}'s listener")
        if m.port in taken:
            at = m.at.get("port", m.at[""])
            msg = f"frontends[{i}].metrics.port: {m.port} is already {taken[m.port]}'s port"
            problems.append(_problem(at, msg))
    return problems


def _pool_problems(model: Inventory) -> list[Problem]:
    tcp = {
        name
        for svc in model.services
        if svc.mode == "tcp"
        for name in [svc.default_pool, *(r.pool for r in svc.routes)]
    }
    return [
        _problem(
            pool.at["maintenance"],
            f"pools[{i}].maintenance: {pool.name} serves a tcp service, which has no page to show",
        )
        for i, pool in enumerate(model.pools)
        if pool.maintenance and pool.name in tcp
    ]
