"""Hostile inventories: each must be refused with a pointer to the offending line, and nothing
may be rendered from it.

The corpus is tests/hostile/*.yaml: one small inventory per attack, whose first line says what
it attacks and whose offending line(s) end with the comment `# <-- error`. For every file,
`clusterctl validate` (the real CLI, in a subprocess) must exit 1 and print only lines of the
form `FILE:LINE:COL: message`, the LINEs being exactly the marked ones, with no traceback; and
`clusterctl render -o DIR` must exit 1 and create nothing.
"""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from clusterctl import cli

REPO = Path(__file__).resolve().parents[2]
HOSTILE = REPO / "tests" / "hostile"
CASES = sorted(HOSTILE.glob("*.yaml"))
MARKER = re.compile(r"#\s*<-- error\s*$")
_EXE = Path(sys.executable).with_name("clusterctl")
CLUSTERCTL = [str(_EXE)] if _EXE.exists() else [sys.executable, "-m", "clusterctl.cli"]

# Attacks the model lets through today. Each is a strict xfail: it turns into a failure the
# day the model refuses the attack, so the marker gets removed with the fix.
KNOWN_GAPS: dict[str, str] = {}


def marked_lines(text: str) -> set[int]:
    return {n for n, line in enumerate(text.splitlines(), 1) if MARKER.search(line)}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLUSTERCTL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def assert_refused(proc: subprocess.CompletedProcess[str], label: str, lines: set[int]) -> None:
    """Exit 1; every output line `label:LINE:COL: message`; the LINEs are exactly `lines`."""
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    assert proc.returncode == 1, output
    assert proc.stdout == "", "a refused inventory printed on stdout"
    problem = re.compile(rf"{re.escape(label)}:(\d+):(\d+): \S.*")
    reported = set()
    for line in proc.stderr.splitlines():
        m = problem.fullmatch(line)
        assert m, f"not a FILE:LINE:COL: line: {line!r}\n{output}"
        reported.add(int(m.group(1)))
    assert reported, output
    assert reported == lines, (
        f"reported lines {sorted(reported)}, offending {sorted(lines)}\n{output}"
    )


def case_params() -> list[object]:
    return [
        pytest.param(
            path,
            id=path.stem,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[path.stem])]
            if path.stem in KNOWN_GAPS
            else [],
        )
        for path in CASES
    ]


@pytest.fixture(scope="module")
def validated() -> dict[str, subprocess.CompletedProcess[str]]:
    """`clusterctl validate -i NAME` for every corpus file (run in parallel: each CLI start
    costs most of a second)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        procs = pool.map(lambda p: run_cli("validate", "-i", p.name, cwd=HOSTILE), CASES)
        return {p.name: proc for p, proc in zip(CASES, procs, strict=True)}


def test_corpus_is_complete_and_documented() -> None:
    assert len(CASES) >= 90
    for path in CASES:
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# Attacks: "), f"{path.name}: first line must say what it attacks"
        assert marked_lines(text), f"{path.name}: no line marked `# <-- error`"


@pytest.mark.parametrize("path", case_params())
def test_validate_refuses_with_the_offending_line(
    path: Path, validated: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    assert_refused(validated[path.name], path.name, marked_lines(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("path", case_params())
def test_render_refuses_and_writes_nothing(
    path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The CLI's own entry point, in-process (a subprocess per file would cost a second each);
    # any exception other than the user-facing ones escapes and fails the test.
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["clusterctl", "render", "-i", str(path), "-o", str(out)])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    captured = capsys.readouterr()
    assert exit_.value.code == 1, captured
    assert not out.exists(), f"render created {sorted(out.rglob('*'))}"
    assert f"{path}:" in captured.err


# -- attacks that need bytes a YAML file in the corpus should not hold -------------------------

RAW_BASE = (
    "cluster: hostile\n"
    "frontends:\n"
    "  - {name: lb1, kind: haproxy, address: 192.0.2.10}\n"
    "pools:\n"
    '  - name: "a{raw}pp"\n'
    "    servers: [{name: web1, address: 192.0.2.21, port: 8080}]\n"
    "services:\n"
    "  - {name: web, listen: [{port: 80}], default_pool: app}\n"
)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("\x00", id="NUL"),
        pytest.param("\x1b", id="ESC"),
        pytest.param("\x7f", id="DEL"),
        pytest.param("\r", id="CR"),
        pytest.param("\x85", id="NEL"),
        pytest.param("\u2028", id="LINE-SEPARATOR"),
        pytest.param("\u2029", id="PARAGRAPH-SEPARATOR"),
        pytest.param("\ufeff", id="BOM"),
        pytest.param("\u202e", id="RIGHT-TO-LEFT-OVERRIDE"),
    ],
)
def test_raw_control_characters_in_the_file_are_refused_at_their_line(
    raw: str, tmp_path: Path
) -> None:
    (tmp_path / "raw.yaml").write_bytes(RAW_BASE.replace("{raw}", raw).encode())
    assert_refused(run_cli("validate", "-i", "raw.yaml", cwd=tmp_path), "raw.yaml", {5})


@pytest.mark.parametrize("target", ["etc/ssh/ssh_host_ed25519_key", "etc/shadow", "dev/zero"])
def test_relative_tls_path_cannot_reach_system_files(tmp_path: Path, target: str) -> None:
    # The files need not exist: where the path leads is refused before anything is read.
    up = "../" * (len(tmp_path.parts) + 2)
    (tmp_path / "inv.yaml").write_text(
        "cluster: hostile\n"
        "frontends: [{name: lb1, kind: haproxy, address: 192.0.2.10}]\n"
        "pools: [{name: app, servers: [{name: web1, address: 192.0.2.21, port: 8080}]}]\n"
        "services:\n"
        "  - name: web\n"
        "    listen: [{port: 443, tls: true}]\n"
        "    default_pool: app\n"
        "    tls:\n"
        f"      certificate: {REPO}/inventories/files/example.com.crt\n"
        f"      key: {up}{target}\n"
    )
    assert_refused(run_cli("validate", "-i", "inv.yaml", cwd=tmp_path), "inv.yaml", {10})
