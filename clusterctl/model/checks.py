"""Scalar validators: the only gate between inventory text and a config file or a shell.

Each check takes the raw YAML value and returns the typed value or raises CheckFailed with a
message that says what is wrong and, where it can, the fix. Every field of the model declares
one (tests/unit/test_schema_guard.py fails otherwise), so nothing reaches a template unchecked.
Paths, on the hosts and local, have their own module: pathcheck.py.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], Any]

# Characters no value may carry, whatever the field: line breaks of every kind (a newline ends a
# directive in all three config languages), NUL and other controls.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


# Internal, not a ClusterctlError: the loader catches it and reports an InventoryError Problem
# with file, line, column and key path; a bare CheckFailed never reaches a user.
class CheckFailed(ValueError):
    """A value failed its field's check; the loader adds file, line, column and key path."""


class LongNumber:
    """An integer literal too long to convert (Python stops at 4,300 digits): only its length."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"<{self.digits}-digit number>"

    __str__ = __repr__


def show(value: Any, limit: int = 60) -> str:
    """A value for an error message: repr (so one line, escapes visible), cut to `limit`."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
    if isinstance(value, LongNumber):
        return "number"
    return type(value).__name__ if not isinstance(value, str) else "text"


def _plain_text(value: Any) -> str:
    if not isinstance(value, str):
        raise CheckFailed(f"expected text, got {_describe(value)} {show(value)}")
    bad = _FORBIDDEN.search(value)
    if bad:
        raise CheckFailed(f"must not contain control or line-break character {bad.group()!r}")
    if value.isascii():
        return value  # no surrogate is ASCII: the encode below would only copy it
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # A lone surrogate ("\ud800") is no character at all: it cannot be written to a file or
        # a command line, so it would fail half-way through an apply.
        code = ord(value[exc.start])
        raise CheckFailed(f"is not valid Unicode text (lone surrogate U+{code:04X})") from None
    return value


def text(pattern: str, what: str, example: str) -> Check:
    """Text matching a whitelist pattern; `what` names it in errors, `example` shows a good one."""
    rx = re.compile(pattern)

    def check(value: Any) -> str:
        s = _plain_text(value)
        if not rx.fullmatch(s):
            raise CheckFailed(f"{show(s)} is not a valid {what} (e.g. {example})")
        return s

    check.__doc__ = f"{what}: {pattern}"
    return check


