"""Load an inventory file into the typed model, collecting every problem with its position.

One generic walker reads the dataclass declarations in schema.py: nested dataclasses recurse,
tuples of dataclasses are YAML lists, everything else goes through the field's check.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from pathlib import Path
from typing import Any

from clusterctl import collector
from clusterctl.errors import InventoryError, Problem
from clusterctl.model import checks as c
from clusterctl.model.crossref import close_match, raw_references
from clusterctl.model.localfiles import read_files, resolve_local
from clusterctl.model.pages import read_pages
from clusterctl.model.schema import Inventory, Pos, model_fields
from clusterctl.model.semantics import check_semantics
from clusterctl.model.yamlread import Empty, Map, Seq, YAMLRefused, line_col, read

__all__ = ["load", "parse", "resolve_local"]

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@functools.cache
def _fields(cls: type) -> tuple[dict[str, dataclasses.Field[Any]], dict[str, Any]]:
    return {f.name: f for f in model_fields(cls)}, typing.get_type_hints(cls)


class _Walker:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def pos(self, node: Any, key: Any = None, *, value: bool = False) -> Pos:
        line, col = 1, 1
        if isinstance(node, Map):
            table = node.values_at if value else node.keys_at
            line, col = node.at if key is None else table.get(key, node.at)
        elif isinstance(node, Seq):
            in_range = key is not None and 0 <= key < len(node.items_at)
            line, col = node.items_at[key] if in_range else node.at
        return Pos(self.file, line, col)

    def fail(self, at: Pos, path: str, message: str) -> None:
        self.problems.append(Problem(at.file, at.line, at.col, f"{path or 'inventory'}: {message}"))

    def build(self, cls: type, node: Any, path: str, at: Pos) -> Any:
        if not isinstance(node, Map):
            self.fail(at, path, f"expected a mapping, got {_kind(node)}")
            return None
        fields = _fields(cls)[0]
        file = self.file
        values: dict[str, Any] = {}
        positions: dict[str, Pos] = {"": Pos(file, *node.at)}
        ok = fields.keys() >= node.keys() or self.unknown_keys(node, fields, path)
        values_at = node.values_at
        # Runs once per mapping of the file (a server is one): paths are built only for a
        # message or a nested mapping, and a scalar goes straight to its check.
        for name, f, hint, target, required, check in _plan(cls):
            if name not in node:
                if required:
                    self.fail(positions[""], f"{path}.{name}" if path else name, "is required")
                    ok = False
                continue
            raw = node[name]
            vat = Pos(file, *values_at.get(name, node.at))
            positions[name] = vat
            if target is None:
                try:
                    values[name] = check(_plain(raw) if isinstance(raw, (Map, Seq)) else raw)
                except c.CheckFailed as exc:
                    self.fail(vat, f"{path}.{name}" if path else name, str(exc))
                    ok = False
                continue
            result = self.field(hint, f, raw, f"{path}.{name}" if path else name, vat)
            if result is _BAD:
                ok = False
            else:
                values[name] = result
        if not ok:
            return None
        return cls(**values, at=positions)

    def unknown_keys(self, node: Map, fields: dict[str, Any], path: str) -> bool:
        """Report each key the schema does not know; False (there was at least one)."""
        for key in node:
            if not isinstance(key, str) or key not in fields:
                # A key is printed as written only when it is plainly a name (one line, short).
                shown = key if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) else c.show(key)
                # Suggestions cost a comparison with every field: only while anyone reads them.
                many = len(self.problems) > MAX_PROBLEMS
                near = None if many else close_match(str(key), fields)
                hint = f"; did you mean {near!r}?" if near else ""
                known = "" if near else f" (known: {', '.join(fields)})"
                where = f"{path}.{shown}" if path else shown
                self.fail(self.pos(node, key), where, f"unknown key{hint}{known}")
        return False

    def field(self, hint: Any, f: dataclasses.Field[Any], raw: Any, path: str, at: Pos) -> Any:
        target = _dataclass_in(hint)
        if target is not None and typing.get_origin(hint) is tuple:
            if not isinstance(raw, Seq):
                self.fail(at, path, f"expected a list, got {_kind(raw)}")
                return _BAD
            if f.metadata.get("required") and not raw:
                self.fail(at, path, "must not be empty")
                return _BAD
            file, items_at = self.file, raw.items_at
            items = [
                self.build(target, item, f"{path}[{i}]", Pos(file, *items_at[i]))
                for i, item in enumerate(raw)
            ]
            return _BAD if any(i is None for i in items) else tuple(items)
        if target is not None:
            if raw is None and not f.metadata.get("required"):
                return f.default
            built = self.build(target, raw, path, at)
            return _BAD if built is None else built
        check = f.metadata["check"]
        try:
            return check(_plain(raw))
        except c.CheckFailed as exc:
            self.fail(at, path, str(exc))
            return _BAD


_BAD = object()


@functools.cache
def _plan(cls: type) -> tuple[tuple[str, Any, Any, type | None, bool, Any], ...]:
    """Per field: name, field, type hint, nested dataclass (None: a scalar), required, check."""
    fields, hints = _fields(cls)
    return tuple(
        (
            name,
            f,
            hints[name],
            _dataclass_in(hints[name]),
            bool(f.metadata.get("required")),
            f.metadata.get("check"),
        )
        for name, f in fields.items()
    )


@functools.cache
def _dataclass_in(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    for arg in typing.get_args(hint):
        if arg is not type(None) and arg is not Ellipsis:
            found = _dataclass_in(arg)
            if found is not None:
                return found
    return None


def _plain(raw: Any) -> Any:
    """A scalar as is; a list as a plain list of plain values (checks never see positions)."""
    if isinstance(raw, Seq):
        return [_plain(x) for x in raw]
    if isinstance(raw, Map):
        return dict(raw)
    return raw


def _kind(node: Any) -> str:
    if isinstance(node, Map):
        return "a mapping"
    if isinstance(node, Seq):
        return "a list"
    if node is None:
        return "nothing"
    if isinstance(node, c.LongNumber):
        return f"number {node!r}"
    return f"{type(node).__name__} {c.show(node)}"


def parse(text: str, file: str) -> Inventory:
    """Parse inventory text; TLS files are resolved relative to `file`'s folder."""
    # A 20,000-server file makes about a million small objects and no reference cycles: the
    # collector's full passes over them, while they are being made, found nothing and cost a
    # fifth of the load. It runs again as before once the model is built.
    with collector.paused():
        return _parse(text, file)


