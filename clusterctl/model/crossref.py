"""Suggestions and references read before the model exists.

A route to a missing pool is worth reporting in the same run as a mistyped port: when the
structure has problems the typed model is never built, so the names are read from the YAML
tree as written, only where they are plain strings.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

from clusterctl.errors import Problem
from clusterctl.model.yamlread import Map, Seq

# difflib's default (0.6) offers 'api' for 'app' and 'stats' for 'static': a suggestion is only
# worth reading when it is a typo away (a letter swapped, dropped or doubled).
CLOSE = 0.75


def _swapped(a: str, b: str) -> bool:
    """Two neighbouring letters swapped ('wbe', 'web'): close however short the word."""
    if len(a) != len(b):
        return False
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    if len(diff) != 2 or diff[1] != diff[0] + 1:
        return False
    i, j = diff
    return a[i] == b[j] and a[j] == b[i]


def close_match(word: str, options: Iterable[str]) -> str | None:
    """The option `word` is most likely a typo of, or None when none is close."""
    names = list(options)
    near = difflib.get_close_matches(word, names, n=1, cutoff=CLOSE)
    if near:
        return near[0]
    return next((n for n in names if _swapped(word, n)), None)


def missing(what: str, name: str, known: Iterable[str]) -> str:
    names = list(known)
    near = close_match(name, names)
    hint = f"; did you mean {near!r}?" if near else f" (known: {', '.join(names) or 'none'})"
    return f"no {what} named {name!r}{hint}"


def _items(doc: Any, key: str) -> list[tuple[int, Map]]:
    seq = doc.get(key) if isinstance(doc, Map) else None
    if not isinstance(seq, Seq):
        return []
    return [(i, item) for i, item in enumerate(seq) if isinstance(item, Map)]


def _names(doc: Any, key: str) -> list[str]:
    return [m["name"] for _, m in _items(doc, key) if isinstance(m.get("name"), str)]


# A problem with a list itself, one of its entries or an entry's name: "pools[2].name: ...".
_NAME_PROBLEM = re.compile(r"(pools|services)(\[\d+\](\.name)?)?: ")


def raw_references(doc: Any, file: str, found: Iterable[Problem] = ()) -> list[Problem]:
    """Names that point nowhere, read from the YAML tree itself (pools, services).

    A list with a broken name among its entries (`found` says so) is not checked against: the
    reference may well be to that entry, whose own problem is already reported.
    """
    problems: list[Problem] = []
    broken = {m.group(1) for p in found if (m := _NAME_PROBLEM.match(p.message))}
    pools = _names(doc, "pools")
    services = _names(doc, "services")

    def check(node: Map, key: str, path: str, what: str, known: list[str]) -> None:
        value = node.get(key)
        if f"{what}s" in broken:
            return
        if isinstance(value, str) and value not in known:
            line, col = node.values_at.get(key, node.at)
            problems.append(Problem(file, line, col, f"{path}: {missing(what, value, known)}"))

    for si, svc in _items(doc, "services"):
        check(svc, "default_pool", f"services[{si}].default_pool", "pool", pools)
        for ri, route in _items(svc, "routes"):
            check(route, "pool", f"services[{si}].routes[{ri}].pool", "pool", pools)
    for fi, fe in _items(doc, "frontends"):
        names = fe.get("services")
        if isinstance(names, Seq):
            for name in names:
                if isinstance(name, str) and name not in services and "services" not in broken:
                    problems.append(
                        Problem(
                            file,
                            *fe.values_at.get("services", fe.at),
                            f"frontends[{fi}].services: {missing('service', name, services)}",
                        )
                    )
    return problems
