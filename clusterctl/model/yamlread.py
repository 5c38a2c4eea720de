"""Read YAML text into plain mappings and lists that remember where each value was written.

An inventory is data, not a program: so no aliases or anchors (a few KB of them expand to
gigabytes), no tags (`!!python/object` and friends), at most MAX_DEPTH levels of nesting, no
integer too long for Python to convert, one document per file. The tree is built from libyaml's
event stream in a loop, never by recursion, so no input can exhaust the stack, and an alias is
refused the moment the parser meets it. Plain scalars are read by the YAML 1.2 core schema
(`yes` and `on` stay text); timestamps stay text, for the field's own check to judge.
"""

from __future__ import annotations

import re
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML ships no types

from clusterctl.model.checks import LongNumber

# libyaml's C parser reads a 1 MiB inventory in a fraction of a second; the pure-Python parser
# (same events, same marks) is the fallback where PyYAML was built without it.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# The schema nests about seven levels deep; anything much deeper is not an inventory.
MAX_DEPTH = 64
# No field takes a number anywhere near this long; Python refuses to convert past 4,300 digits.
MAX_INT_DIGITS = 64

_NULL = re.compile(r"~|null|Null|NULL|")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?(0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|[0-9][0-9_]*)")
_FLOAT = re.compile(
    r"[-+]?([0-9][0-9_]*)\.[0-9_]*([eE][-+]?[0-9]+)?"
    r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
    r"|[-+]?\.[0-9_]+([eE][-+]?[0-9]+)?"
    r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
)
_BASES = {"0x": 16, "0o": 8, "0b": 2}


class YAMLRefused(Exception):
    """The text is not an inventory YAML document; line and col are 1-based."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message)
        self.line, self.col, self.message = line, col, message


class Map(dict[Any, Any]):
    """A YAML mapping, with the position of the mapping, of each key and of each value."""

    def __init__(self, at: tuple[int, int]) -> None:
        super().__init__()
        self.at = at
        self.keys_at: dict[Any, tuple[int, int]] = {}
        self.values_at: dict[Any, tuple[int, int]] = {}


class Seq(list[Any]):
    """A YAML list, with the position of the list and of each item."""

    def __init__(self, at: tuple[int, int]) -> None:
        super().__init__()
        self.at = at
        self.items_at: list[tuple[int, int]] = []


class Empty:
    """The result for a file with no inventory in it: no document (empty, only comments) or a
    null one (`~`), with where that null was written."""

    def __init__(self, at: tuple[int, int] = (1, 1)) -> None:
        self.at = at


def _scalar(value: str) -> Any:
    """A plain (unquoted) scalar by the YAML 1.2 core schema."""
    if _NULL.fullmatch(value):
        return None
    if value in _BOOL:
        return _BOOL[value]
    if _INT.fullmatch(value):
        sign = -1 if value[0] == "-" else 1
        body = value.lstrip("+-").replace("_", "")
        base = _BASES.get(body[:2], 10)
        digits = body[2:] if base != 10 else body
        if len(digits) > MAX_INT_DIGITS:
            return LongNumber(len(digits))
        if digits:
            return sign * int(digits, base)
    if _FLOAT.fullmatch(value):
        special = value.lstrip("+-").lower()
        if special in (".inf", ".nan"):
            return float(value.replace(".", "", 1))
        return float(value.replace("_", ""))
    return value


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def read(text: str) -> Any:
    """The one document in `text` as Map, Seq and scalars; Empty if there is none."""
    root: Any = Empty()
    stack: list[Map | Seq] = []
    key: list[Any] = []  # per open mapping: the key waiting for its value, or _NO_KEY
    documents = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            kind = type(event)
            if kind in _ENDS:
                stack.pop()
                key.pop()
                continue
            if kind not in _NODES:
                if kind is yaml.DocumentStartEvent:
                    documents += 1
                    if documents > 1:
                        mark = event.start_mark
                        raise YAMLRefused(
                            mark.line + 1,
                            mark.column + 1,
                            "one inventory per file: found a second document",
                        )
                continue
            mark = event.start_mark
            at = (mark.line + 1, mark.column + 1)
            if kind is yaml.AliasEvent:
                raise YAMLRefused(
                    *at, f"aliases (*{event.anchor}) are not supported; write the value out"
                )
            if event.anchor is not None:
                raise YAMLRefused(
                    *at, f"anchors (&{event.anchor}) are not supported; write the values out"
                )
            if event.tag is not None and event.tag != "!":
                raise YAMLRefused(*at, f"tags ({_short(event.tag)}) are not supported")
            value: Any
            if kind is yaml.ScalarEvent:
                # Plain (unquoted) scalars are typed; the C parser gives style "", Python None.
                value = (
                    _scalar(event.value) if not event.style and event.implicit[0] else event.value
                )
            else:
                value = Map(at) if kind is yaml.MappingStartEvent else Seq(at)
            if stack:
                _attach(stack[-1], key, value, at)
            elif isinstance(root, Empty):
                root = Empty(at) if value is None else value
            if kind is not yaml.ScalarEvent:
                if len(stack) >= MAX_DEPTH:
                    raise YAMLRefused(*at, f"nested more than {MAX_DEPTH} levels deep")
                stack.append(value)
                key.append(_NO_KEY)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = str(exc.problem or exc.context or "invalid YAML")
        if "Unicode character escape" in what:
            what += " (a lone surrogate such as \\ud800 is no character)"
        raise YAMLRefused(line, col, what) from None
    except UnicodeEncodeError as exc:
        # Text handed to parse() directly (a file is decoded strictly) with a lone surrogate.
        line, col = line_col(text, exc.start)
        code = ord(text[exc.start])
        raise YAMLRefused(line, col, f"U+{code:04X} is a lone surrogate, not a character") from None
    except yaml.reader.ReaderError as exc:
        line, col = line_col(text, exc.position)
        raise YAMLRefused(line, col, f"character {exc.character!r} is not allowed here") from None
    return root


_NO_KEY = object()
_ENDS = frozenset({yaml.MappingEndEvent, yaml.SequenceEndEvent})
# Alias events are "nodes" here only to be refused where they stand.
_NODES = frozenset(
    {yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent, yaml.AliasEvent}
)


def _attach(parent: Any, key: list[Any], value: Any, at: tuple[int, int]) -> None:
    if isinstance(parent, Seq):
        parent.append(value)
        parent.items_at.append(at)
    elif isinstance(parent, Map):
        waiting = key[-1]
        if waiting is _NO_KEY:
            if isinstance(value, (Map, Seq)) or not isinstance(value, str):
                shown = "a mapping" if isinstance(value, Map) else "a list"
                what = shown if isinstance(value, (Map, Seq)) else repr(value)
                raise YAMLRefused(*at, f"a key must be a name, not {what}")
            if value in parent:
                raise YAMLRefused(*at, f"duplicate key {_short(value)}")
            parent.keys_at[value] = at
            key[-1] = value
        else:
            parent[waiting] = value
            parent.values_at[waiting] = at
            key[-1] = _NO_KEY


def line_col(text: str | bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of a character (or byte) offset."""
    before = text[:offset]
    newline: Any = b"\n" if isinstance(before, bytes) else "\n"
    line = before.count(newline) + 1
    col = offset - (before.rfind(newline) + 1) + 1
    return line, col