def _parse(text: str, file: str) -> Inventory:
    try:
        doc = read(text)
    except YAMLRefused as exc:
        raise InventoryError([Problem(file, exc.line, exc.col, f"YAML: {exc.message}")]) from None
    walker = _Walker(file)
    if isinstance(doc, Empty):
        # Nothing at all, only comments, or a lone `~`: say what an inventory is.
        raise InventoryError(
            [
                Problem(
                    file,
                    *doc.at,
                    "inventory: the file is empty; an inventory is a mapping with cluster, "
                    "frontends, pools and services (see inventories/minimal.yaml)",
                )
            ]
        )
    model: Inventory | None = walker.build(Inventory, doc, "", walker.pos(doc))
    if model is None:
        # References are read from the tree as written, so they come in the same report.
        raise InventoryError(_first(walker.problems + raw_references(doc, file, walker.problems)))
    files, file_problems = read_files(model, Path(file).parent)
    pages, page_problems = read_pages(model, Path(file).parent)
    problems = walker.problems + file_problems + page_problems + check_semantics(model)
    if problems:
        raise InventoryError(_first(problems))
    return dataclasses.replace(model, files=files | pages, source=file)


MAX_PROBLEMS = 50


def _first(problems: list[Problem]) -> list[Problem]:
    """The first MAX_PROBLEMS problems in file order, and a line saying how many more there are
    (a generated file can hold a hundred thousand: nobody reads past the first few)."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    ordered = sorted(problems, key=lambda p: (p.file, p.line, p.col, p.message))
    rest = ordered[MAX_PROBLEMS]
    more = len(problems) - MAX_PROBLEMS
    note = f"inventory: {more} more problems from here on (fix the first {MAX_PROBLEMS} first)"
    return [*ordered[:MAX_PROBLEMS], Problem(rest.file, rest.line, rest.col, note)]


# An inventory of 20,000 servers is 1-1.5 MiB (flow or block style); a bound keeps any file's
# load within seconds and a few hundred MB.
MAX_INVENTORY_BYTES = 4 * 1024 * 1024


def load(path: str | Path) -> Inventory:
    """Read and validate an inventory file; raises InventoryError listing every problem."""
    p = Path(path)
    try:
        # Not a FIFO (open would wait for a writer) nor a device (/dev/zero never ends).
        if p.exists() and not p.is_file():
            raise InventoryError([Problem(str(p), 1, 1, "inventory: not a regular file")])
        with p.open("rb") as fh:
            data = fh.read(MAX_INVENTORY_BYTES + 1)
    except FileNotFoundError:
        raise InventoryError([Problem(str(p), 1, 1, "inventory file not found")]) from None
    except OSError as exc:
        raise InventoryError(
            [Problem(str(p), 1, 1, f"cannot read inventory: {exc.strerror}")]
        ) from None
    if len(data) > MAX_INVENTORY_BYTES:
        raise InventoryError(
            [
                Problem(
                    str(p),
                    1,
                    1,
                    f"inventory: the file is larger than {MAX_INVENTORY_BYTES >> 20} MiB; "
                    "clusterctl reads no more",
                )
            ]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = line_col(data, exc.start)
        raise InventoryError(
            [
                Problem(
                    str(p), line, col, f"not UTF-8: byte {data[exc.start]:#04x} cannot be decoded"
                )
            ]
        ) from None
    return parse(text, str(p))
