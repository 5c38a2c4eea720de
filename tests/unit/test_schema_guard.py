"""No model field reaches a template without a declared validator, and the render-time guard
stops a value that slipped past one."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from clusterctl.errors import RenderError
from clusterctl.model import load
from clusterctl.model.loader import _dataclass_in
from clusterctl.model.schema import Inventory, model_fields
from clusterctl.render import render_frontend

REPO = Path(__file__).resolve().parents[2]


def _schema_classes() -> list[type]:
    seen: list[type] = []
    todo: list[type] = [Inventory]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.append(cls)
        hints = typing.get_type_hints(cls)
        for f in model_fields(cls):
            nested = _dataclass_in(hints[f.name])
            if nested is not None:
                todo.append(nested)
    return seen


def test_every_scalar_field_declares_a_validator() -> None:
    missing = []
    classes = _schema_classes()
    assert len(classes) >= 15  # the walk really covers the schema
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in model_fields(cls):
            if _dataclass_in(hints[f.name]) is None and not callable(f.metadata.get("check")):
                missing.append(f"{cls.__name__}.{f.name}")
    assert missing == []


@pytest.mark.parametrize("evil", ["web1;\n    server evil 203.0.113.1:80", "a b", "x}", "#x", "$x"])
def test_render_refuses_a_value_that_bypassed_validation(evil: str) -> None:
    inv = load(REPO / "inventories" / "full.yaml")
    pool = inv.pools[0]
    server = dataclasses.replace(pool.servers[0], name=evil)
    bad_pool = dataclasses.replace(pool, servers=(server, *pool.servers[1:]))
    bad = dataclasses.replace(inv, pools=(bad_pool, *inv.pools[1:]))
    for fe in bad.frontends:
        with pytest.raises(RenderError, match="a validator let it through"):
            render_frontend(bad, fe)


def test_every_paths_field_is_held_to_the_kinds_folders() -> None:
    # A new paths.* field must join the allowlist check, or it could point anywhere.
    from clusterctl.model.schema import Paths
    from clusterctl.model.semantics import PATH_KEYS

    assert sorted(f.name for f in model_fields(Paths)) == sorted(PATH_KEYS)


def test_every_text_check_refuses_lone_surrogates() -> None:
    # Text that cannot be encoded would pass validation and fail half-way through an apply.
    from clusterctl.model.checks import CheckFailed

    refused, total = [], 0
    for cls in _schema_classes():
        hints = typing.get_type_hints(cls)
        for f in model_fields(cls):
            check = f.metadata.get("check")
            if _dataclass_in(hints[f.name]) is not None or check is None:
                continue
            total += 1
            for value in ("a\udc80b", ["a\udc80b"]):
                try:
                    check(value)
                except CheckFailed:
                    continue
                refused.append(f"{cls.__name__}.{f.name} accepted {value!r}")
    assert total >= 50 and refused == []
