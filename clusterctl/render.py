"""Render: a pure function from the model to the full text of every file on every front end.

No I/O besides reading templates, no clock, no randomness: the same inventory gives the same
bytes. A `root` prefix moves every path clusterctl owns under a folder, so the real validators
can check a rendered tree without touching the system's own /etc.
"""

from __future__ import annotations

import dataclasses
import re
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from clusterctl.drivers import driver_for, features
from clusterctl.errors import RenderError
from clusterctl.files import File as File  # re-exported: File, HostFiles and Raw lived here
from clusterctl.files import HostFiles as HostFiles
from clusterctl.files import Raw as Raw
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
    if isinstance(obj, str):
        if _UNSAFE.search(obj):
            raise RenderError(f"refusing to render {path}={obj!r}: a validator let it through")
    elif isinstance(obj, tuple):
        for i, item in enumerate(obj):
            assert_renderable(item, f"{path}[{i}]")
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            if f.name not in _NOT_RENDERED:
                assert_renderable(getattr(obj, f.name), f"{path}.{f.name}".lstrip("."))


def templates_dir() -> Path:
    """Templates inside the installed package, or the source tree's top-level templates/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise RenderError(f"templates folder not found beside {here}")


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - configs, not HTML; values are validated instead
    )


def render_frontend(inv: Inventory, fe: Frontend, root: str = "") -> HostFiles:
    """Every file clusterctl installs on `fe`, keyed by its real path on the host."""
    assert_renderable(inv)
    driver = driver_for(fe.kind)
    view = driver.view(inv, fe, root)
    text = environment().get_template(driver.template).render(**view)
    files: HostFiles = {driver.paths(fe).config: File(text.encode())}
    for path, template in driver.support_files(inv, fe).items():
        files[path] = File(environment().get_template(template).render(**view).encode())
    files.update(driver.tls_files(inv, fe))
    files.update(features.files(inv, fe, driver))
    return dict(sorted(files.items()))


def render(inv: Inventory) -> dict[str, HostFiles]:
    """Files for every front end, keyed by host name (a VRRP member's keepalived files too)."""
    from clusterctl.model.vrrp import member_of, units

    out = {fe.name: render_frontend(inv, fe) for fe in inv.frontends}
    for unit in units(inv):
        host = member_of(unit.name)
        out[host] = dict(sorted((out[host] | render_frontend(inv, unit)).items()))
    return out
