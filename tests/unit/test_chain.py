"""execute/chain.py: several fixed scripts in one command, each with its own args, stdin, output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clusterctl.execute.chain import Part, chain_command, split_output, split_parts
from clusterctl.execute.scripts import SCRIPTS
from clusterctl.execute.ssh import Result


def run_chain(parts: list[Part]) -> list[Result]:
    """The chain as the remote shell runs it (argv, stdin), through the local /bin/sh."""
    script, args, data = chain_command(parts)
    proc = subprocess.run(
        ["sh", "-c", script, "clusterctl", *args], input=data, capture_output=True, check=False
    )
    return split_output(parts, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def test_each_part_gets_its_own_arguments_stdin_and_output(tmp_path: Path) -> None:
    a, b = tmp_path / "a file", tmp_path / "b"
    hostile = "$(touch pwned); `id` ' \" \\ *"
    parts = [
        Part('cat > "$1"; echo "wrote $1"', (str(a),), stdin=b"first\n"),
        Part('printf "%s|" "$@"; echo oops >&2; exit 3', (hostile, "x y"), stop=False),
        Part('set -e; shift; cat > "$1"; echo done', ("skipped", str(b)), stdin=b"\x00second"),
    ]
    got = run_chain(parts)
    assert [(r.rc, r.out, r.err) for r in got] == [
        (0, f"wrote {a}\n", ""),
        (3, f"{hostile}|x y|", "oops\n"),
        (0, "done\n", ""),
    ]
    assert a.read_bytes() == b"first\n"
    assert b.read_bytes() == b"\x00second"
    assert not Path("pwned").exists()


def test_a_failing_part_that_stops_ends_the_chain(tmp_path: Path) -> None:
    after = tmp_path / "after"
    parts = [
        Part("echo validating; echo 'config invalid' >&2; exit 1"),
        Part('touch "$1"', (str(after),)),
    ]
    got = run_chain(parts)
    assert [(r.rc, r.out, r.err) for r in got] == [(1, "validating\n", "config invalid\n")]
    assert not after.exists()


def test_a_part_without_stdin_reads_nothing_and_leaves_the_next_part_its_bytes(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    parts = [Part("cat; echo read-nothing"), Part('cat > "$1"', (str(out),), stdin=b"mine")]
    got = run_chain(parts)
    assert [r.out for r in got] == ["read-nothing\n", ""]
    assert out.read_bytes() == b"mine"


def test_the_real_write_script_in_a_chain(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "x.cfg"
    target.parent.mkdir()
    owner = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True, check=True).stdout
    who = f"{owner.strip()}:{group.strip()}"
    parts = [
        Part(SCRIPTS["write"], (str(target), "640", who), stdin=b"one"),
        Part(SCRIPTS["write"], (str(target) + "2", "600", who), stdin=b"two"),
    ]
    assert [r.rc for r in run_chain(parts)] == [0, 0]
    assert target.read_bytes() == b"one"
    assert (target.stat().st_mode & 0o777, Path(str(target) + "2").read_bytes()) == (0o640, b"two")


def test_a_broken_chain_is_the_failure_of_the_part_it_was_in() -> None:
    parts = [Part("echo ok"), Part("echo half; kill -9 $$")]
    got = run_chain(parts)
    assert got[0].rc == 0
    assert got[1].rc != 0 and got[1].out == "half\n"


def test_stdin_needs_a_part_that_stops() -> None:
    with pytest.raises(ValueError):
        chain_command([Part("cat", stdin=b"x", stop=False)])


def test_verbose_names_a_chain_by_what_it_is_never_its_arguments() -> None:
    from clusterctl.execute.ssh import describe

    script, args, _ = chain_command([Part('printf "%s" "$1"', ("secret-value",)), Part("true")])
    shown = describe(["sh", "-c", script, "sh", *args])
    assert shown == "sh: chain of 2 scripts"
    assert "secret-value" not in shown


def test_an_always_part_runs_after_a_part_that_stopped_the_chain(tmp_path: Path) -> None:
    skipped, cleaned = tmp_path / "skipped", tmp_path / "stage"
    cleaned.mkdir()
    parts = [
        Part("echo 'config invalid' >&2; exit 1"),
        Part('touch "$1"', (str(skipped),)),
        Part('rm -rf -- "$1"; echo cleaned', (str(cleaned),), stop=False, always=True),
    ]
    script, args, data = chain_command(parts)
    proc = subprocess.run(
        ["sh", "-c", script, "clusterctl", *args], input=data, capture_output=True, check=False
    )
    got, broken = split_parts(parts, proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    assert not broken
    assert {i: (r.rc, r.out, r.err) for i, r in got.items()} == {
        0: (1, "", "config invalid\n"),
        2: (0, "cleaned\n", ""),
    }
    assert not skipped.exists() and not cleaned.exists()


def test_an_always_part_runs_after_the_others_when_they_succeed(tmp_path: Path) -> None:
    parts = [Part("echo one"), Part("echo two", always=True, stop=False)]
    assert [r.out for r in run_chain(parts)] == ["one\n", "two\n"]


def test_an_always_part_takes_no_stdin() -> None:
    with pytest.raises(ValueError):
        chain_command([Part("cat", stdin=b"x", always=True)])
