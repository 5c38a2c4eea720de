"""inventories/full.yaml documents every key the schema knows, read from the schema itself.

The walk follows schema.py's dataclasses (nested sections, lists of sections) as the loader
does, so a key added to the schema without a line in full.yaml fails here. A key counts as
documented where full.yaml sets it (a section used in several places, such as ssh:, once), or
shows it in a commented-out example when only one of two alternatives can be live
(deploy.command or deploy.release).
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

from ruamel.yaml import YAML

from clusterctl.model import load
from clusterctl.model.loader import _dataclass_in
from clusterctl.model.schema import Inventory, model_fields

FULL = Path(__file__).resolve().parents[2] / "inventories" / "full.yaml"


def schema_paths(cls: type, prefix: str = "") -> dict[str, tuple[type, str]]:
    """Every key path of the schema (`frontends[].paths.config`, `deploy.release.root`), with
    the section class and field it is."""
    hints = typing.get_type_hints(cls)
    paths: dict[str, tuple[type, str]] = {}
    for f in model_fields(cls):
        path = f"{prefix}{f.name}"
        paths[path] = (cls, f.name)
        target = _dataclass_in(hints[f.name])
        if target is not None:
            many = typing.get_origin(hints[f.name]) is tuple
            paths |= schema_paths(target, f"{path}{'[]' if many else ''}.")
    return paths


def set_paths(node: object, prefix: str = "") -> set[str]:
    """Every key path full.yaml sets, with list indexes folded to []."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}{key}"
            found.add(path)
            found |= set_paths(value, f"{path}.")
    elif isinstance(node, list):
        for item in node:
            found |= set_paths(item, prefix.rstrip(".") + "[].")
    return found


def commented_keys(text: str) -> set[str]:
    """Keys shown in comments, as `# key:` or `{key: ...}` inside a commented-out example."""
    keys: set[str] = set()
    for line in text.splitlines():
        if "#" not in line:
            continue
        comment = line.split("#", 1)[1]
        keys |= set(re.findall(r"(?:^\s*|[{,]\s*|-\s+)([a-z_][a-z0-9_]*):", comment))
    return keys


def test_schema_walk_sees_nested_sections_and_lists() -> None:
    paths = schema_paths(Inventory)
    assert "frontends[].start" in paths
    assert "pools[].servers[].address" in paths
    assert "services[].routes[].pool" in paths


def test_full_yaml_is_valid() -> None:
    load(FULL)


def test_full_yaml_documents_every_schema_key() -> None:
    text = FULL.read_text(encoding="utf-8")
    live = set_paths(YAML(typ="safe").load(text))
    shown = commented_keys(text)
    paths = schema_paths(Inventory)
    # A section used in several places (ssh: in defaults, a front end, a server) is documented
    # once: its keys count wherever the same section class sets them.
    documented = {paths[p] for p in live if p in paths}
    missing = [
        p
        for p, where in paths.items()
        if p not in live and where not in documented and p.rsplit(".", 1)[-1] not in shown
    ]
    assert not missing, f"keys missing from {FULL.name}: {', '.join(missing)}"
