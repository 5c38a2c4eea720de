"""The flags Terraform and Ansible users try first: -h, completion, -v, colour, -i once, env.

Run in-process through `main()` (the real entry point: same parsing, same exit codes), which
is a fraction of a subprocess's cost.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import paramiko
import pytest

from clusterctl import ui
from clusterctl.cli import main
from clusterctl.execute import ssh
from clusterctl.execute.admin_views import ServerView
from clusterctl.execute.apply import HostResult

REPO = Path(__file__).resolve().parents[2]
FULL = REPO / "inventories" / "full.yaml"
MINIMAL = REPO / "inventories" / "minimal.yaml"


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["clusterctl", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    got = capsys.readouterr()
    code = exit_.value.code
    return (code if isinstance(code, int) else 1), got.out, got.err


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each run starts as a fresh process would: no trace hook, colour flag off, no env.
    monkeypatch.setattr(ssh, "trace", None)
    monkeypatch.setattr(ui, "_no_color_flag", False)
    for var in ("CLUSTERCTL_INVENTORY", "NO_COLOR", "FORCE_COLOR"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    "command", [[], ["validate"], ["rollout"], ["lab"], ["lab", "up"], ["lock", "break"]]
)
def test_dash_h_is_help_everywhere(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    short = run(monkeypatch, capsys, *command, "-h")
    long = run(monkeypatch, capsys, *command, "--help")
    assert short == long
    assert short[0] == 0 and short[1].startswith("Usage: clusterctl")
    assert "-h, --help" in short[1]


def test_shell_completion_is_offered_and_completes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(monkeypatch, capsys, "--help")
    assert "--install-completion" in out and "--show-completion" in out
    code, out, _ = run(monkeypatch, capsys, "--show-completion", "bash")
    assert code == 0 and "_CLUSTERCTL_COMPLETE=complete_bash" in out
    # What the installed script asks: the words so far, the one being completed.
    monkeypatch.setenv("_CLUSTERCTL_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "clusterctl roll")
    monkeypatch.setenv("COMP_CWORD", "1")
    code, out, _ = run(monkeypatch, capsys)
    assert code == 0 and out.split() == ["rollout"]


def test_a_second_inventory_is_an_error_not_an_override(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(monkeypatch, capsys, "validate", "-i", str(FULL), "-i", str(MINIMAL))
    assert code == 1 and out == ""
    assert f"given 2 times ({FULL}, {MINIMAL}); give one inventory" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run(
        monkeypatch, capsys, "plan", f"--inventory={FULL}", "--limit", "lb1", "-i", str(FULL)
    )
    assert code == 1 and "given 2 times" in err


def test_the_environment_stands_in_for_dash_i(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLUSTERCTL_INVENTORY", str(MINIMAL))
    code, out, _ = run(monkeypatch, capsys, "validate")
    assert code == 0 and out.startswith(f"{MINIMAL}: valid (1 front end, 1 pool, 1 service)")
    # A flag on the command line beats the environment, as TF_VAR_ and -var do.
    code, out, _ = run(monkeypatch, capsys, "validate", "-i", str(FULL))
    assert code == 0 and out.startswith(f"{FULL}: valid (3 front ends,")


def test_validate_counts_agree_with_their_nouns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(monkeypatch, capsys, "validate", "-i", str(MINIMAL))
    assert "1 front end," in out and "1 front ends" not in out
    assert ui.plural(0, "pool") == "0 pools" and ui.plural(2, "front end") == "2 front ends"


class _Channel:
    def __init__(self, rc: int) -> None:
        self.rc = rc
        self.sent = b""

    def shutdown_write(self) -> None:
        pass

    def recv_exit_status(self) -> int:
        return self.rc


class _Stream:
    def __init__(self, channel: _Channel, data: bytes = b"") -> None:
        self.channel, self.data = channel, data

    def write(self, data: bytes) -> None:
        self.channel.sent += data

    def read(self) -> bytes:
        return self.data


class _Client:
    def __init__(self, rc: int) -> None:
        self.channel = _Channel(rc)

    def exec_command(self, command: str, timeout: float) -> tuple[_Stream, _Stream, _Stream]:
        c = self.channel
        return _Stream(c), _Stream(c, b"out"), _Stream(c)


def test_verbose_shows_each_remote_command_and_its_time_never_arguments_or_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from clusterctl.cli.base import _main

    _main(version=False, verbose=True, no_color=False)
    assert ssh.trace is not None
    client: Any = _Client(rc=3)
    remote = ssh.Remote(ssh.Endpoint("lb1", "192.0.2.10"), client)
    script = 'set -e\ninstall -m 0600 /dev/stdin "$1"\n'
    remote.exec_argv(
        ["sudo", "-n", "--", "sh", "-c", script, "clusterctl", "/etc/haproxy/certs/web.pem"],
        b"-----BEGIN PRIVATE KEY----- s3cret",
        10.0,
        "upload",
    )
    remote.client = _Client(rc=0)  # type: ignore[assignment]
    remote.exec_argv(["systemctl", "reload", "haproxy-token-XYZ"], None, 10.0, None)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith('  lb1: sudo sh: install -m 0600 /dev/stdin "$1" [upload] (0.')
    assert err[0].endswith("s, exit 3)")
    assert err[1].startswith("  lb1: systemctl (0.") and err[1].endswith("s)")
    text = "\n".join(err)
    assert "web.pem" not in text and "s3cret" not in text and "XYZ" not in text


def test_quiet_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    from clusterctl.cli.base import _main

    _main(version=False, verbose=False, no_color=False)
    client: Any = _Client(rc=0)
    ssh.Remote(ssh.Endpoint("lb1", "192.0.2.10"), client).exec_argv(["true"], None, 5.0, None)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["env", "SUDO_ASKPASS=/run/x", "sudo", "-A", "-p", "", "--", "cat", "/s"], "sudo cat"),
        (["sh", "-c", '# why\nset -eu\n\ntest -d "$1"', "clusterctl", "/x"], 'sh: test -d "$1"'),
        (["/usr/sbin/haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg"], "haproxy"),
        (["sh", "-c", "x" * 100], "sh: " + "x" * 57 + "..."),
    ],
)
def test_describe_names_the_program_not_its_arguments(argv: list[str], expected: str) -> None:
    assert ssh.describe(argv) == expected


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("env", "flag", "tty", "colour"),
    [
        ({}, False, True, True),
        ({}, False, False, False),
        ({"NO_COLOR": "1"}, False, True, False),
        ({"FORCE_COLOR": "1"}, False, False, True),
        ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False, False, False),
        ({"FORCE_COLOR": "1"}, True, True, False),
        ({"NO_COLOR": ""}, False, True, True),  # set but empty is unset, as no-color.org says
    ],
)
def test_colour_follows_flag_then_no_color_then_force_color_then_the_terminal(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], flag: bool, tty: bool, colour: bool
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    ui.set_no_color(flag)
    stream = _Tty() if tty else io.StringIO()
    assert ui.colour_wanted(stream) is colour
    monkeypatch.setattr(sys, "stdout", stream)
    ui.console().print(ui.Text("changed", style="green"))
    assert ("\x1b[" in stream.getvalue()) is colour


def test_no_color_flag_reaches_the_console(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    run(monkeypatch, capsys, "--no-color", "validate", "-i", str(MINIMAL))
    assert ui.colour_wanted(_Tty()) is False


VIEWS = [
    ServerView("lb1", "app", "web1", "ready", "up", 1),
    ServerView("lb2", "app", "web2", "drain", "up", None),
]
RESULTS = [HostResult("lb1", "changed", "", 1.25), HostResult("lb2", "failed", "[emerg] x", 0.5)]


def test_tables_become_plain_lines_when_piped() -> None:
    piped = io.StringIO()
    out = ui.Console(file=piped, no_color=True)
    ui.print_views(VIEWS, out)
    ui.print_results(RESULTS, out)
    assert piped.getvalue().splitlines() == [
        "lb1 app/web1: ready, health up, 1 session",
        "lb2 app/web2: drain, health up, sessions unknown",
        "lb1: changed in 1.2s",
        "lb2: failed in 0.5s: [emerg] x",
    ]


def test_tables_on_a_terminal() -> None:
    tty = _Tty()
    out = ui.Console(file=tty, no_color=True, force_terminal=True, width=100)
    ui.print_views(VIEWS, out)
    lines = tty.getvalue().splitlines()
    assert "front end" in lines[0] and "┃" in lines[0]  # a header row, columns ruled
    assert any("web2" in ln and "drain" in ln and "-" in ln for ln in lines)


def test_a_refused_connection_reads_as_words_not_errno() -> None:
    # What paramiko raises when every address refused: "[Errno None] Unable to connect to ..."
    exc = paramiko.ssh_exception.NoValidConnectionsError(
        {("127.0.0.1", 22): ConnectionRefusedError(111, "Connection refused")}
    )
    assert "Errno" in str(exc)
    assert ssh.why_not(exc) == "connection refused"
    assert ssh.why_not(OSError(113, "No route to host")) == "no route to host"
    assert ssh.why_not(TimeoutError()) == "timed out"


def test_unreachable_ssh_port_is_named_without_errno(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ep = ssh.Endpoint("lb1", "127.0.0.1", port=port, known_hosts=str(tmp_path / "kh"))
    with pytest.raises(ssh.SSHError) as err:
        ssh.Remote.connect(ep)
    assert str(err.value) == f"lb1: cannot reach 127.0.0.1:{port}: connection refused"
