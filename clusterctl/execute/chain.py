"""Several of clusterctl's fixed scripts in one remote command: one round trip, not one each.

Each part's script becomes a shell function that runs in a subshell (its `exit`, `set -e`,
`shift` and PATH stay its own) and is called with its own arguments by position ("${3}" ...),
so, as for a single script, no argument is ever spliced into the text. After each part the
chain writes a marker with its number and exit status to both stdout and stderr; the caller
gets one Result per part that ran, with that part's own output. A part marked `stop` ends the
chain when it fails, as a step that fails ends its phase; a part marked `always` (a cleanup)
runs all the same. A part's stdin is its slice of the chain's stdin
(`head -c` reads exactly that many bytes); a part without one reads /dev/null.

A remote that is not an ssh.Remote (a test's fake) gets the parts one by one, the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from clusterctl.execute.ssh import Remote, Result

_MARK = re.compile(r"\x1e(\d+):(-?\d+)\x1e")


@dataclass(frozen=True)
class Part:
    script: str
    args: tuple[str, ...] = ()
    stdin: bytes | None = None
    stop: bool = True  # a failure ends the chain
    always: bool = False  # runs even when an earlier part ended the chain (no stdin then)


class Shell(Protocol):
    def sh(
        self,
        script: str,
        *args: str,
        stdin: bytes | None = None,
        sudo: bool = True,
        step: str | None = None,
    ) -> Result: ...


def chain_command(parts: Sequence[Part]) -> tuple[str, list[str], bytes]:
    """The chain's script, its arguments and its stdin."""
    # A no-op first line, so `--verbose` (ssh.describe) names the chain, not its first function.
    lines: list[str] = [f": chain of {len(parts)} scripts"]
    args: list[str] = []
    data = bytearray()
    for i, part in enumerate(parts):
        lines.append(f"p{i}() (\n{part.script}\n)")
    lines.append("stopped=")
    for i, part in enumerate(parts):
        refs = "".join(f' "${{{len(args) + k + 1}}}"' for k in range(len(part.args)))
        args += part.args
        if part.stdin is not None:
            if not part.stop or part.always:
                # A part that stopped early would leave its bytes to the next (and a part
                # after a stop could find another's bytes).
                raise ValueError("a chain part with stdin must stop the chain when it fails")
            data += part.stdin
            run = f"head -c {len(part.stdin)} | p{i}{refs}; rc=$?"
        else:
            run = f"p{i}{refs} </dev/null; rc=$?"
        mark = f"printf '\\036{i}:%d\\036' \"$rc\"; printf '\\036{i}:%d\\036' \"$rc\" >&2"
        stop = '; [ "$rc" -eq 0 ] || stopped=1' if part.stop else ""
        body = f"{run}\n{mark}{stop}"
        lines.append(body if part.always else f'if [ -z "$stopped" ]; then\n{body}\nfi')
    return "\n".join(lines) + "\n", args, bytes(data)


def split_output(parts: Sequence[Part], rc: int, out: str, err: str) -> list[Result]:
    """One Result per part that ran, in order (see split_parts)."""
    got, _ = split_parts(parts, rc, out, err)
    return [got[i] for i in sorted(got)]


def split_parts(
    parts: Sequence[Part], rc: int, out: str, err: str
) -> tuple[dict[int, Result], bool]:
    """Each part that ran, by its number; and whether the chain broke off (the shell itself
    failed): then the last Result is the part it was in, with the chain's exit status and
    remaining words."""
    outs, errs = _MARK.split(out), _MARK.split(err)
    marks = min(len(outs), len(errs)) // 3
    got: dict[int, Result] = {}
    k = 0
    stopped = False
    for i, part in enumerate(parts):
        if stopped and not part.always:
            continue
        j = 3 * k
        if k >= marks or outs[j + 1] != str(i) or errs[j + 1] != str(i):
            tail_out = outs[j] if j < len(outs) else ""
            tail_err = errs[j] if j < len(errs) else ""
            got[i] = _result(part, rc or 1, tail_out, tail_err)
            return got, True
        got[i] = _result(part, int(outs[j + 2]), outs[j], errs[j])
        k += 1
        stopped = stopped or (part.stop and got[i].rc != 0)
    return got, False


def _result(part: Part, rc: int, out: str, err: str) -> Result:
    return Result(("sh", "-c", part.script, "clusterctl", *part.args), rc, out, err)


def sh_many(remote: Shell, parts: Sequence[Part], step: str | None = None) -> list[Result]:
    """Run the parts in order in one remote command (through sudo, as Remote.sh does)."""
    got, _ = sh_parts(remote, parts, step)
    return [got[i] for i in sorted(got)]


def sh_parts(
    remote: Shell, parts: Sequence[Part], step: str | None = None
) -> tuple[dict[int, Result], bool]:
    """sh_many's Results by part number, and whether the chain broke off (split_parts)."""
    if not isinstance(remote, Remote) or len(parts) == 1:
        got: dict[int, Result] = {}
        stopped = False
        for i, part in enumerate(parts):
            if stopped and not part.always:
                continue
            got[i] = remote.sh(part.script, *part.args, stdin=part.stdin, step=step)
            stopped = stopped or (part.stop and not got[i].ok)
        return got, False
    script, args, data = chain_command(parts)
    res = remote.sh(script, *args, stdin=data, step=step)
    return split_parts(parts, res.rc, res.out, res.err)
