"""Load an inventory file into the typed model, collecting every problem with its position.

One generic walker reads the dataclass declarations in schema.py: nested dataclasses recurse,
tuples of dataclasses are YAML lists, everything else goes through the field's check.
"""

from __future__ import annotations

import dataclasses
import difflib
import stat
import typing
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from clusterctl.errors import InventoryError, Problem
from clusterctl.model import checks as c
from clusterctl.model.schema import Inventory, Pos, model_fields
from clusterctl.model.semantics import check_semantics


class _Walker:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def pos(self, node: Any, key: Any = None, *, value: bool = False) -> Pos:
        lc = getattr(node, "lc", None)
        if lc is None:
            return Pos(self.file, 1, 1)
        try:
            if key is None:
                line, col = lc.line, lc.col
            elif isinstance(node, CommentedSeq):
                line, col = lc.item(key)
            else:
                line, col = lc.value(key) if value else lc.key(key)
        except (KeyError, IndexError, TypeError):
            line, col = lc.line, lc.col
        return Pos(self.file, line + 1, col + 1)

    def fail(self, at: Pos, path: str, message: str) -> None:
        self.problems.append(Problem(at.file, at.line, at.col, f"{path}: {message}"))

    def build(self, cls: type, node: Any, path: str, at: Pos) -> Any:
        if not isinstance(node, CommentedMap):
            self.fail(at, path, f"expected a mapping, got {_kind(node)}")
            return None
        fields = {f.name: f for f in model_fields(cls)}
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        positions: dict[str, Pos] = {"": self.pos(node)}
        ok = True
        for key in node:
            if not isinstance(key, str) or key not in fields:
                near = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                known = "" if near else f" (known: {', '.join(fields)})"
                where = f"{path}.{key}" if path else str(key)
                self.fail(self.pos(node, key), where, f"unknown key{hint}{known}")
                ok = False
        for name, f in fields.items():
            sub = f"{path}.{name}" if path else name
            if name not in node:
                if f.metadata.get("required"):
                    self.fail(positions[""], sub, "is required")
                    ok = False
                continue
            raw = node[name]
            vat = self.pos(node, name, value=True)
            positions[name] = vat
            result = self.field(hints[name], f, raw, sub, vat)
            if result is _BAD:
                ok = False
            else:
                values[name] = result
        if not ok:
            return None
        return cls(**values, at=positions)

    def field(self, hint: Any, f: dataclasses.Field[Any], raw: Any, path: str, at: Pos) -> Any:
        target = _dataclass_in(hint)
        if target is not None and typing.get_origin(hint) is tuple:
            if not isinstance(raw, CommentedSeq):
                self.fail(at, path, f"expected a list, got {_kind(raw)}")
                return _BAD
            if f.metadata.get("required") and not raw:
                self.fail(at, path, "must not be empty")
                return _BAD
            items = [
                self.build(target, item, f"{path}[{i}]", self.pos(raw, i))
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
    """ruamel's scalar subclasses and sequences as plain Python values."""
    if isinstance(raw, bool) or raw is None:
        return raw
    if isinstance(raw, int):
        return int(raw)
    if isinstance(raw, float):
        return float(raw)
    if isinstance(raw, str):
        return str(raw)
    if isinstance(raw, list):
        return [_plain(x) for x in raw]
    return raw


def _kind(node: Any) -> str:
    if isinstance(node, CommentedMap):
        return "a mapping"
    if isinstance(node, CommentedSeq):
        return "a list"
    if node is None:
        return "nothing"
    plain = _plain(node)
    return f"{type(plain).__name__} {plain!r}"


def parse(text: str, file: str) -> Inventory:
    """Parse inventory text; TLS files are resolved relative to `file`'s folder."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(str(x) for x in (exc.problem or exc.context or "invalid YAML",))
        if "duplicate key" in str(exc):
            what = "duplicate key " + str(exc).split('found duplicate key "', 1)[-1].split('"')[0]
        raise InventoryError([Problem(file, line, col, f"YAML: {what}")]) from None
    except ReaderError as exc:
        # A character YAML does not allow in a file (NUL, ESC, DEL ...), at its own line.
        line, col = _line_col(text, exc.position)
        raise InventoryError(
            [Problem(file, line, col, f"YAML: character {exc.character!r} is not allowed here")]
        ) from None
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
        raise InventoryError([Problem(file, 1, 1, f"YAML: {first}")]) from None
    walker = _Walker(file)
    if doc is None:
        doc = CommentedMap()
    model: Inventory | None = walker.build(Inventory, doc, "", walker.pos(doc))
    if model is None:
        raise InventoryError(walker.problems)
    files, file_problems = _read_files(model, Path(file).parent)
    problems = walker.problems + file_problems + check_semantics(model)
    if problems:
        raise InventoryError(problems)
    return dataclasses.replace(model, files=files, source=file)


def _line_col(text: str | bytes, offset: int) -> tuple[int, int]:
    before = text[:offset]
    newline = b"\n" if isinstance(before, bytes) else "\n"
    line = before.count(newline) + 1  # type: ignore[arg-type]
    col = offset - (before.rfind(newline) + 1) + 1  # type: ignore[arg-type]
    return line, col


MAX_INVENTORY_BYTES = 4 * 1024 * 1024


def load(path: str | Path) -> Inventory:
    """Read and validate an inventory file; raises InventoryError listing every problem."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_INVENTORY_BYTES + 1)
    except FileNotFoundError:
        raise InventoryError([Problem(str(p), 1, 1, "inventory file not found")]) from None
    except OSError as exc:
        raise InventoryError(
            [Problem(str(p), 1, 1, f"cannot read inventory: {exc.strerror}")]
        ) from None
    if len(data) > MAX_INVENTORY_BYTES:
        raise InventoryError([Problem(str(p), 1, 1, "inventory is larger than 4 MiB")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(data, exc.start)
        raise InventoryError(
            [
                Problem(
                    str(p), line, col, f"not UTF-8: byte {data[exc.start]:#04x} cannot be decoded"
                )
            ]
        ) from None
    return parse(text, str(p))


def resolve_local(path: str, base: Path) -> Path:
    """A local path from the inventory, relative to the inventory's folder, with ~ expanded."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


MAX_TLS_FILE = 1024 * 1024


def _read_tls_file(local: Path) -> bytes:
    """A TLS file's bytes, once it is clear where the path really leads (links, ../)."""
    real = local.resolve()
    if c.is_system_path(str(real)):
        raise ValueError(f"leads to {real}, a system file; clusterctl will not read it")
    info = real.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{real} is not a regular file")
    if info.st_size > MAX_TLS_FILE:
        raise ValueError(f"{real} is larger than 1 MiB; not a PEM file")
    return real.read_bytes()


def _read_files(model: Inventory, base: Path) -> tuple[dict[str, bytes], list[Problem]]:
    files: dict[str, bytes] = {}
    problems: list[Problem] = []
    for i, svc in enumerate(model.services):
        if svc.tls is None:
            continue
        for attr, marker in (("certificate", b"CERTIFICATE-----"), ("key", b"PRIVATE KEY-----")):
            ref = getattr(svc.tls, attr)
            at = svc.tls.at.get(attr, svc.tls.at[""])
            where = f"services[{i}].tls.{attr}"
            local = resolve_local(ref, base)
            try:
                data = _read_tls_file(local)
            except (OSError, ValueError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else str(exc)
                problems.append(Problem(at.file, at.line, at.col, f"{where}: {ref}: {why}"))
                continue
            if marker not in data or b"\r" in data:
                problems.append(
                    Problem(at.file, at.line, at.col, f"{where}: {ref} is not a PEM {attr} file")
                )
                continue
            files[ref] = data
    return files, problems
