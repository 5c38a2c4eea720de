"""The command line as users meet it: exit codes, one-line errors, files on disk."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FULL = REPO / "inventories" / "full.yaml"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clusterctl", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_help_lists_every_command() -> None:
    out = cli("--help").stdout
    for command in (
        "validate",
        "render",
        "plan",
        "apply",
        "rollout",
        "drain",
        "restore",
        "status",
        "lab",
        "verify",
    ):
        assert command in out


def line_of(path: Path, text: str) -> int:
    """The line where `text` first appears: full.yaml's comments grow with its keys."""
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if text in ln)


def test_validate_ok_and_bad(tmp_path: Path) -> None:
    assert cli("validate", "-i", str(FULL)).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(FULL.read_text().replace("kind: nginx", "kind: ngnix"))
    res = cli("validate", "-i", str(bad))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    line = line_of(FULL, "kind: nginx")
    assert lines == [
        f"{bad}:{line}:11: frontends[1].kind: 'ngnix' is not one of haproxy, nginx, apache; did you mean 'nginx'?"
    ]
    assert "Traceback" not in res.stderr + res.stdout


def test_render_is_deterministic_and_keys_are_private(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli("render", "-i", str(FULL), "-o", str(a)).returncode == 0
    assert cli("render", "-i", str(FULL), "-o", str(b)).returncode == 0
    assert tree(a) == tree(b)
    assert "lb1/etc/haproxy/haproxy.cfg" in tree(a)
    assert "lb2/etc/nginx/nginx.conf" in tree(a)
    assert "lb3/etc/apache2/apache2.conf" in tree(a)
    assert (a / "lb2/etc/nginx/tls/web.key").stat().st_mode & 0o777 == 0o600
    assert (a / "lb1/etc/haproxy/certs/web.pem").stat().st_mode & 0o777 == 0o600


def test_render_check_runs_the_real_validators(tmp_path: Path) -> None:
    res = cli("render", "-i", str(FULL), "-o", str(tmp_path), "--check")
    assert res.returncode == 0, res.stderr
    for host, kind in (("lb1", "haproxy"), ("lb2", "nginx"), ("lb3", "apache")):
        assert f"{host}: {kind} config valid" in res.stdout


def test_render_check_reports_the_validators_words(tmp_path: Path) -> None:
    # A matching pair the model accepts, but a 1024-bit RSA key: OpenSSL's default security
    # level makes the kinds' own validators refuse it ("ee key too small").
    files = tmp_path / "files"
    files.mkdir()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:1024",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=www.example.com",
            "-keyout",
            str(files / "example.com.key"),
            "-out",
            str(files / "example.com.crt"),
        ],
        check=True,
        capture_output=True,
    )
    inv = tmp_path / "inv.yaml"
    inv.write_text(FULL.read_text())
    res = cli("render", "-i", str(inv), "-o", str(tmp_path / "out"), "--check")
    assert res.returncode == 1
    assert "lb1: haproxy rejected the config" in res.stderr
    assert "Traceback" not in res.stderr


def test_invalid_inventory_renders_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(FULL.read_text().replace("port: 8080", "port: 80800", 1))
    res = cli("render", "-i", str(bad), "-o", str(tmp_path / "out"))
    assert (
        res.returncode == 1
        and f"{bad}:{line_of(FULL, 'port: 8080')}:15: pools[0].servers[0].port: 80800 is out of range"
        in res.stderr
    )
    assert not (tmp_path / "out").exists()


UNREACHABLE = """\
cluster: t
defaults:
  ssh: {port: 9, known_hosts: known_hosts}
frontends:
  - {name: lb1, kind: haproxy, address: 127.0.0.1}
pools:
  - name: app
    servers: [{name: web1, address: 127.0.0.1, port: 9}]
services:
  - {name: web, listen: [{port: 80}], default_pool: app}
deploy: {command: ["true"], min_available: 0}
"""


@pytest.mark.parametrize(
    "command",
    [
        ["plan"],
        ["apply", "--yes"],
        ["rollout", "--version", "2.0"],
        ["drain", "web1"],
        ["restore", "web1"],
        ["status"],
        ["lock", "show"],
    ],
)
def test_unreachable_host_is_a_one_line_error(tmp_path: Path, command: list[str]) -> None:
    # Port 9 (discard) on loopback is closed: the connection is refused at once.
    inv = tmp_path / "inv.yaml"
    inv.write_text(UNREACHABLE)
    head = command[:2] if command[0] == "lock" else command[:1]
    res = cli(*head, "-i", str(inv), *command[len(head) :])
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert "cannot reach 127.0.0.1:9" in res.stderr + res.stdout


def test_missing_validator_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from clusterctl import localcheck
    from clusterctl.errors import ClusterctlError
    from clusterctl.model import load

    monkeypatch.setattr(localcheck, "find_binary", lambda name: None)
    inv = load(FULL)
    with pytest.raises(
        ClusterctlError, match=r"nginx is not installed \(apt-get install -y nginx\)"
    ):
        localcheck.check_frontend(inv, inv.frontends[1])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["plan", "--bogus"], "No such option: --bogus"),
        (["plan"], "Missing option '--inventory' / '-i'"),
        (["apply", "-i", str(FULL), "--forks", "0"], "Invalid value for '--forks'"),
        (["rollout", "-i", str(FULL)], "Missing option '--version'"),
        (["nosuchcommand"], "No such command"),
        (["lab"], "Missing command"),
    ],
)
def test_usage_errors_exit_1_never_the_changes_pending_code(args: list[str], words: str) -> None:
    # 2 means "changes pending" under --detailed-exitcode; a typo in CI must fail the job.
    res = cli(*args)
    assert res.returncode == 1, res.stderr
    assert words in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr


def test_help_documents_the_exit_codes() -> None:
    out = cli("--help").stdout
    text = " ".join(out.split())
    assert "1 any error, usage errors included; 2 changes pending" in text


@pytest.mark.parametrize("blank", ["", " ", ",", " , "])
@pytest.mark.parametrize("command", ["plan", "apply", "verify"])
def test_a_blank_limit_is_an_error_naming_the_hosts(command: str, blank: str) -> None:
    # An unset CI variable (`--limit "$HOSTS"`) must not select the whole cluster.
    extra = ["--yes"] if command == "apply" else []
    res = cli(command, "-i", str(FULL), "--limit", blank, *extra)
    assert res.returncode == 1
    assert res.stderr.startswith(f"error: --limit {blank!r} names nothing; name one or more of: ")
    assert "lb1, lb2, lb3" in res.stderr


def test_a_blank_pool_is_an_error_naming_the_pools() -> None:
    res = cli("rollout", "-i", str(FULL), "--version", "2.0", "--pool", " ")
    assert res.returncode == 1
    assert "--pool names nothing; name one or more of:" in res.stderr


def test_a_bad_rollout_version_is_refused_before_the_lock_or_any_host() -> None:
    # full.yaml's hosts are TEST-NET addresses: reaching for the lock first would fail on SSH.
    res = cli("rollout", "-i", str(FULL), "--version", "2.0; rm -rf /")
    assert res.returncode == 1
    assert res.stderr.startswith("error: --version '2.0; rm -rf /' is not a release name")
