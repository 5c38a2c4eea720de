"""Several of clusterctl's fixed scripts in one remote command: one round trip, not one each.

Each part's script becomes a shell function that runs in a subshell (its `exit`, `set -e`,
`shift` and PATH stay its own) and is called with its own arguments by position ("${3}" ...),
so, as for a single script, no argument is ever spliced into the text. After each part the
chain writes a marker with its exit status to both stdout and stderr; the caller gets one
Result per part that ran, with that part's own output. A part marked `stop` ends the chain when
it fails, as a step that fails ends its phase. A part's stdin is its slice of the chain's stdin
(`head -c` reads exactly that many bytes); a part without one reads /dev/null.

A remote that is not an ssh.Remote (a test's fake) gets the parts one by one, the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from clusterctl.execute.ssh import Remote, Result

_MARK = re.compile(r"\x1e(-?\d+)\x1e")


@dataclass(frozen=True)
class Part:
    script: str
    args: tuple[str, ...] = ()
    stdin: bytes | None = None
    stop: bool = True  # a failure ends the chain


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
    for i, part in enumerate(parts):
        refs = "".join(f' "${{{len(args) + k + 1}}}"' for k in range(len(part.args)))
        args += part.args
        if part.stdin is not None:
            if not part.stop:  # a part that stopped early would leave its bytes to the next
                raise ValueError("a chain part with stdin must stop the chain when it fails")
            data += part.stdin
            lines.append(f"head -c {len(part.stdin)} | p{i}{refs}; rc=$?")
        else:
            lines.append(f"p{i}{refs} </dev/null; rc=$?")
        lines.append("printf '\\036%d\\036' \"$rc\"; printf '\\036%d\\036' \"$rc\" >&2")
        if part.stop:
            lines.append('[ "$rc" -eq 0 ] || exit 0')
    return "\n".join(lines) + "\n", args, bytes(data)


def split_output(parts: Sequence[Part], rc: int, out: str, err: str) -> list[Result]:
    """One Result per part that ran; a chain that broke off (the shell itself failed) ends
    with a Result for the part it was in, with the chain's exit status and remaining words."""
    outs, errs = _MARK.split(out), _MARK.split(err)
    results: list[Result] = []
    for i, part in enumerate(parts):
        j = 2 * i
        if j + 1 >= len(outs) or j + 1 >= len(errs):
            tail_out = outs[j] if j < len(outs) else ""
            tail_err = errs[j] if j < len(errs) else ""
            results.append(_result(part, rc or 1, tail_out, tail_err))
            break
        results.append(_result(part, int(outs[j + 1]), outs[j], errs[j]))
        if part.stop and results[-1].rc != 0:
            break
    return results


def _result(part: Part, rc: int, out: str, err: str) -> Result:
    return Result(("sh", "-c", part.script, "clusterctl", *part.args), rc, out, err)


def sh_many(remote: Shell, parts: Sequence[Part], step: str | None = None) -> list[Result]:
    """Run the parts in order in one remote command (through sudo, as Remote.sh does)."""
    if not isinstance(remote, Remote) or len(parts) == 1:
        results = []
        for part in parts:
            results.append(remote.sh(part.script, *part.args, stdin=part.stdin, step=step))
            if part.stop and not results[-1].ok:
                break
        return results
    script, args, data = chain_command(parts)
    res = remote.sh(script, *args, stdin=data, step=step)
    return split_output(parts, res.rc, res.out, res.err)
