"""Render: a pure function from the model to the full text of every file on every front end.

No I/O besides reading templates, no clock, no randomness: the same inventory gives the same
bytes. A `root` prefix moves every path clusterctl owns under a folder, so the real validators
can check a rendered tree without touching the system's own /etc.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from clusterctl import collector
from clusterctl.drivers import driver_for, features
from clusterctl.errors import RenderError
from clusterctl.files import File as File  # re-exported: File, HostFiles and Raw lived here
from clusterctl.files import HostFiles as HostFiles
from clusterctl.files import Raw as Raw
from clusterctl.model.queries import bracket, host_port
from clusterctl.model.schema import Frontend, Inventory

# Defence in depth: validators should already refuse these, but if one ever lets such a value
# through, rendering stops instead of writing a config with an injected directive.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029;{}\"'#$<>\\`\s]")
# Fields that never reach a config file (they go to SSH or the local disk, quoted there).
_NOT_RENDERED = {
    "ssh",
    "reload",
    "start",
    "deploy",
    "certificate",
    "key",
    "page",
    "source",
    "files",
    "at",
}


def assert_renderable(obj: Any, path: str = "") -> None:
    """Walk the model; any text value that could break out of a directive is a bug: stop."""
    if _clean(obj):
        return
    _refuse_unsafe(obj, path)


@cache
def _rendered_fields(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """The values of a dataclass's rendered fields, as one tuple (nothing for other types)."""
    if not dataclasses.is_dataclass(cls):
        return lambda obj: ()
    names = [f.name for f in dataclasses.fields(cls) if f.name not in _NOT_RENDERED]
    if len(names) == 1:
        return lambda obj: (getattr(obj, names[0]),)
    return operator.attrgetter(*names) if names else lambda obj: ()


_LEAVES = frozenset({int, bool, float, type(None)})


def _clean(obj: Any) -> bool:
    """The walk without building paths (a model holds a value per server field): only when it
    finds something does _refuse_unsafe walk again to name it. The pattern is one character
    class, so it matches the texts joined exactly when it matches one of them."""
    texts: list[str] = []
    stack = [obj]
    while stack:
        o = stack.pop()
        cls = o.__class__
        if cls in _LEAVES:
            continue
        if isinstance(o, str):
            texts.append(o)
        elif isinstance(o, tuple):
            stack.extend(o)
        else:
            stack.extend(_rendered_fields(cls)(o))
    return _UNSAFE.search("".join(texts)) is None


def _refuse_unsafe(obj: Any, path: str) -> None:
    if isinstance(obj, str):
        if _UNSAFE.search(obj):
            raise RenderError(f"refusing to render {path}={obj!r}: a validator let it through")
    elif isinstance(obj, tuple):
        for i, item in enumerate(obj):
            _refuse_unsafe(item, f"{path}[{i}]")
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            if f.name not in _NOT_RENDERED:
                _refuse_unsafe(getattr(obj, f.name), f"{path}.{f.name}".lstrip("."))


def templates_dir() -> Path:
    """Templates inside the installed package, or the source tree's top-level templates/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise RenderError(f"templates folder not found beside {here}")


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # each template is compiled once per process, never stat'ed again
        autoescape=False,  # noqa: S701 - configs, not HTML; values are validated instead
    )
    # The one formatter (model/queries.py): `address | bracket`, `address | hostport(port)`.
    env.filters["bracket"] = bracket
    env.filters["hostport"] = host_port
    return env


def render_frontend(inv: Inventory, fe: Frontend, root: str = "") -> HostFiles:
    """Every file clusterctl installs on `fe`, keyed by its real path on the host."""
    with collector.paused():  # millions of strings, no cycles (see collector.py)
        return _render_frontend(inv, fe, root)


def _render_frontend(inv: Inventory, fe: Frontend, root: str) -> HostFiles:
    # Once per inventory, not per front end (a frozen model stays renderable): held by
    # identity with a strong reference, so the id of the one checked cannot be reused.
    if _checked[0] is not inv:
        assert_renderable(inv)
        _checked[0] = inv
    driver = driver_for(fe.kind)
    view = driver.view(inv, fe, root)
    text = environment().get_template(driver.template).render(**view)
    files: HostFiles = {driver.paths(fe).config: File(text.encode())}
    for path, template in driver.support_files(inv, fe).items():
        files[path] = File(environment().get_template(template).render(**view).encode())
    files.update(driver.tls_files(inv, fe))
    files.update(features.files(inv, fe, driver))
    return dict(sorted(files.items()))


_checked: list[Any] = [None]


def render(inv: Inventory) -> dict[str, HostFiles]:
    """Files for every front end, keyed by host name (a VRRP member's keepalived files too)."""
    from clusterctl.model.vrrp import member_of, units

    out = {fe.name: render_frontend(inv, fe) for fe in inv.frontends}
    for unit in units(inv):
        host = member_of(unit.name)
        out[host] = dict(sorted((out[host] | render_frontend(inv, unit)).items()))
    return out
