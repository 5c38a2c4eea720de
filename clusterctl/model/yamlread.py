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

_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?(0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|[0-9][0-9_]*)")
_FLOAT = re.compile(
    r"[-+]?([0-9][0-9_]*)\.[0-9_]*([eE][-+]?[0-9]+)?"
    r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
    r"|[-+]?\.[0-9_]+([eE][-+]?[0-9]+)?"
    r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
)
_BASES = {"0x": 16, "0o": 8, "0b": 2}


# Internal, not a ClusterctlError: the loader turns it into an InventoryError with the file
# name (this reader knows only line and column), so no user ever sees it raw.
class YAMLRefused(Exception):
    """The text is not an inventory YAML document; line and col are 1-based."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message)
        self.line, self.col, self.message = line, col, message


class Map(dict[Any, Any]):
    """A YAML mapping, with the position of the mapping, of each key and of each value."""

    __slots__ = ("at", "keys_at", "values_at")  # one per mapping of the file: no __dict__

    def __init__(self, at: tuple[int, int]) -> None:
        super().__init__()
        self.at = at
        self.keys_at: dict[Any, tuple[int, int]] = {}
        self.values_at: dict[Any, tuple[int, int]] = {}


class Seq(list[Any]):
    """A YAML list, with the position of the list and of each item."""

    __slots__ = ("at", "items_at")

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
    # A number starts with one of these; anything else is a null or boolean word or text as
    # it stands. Keys such as `name` come here too.
    if value[:1] not in _NUMBER_START:
        return _WORDS.get(value, value)
    if value.isdigit() and value.isascii():
        return int(value) if len(value) <= MAX_INT_DIGITS else LongNumber(len(value))
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


_NUMBER_START = frozenset("+-.0123456789")
# The core schema's nulls ("" included) and booleans.
_WORDS: dict[str, Any] = {"~": None, "null": None, "Null": None, "NULL": None, "": None, **_BOOL}


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def read(text: str) -> Any:
    """The one document in `text` as Map, Seq and scalars; Empty if there is none."""
    root: Any = Empty()
    stack: list[Any] = []  # the open Map and Seq nodes, innermost last
    key: list[Any] = []  # per open node: the mapping's key waiting for its value, or _NO_KEY
    documents = 0
    parser = None
    # One loop over libyaml's events, with the parser's own get_event (yaml.parse wraps it in
    # a generator) and the attach to the parent inline: it runs once per node of the file.
    try:
        parser = _Loader(text)
        get_event = parser.get_event
        while True:
            event = get_event()
            kind = event.__class__
            if kind is _ScalarEvent:
                mark = event.start_mark
                at = (mark.line + 1, mark.column + 1)
                if event.anchor is not None or (event.tag is not None and event.tag != "!"):
                    _refuse_node(event, at)
                # Plain (unquoted) scalars are typed; the C parser gives style "", Python None.
                value = (
                    _scalar(event.value) if not event.style and event.implicit[0] else event.value
                )
            elif kind in _ENDS:
                stack.pop()
                key.pop()
                continue
            elif kind is _MappingStartEvent or kind is _SequenceStartEvent:
                mark = event.start_mark
                at = (mark.line + 1, mark.column + 1)
                if event.anchor is not None or (event.tag is not None and event.tag != "!"):
                    _refuse_node(event, at)
                value = Map(at) if kind is _MappingStartEvent else Seq(at)
            elif kind is yaml.AliasEvent:
                mark = event.start_mark
                _refuse_node(event, (mark.line + 1, mark.column + 1))
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    mark = event.start_mark
                    raise YAMLRefused(
                        mark.line + 1,
                        mark.column + 1,
                        "one inventory per file: found a second document",
                    )
                continue
            elif kind is yaml.StreamEndEvent or event is None:
                break
            else:
                continue
            if stack:
                parent = stack[-1]
                if parent.__class__ is Seq:
                    parent.append(value)
                    parent.items_at.append(at)
                else:
                    waiting = key[-1]
                    if waiting is _NO_KEY:
                        if value.__class__ is not str:
                            _refuse_key(parent, value, at)
                        if value in parent:
                            raise YAMLRefused(*at, f"duplicate key {_short(value)}")
                        parent.keys_at[value] = at
                        key[-1] = value
                    else:
                        parent[waiting] = value
                        parent.values_at[waiting] = at
                        key[-1] = _NO_KEY
            elif isinstance(root, Empty):
                root = Empty(at) if value is None else value
            if kind is not _ScalarEvent:
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
    finally:
        if parser is not None:
            parser.dispose()
    return root


def _refuse_node(event: Any, at: tuple[int, int]) -> None:
    """An alias, an anchor or a tag: refused where it stands (an alias is never expanded)."""
    if event.__class__ is yaml.AliasEvent:
        raise YAMLRefused(*at, f"aliases (*{event.anchor}) are not supported; write the value out")
    if event.anchor is not None:
        raise YAMLRefused(*at, f"anchors (&{event.anchor}) are not supported; write the values out")
    raise YAMLRefused(*at, f"tags ({_short(event.tag)}) are not supported")


def _refuse_key(parent: Any, value: Any, at: tuple[int, int]) -> None:
    if isinstance(value, str):
        return  # a subclass of str is still a name
    shown = "a mapping" if isinstance(value, Map) else "a list"
    what = shown if isinstance(value, (Map, Seq)) else repr(value)
    raise YAMLRefused(*at, f"a key must be a name, not {what}")


_NO_KEY = object()
_ScalarEvent = yaml.ScalarEvent
_MappingStartEvent = yaml.MappingStartEvent
_SequenceStartEvent = yaml.SequenceStartEvent
_ENDS = frozenset({yaml.MappingEndEvent, yaml.SequenceEndEvent})


def line_col(text: str | bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of a character (or byte) offset."""
    before = text[:offset]
    newline: Any = b"\n" if isinstance(before, bytes) else "\n"
    line = before.count(newline) + 1
    col = offset - (before.rfind(newline) + 1) + 1
    return line, col