NAME = text(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", "name (letters, digits, . _ -)", "web1")
HEADER = text(r"[A-Za-z0-9_-]{1,64}", "header name (letters, digits, _ -)", "X-Release")
_COOKIE = text(r"[A-Za-z0-9_]{1,64}", "cookie name (letters, digits, _)", "SRVID")


def cookie(value: Any) -> str:
    """A sticky-session cookie name that every kind carries intact.

    nginx reads the cookie through the variable $cookie_NAME, and a variable name ends at the
    first character that is not a letter, digit or _: `$cookie_SRV-ID` is $cookie_SRV and the
    text "-ID". So the name is restricted to what a variable name can hold, on every kind.
    """
    s = _plain_text(value)
    if "-" in s and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", s):
        raise CheckFailed(
            f"{show(s)}: nginx cannot read a cookie whose name holds '-' "
            f"($cookie_{s} stops at the '-'); use letters, digits and _ (e.g. "
            f"{s.replace('-', '_')!r})"
        )
    return str(_COOKIE(s))


USER = text(r"[a-z_][a-z0-9_-]{0,31}", "user name", "deploy")
DB_USER = text(r"[A-Za-z0-9_]{1,32}", "database user name", "haproxy_check")
VERSION = text(r"[0-9]{1,4}(\.[0-9]{1,4}){0,2}", "version (digits and dots)", '"2.6" or "1.22.1"')
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME_RX = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")


def hostname(value: Any) -> str:
    """A DNS host name (RFC 1123), as in a Host header or server_name."""
    s = _plain_text(value)
    if len(s) > 253 or not _HOSTNAME_RX.fullmatch(s) or s.replace(".", "").isdigit():
        raise CheckFailed(f"{show(s)} is not a valid host name (e.g. www.example.com)")
    return s.lower().rstrip(".")


def _no_zone(s: str, what: str) -> None:
    # ipaddress accepts an IPv6 zone index ("fe80::1%eth0") holding any text at all.
    if "%" in s:
        raise CheckFailed(
            f"{show(s)} is not {what} (IPv6 zone indexes like %eth0 are not supported)"
        )


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def address(value: Any) -> str:
    """An IPv4/IPv6 address or a DNS host name; never a socket."""
    s = _plain_text(value)
    if _IPV4.fullmatch(s):
        return s  # what ip_address would give back (no leading zeros), at a tenth of the cost
    _no_zone(s, "an IP address or host name")
    try:
        return str(ipaddress.ip_address(s))
    except ValueError:
        pass
    if s.lower() == "unix":
        # nginx reads `server unix:8080` as the Unix socket "8080", Apache `unix:` likewise.
        raise CheckFailed(
            f"{show(s)}: an address is a host name or an IP address, never a socket "
            "(nginx and Apache read 'unix:' as a socket path)"
        )
    try:
        return hostname(s)
    except CheckFailed:
        raise CheckFailed(
            f"{show(s)} is not an IP address or host name (e.g. 192.0.2.10)"
        ) from None


_JUMP = re.compile(r"(?:([^@\[\]]+)@)?(?:\[([^\]]*)\]|([^:\[\]@]*))(?::([0-9]{1,5}))?")


def split_jump(spec: str) -> tuple[str | None, str, int | None]:
    """`[user@]host[:port]` as user, address, port; an IPv6 host goes in brackets."""
    s = _plain_text(spec)
    m = _JUMP.fullmatch(s)
    if m is None:
        if s.count(":") >= 2 and "[" not in s:
            raise CheckFailed(
                f"{show(s)}: write an IPv6 jump host in brackets, e.g. [{s}] or [{s}]:22"
            )
        raise CheckFailed(
            f"{show(s)} is not a jump host ([user@]host[:port], e.g. bastion.example.com)"
        )
    user, v6, host, port = m.groups()
    if v6 is not None:
        try:
            ipaddress.IPv6Address(v6)
        except ValueError:
            raise CheckFailed(f"{show(s)}: [{v6}] is not an IPv6 address") from None
        _no_zone(v6, "an IPv6 address")
        host = v6
    checked_user = USER(user) if user is not None else None
    checked_port = PORT(int(port)) if port is not None else None
    return checked_user, address(host), checked_port


def jump_host(value: Any) -> str:
    """A jump (bastion) host: `[user@]host[:port]`, IPv6 as [2001:db8::1] or [2001:db8::1]:22."""
    split_jump(value)
    return str(value)


def listen_address(value: Any) -> str:
    """An IP address to bind, or '*' for every address."""
    s = _plain_text(value)
    if s == "*":
        return s
    _no_zone(s, "an IP address to listen on")
    try:
        return str(ipaddress.ip_address(s))
    except ValueError:
        raise CheckFailed(
            f"{show(s)} is not an IP address to listen on (use '*' for all)"
        ) from None


def integer(lo: int, hi: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, LongNumber):
            raise CheckFailed(f"a {value.digits}-digit number is out of range {lo}..{hi}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise CheckFailed(f"expected a whole number, got {_describe(value)} {show(value)}")
        if not lo <= value <= hi:
            raise CheckFailed(f"{value} is out of range {lo}..{hi}")
        return value

    check.__doc__ = f"integer {lo}..{hi}"
    return check


PORT = integer(1, 65535)


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise CheckFailed(f"expected true or false, got {_describe(value)} {show(value)}")
    return value


def choice(*options: str) -> Check:
    def check(value: Any) -> str:
        s = _plain_text(value)
        if s not in options:
            from clusterctl.model.crossref import close_match

            near = close_match(s, options)
            hint = f"; did you mean {near!r}?" if near else ""
            raise CheckFailed(f"{show(s)} is not one of {', '.join(options)}{hint}")
        return s

    check.__doc__ = "one of " + ", ".join(options)
    return check


_DURATION = re.compile(r"([0-9]{1,9})(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


# HAProxy's timers hold 2**31 - 1 milliseconds (about 24.8 days); no kind gets more.
MAX_DURATION_MS = 2**31 - 1


def _duration(value: Any, limit: int = MAX_DURATION_MS) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        raise CheckFailed(f"{value} needs a unit: {value}s, {value}ms, {value}m")
    s = _plain_text(value)
    m = _DURATION.fullmatch(s)
    if not m:
        raise CheckFailed(f"{show(s)} is not a duration (e.g. 500ms, 5s, 2m, 1h)")
    ms = int(m.group(1)) * _UNIT_MS[m.group(2)]
    if ms > limit:
        what = (
            "the 24d the servers' timers hold"
            if limit == MAX_DURATION_MS
            else f"{limit // 86_400_000}d"
        )
        raise CheckFailed(f"{s} is longer than {what}")
    return ms


def duration(value: Any) -> int:
    """A duration such as 500ms, 5s, 2m, 1h, 1d, above zero; returned in milliseconds."""
    ms = _duration(value)
    if ms == 0:
        raise CheckFailed("must be longer than 0 (the kinds read a zero timer differently)")
    return ms


def duration_or_off(value: Any) -> int:
    """An HSTS max-age, where 0s means off; up to two years."""
    return _duration(value, limit=2 * 366 * 86_400_000)


_SIZE = re.compile(r"([0-9]{1,12})([kKmMgG]?)")
_UNIT_B = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def size(value: Any) -> int:
    """A size in bytes, optionally with k, m or g (binary units, as nginx reads them)."""
    if isinstance(value, LongNumber):
        raise CheckFailed(f"a {value.digits}-digit size is larger than any server takes")
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        s = _plain_text(value)
        m = _SIZE.fullmatch(s)
        if not m:
            raise CheckFailed(f"{show(s)} is not a size (e.g. 10m, 512k, 1g)")
        n = int(m.group(1)) * _UNIT_B[m.group(2).lower()]
    if n < 1:
        # nginx reads 0 as "no limit", HAProxy and Apache as "no body at all".
        raise CheckFailed(f"{value} must be at least 1 byte (e.g. 10m)")
    return n


_PATH_PREFIX = re.compile(r"/([A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*)?")


def url_path(value: Any) -> str:
    """A URL path prefix: starts with /, no trailing slash, plain characters only."""
    s = _plain_text(value)
    if s != "/" and s.endswith("/"):
        raise CheckFailed(
            f"path prefix {show(s)} must not end with '/' (use {show(s.rstrip('/'))})"
        )
    if not _PATH_PREFIX.fullmatch(s) or any(seg in (".", "..") for seg in s.split("/")):
        raise CheckFailed(
            f"{show(s)} is not a plain URL path prefix (e.g. /course; letters, digits, . _ ~ - /)"
        )
    return s


_ARG = re.compile(r"[^\x00-\x1f\x7f\x85\u2028\u2029]*")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def argv(*placeholders: str) -> Check:
    """A command as a list of arguments (never one shell string); {name} placeholders allowed."""

    def check(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            raise CheckFailed(
                f"commands are lists of arguments, not shell strings: write {value.split()!r}"
            )
        if not isinstance(value, list) or not value:
            raise CheckFailed(f"expected a non-empty list of arguments, got {_describe(value)}")
        out = []
        for item in value:
            s = _plain_text(item)
            for name in _PLACEHOLDER.findall(s):
                if name not in placeholders:
                    known = ", ".join("{" + p + "}" for p in placeholders) or "none"
                    raise CheckFailed(f"unknown placeholder {{{name}}} (known: {known})")
            out.append(s)
        if not out[0] or not out[0].strip():
            raise CheckFailed("the command's first argument (the program) is empty")
        return tuple(out)

    check.__doc__ = "list of arguments"
    return check


def names(value: Any) -> tuple[str, ...]:
    """A list of names."""
    if not isinstance(value, list):
        raise CheckFailed(f"expected a list of names, got {_describe(value)}")
    return tuple(NAME(v) for v in value)
