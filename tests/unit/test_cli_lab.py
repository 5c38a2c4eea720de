"""The lab in one style: its name positional, `lab ssh NAME HOST -- CMD` with arguments intact,
`lab load` over HTTPS and through redirects (real local servers, a real TLS handshake)."""

from __future__ import annotations

import http.server
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterctl.cli.lab import remote_command, start_url
from clusterctl.loadgen import Load

FILES = Path(__file__).resolve().parents[2] / "inventories" / "files"

TRICKY = ["a b", "$HOME", "it's", "; rm -rf /tmp/x", "*", "", "back\\slash", "new\nline"]


def test_remote_arguments_reach_the_command_intact() -> None:
    # sshd hands the joined words to the login shell as one line; sh -c does the same here.
    line = " ".join(remote_command(["printf", "[%s]\\n", *TRICKY]))
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=True).stdout
    assert out == "".join(f"[{a}]\n" for a in TRICKY)


def test_lab_ssh_takes_the_lab_name_then_the_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from clusterctl import lab
    from clusterctl.cli import main

    seen: dict[str, Any] = {}

    class Info:
        def ssh_argv(self, host: str, *command: str) -> list[str]:
            return ["ssh", f"root@{host}", *command]

    def info(name: str) -> Info:
        seen["lab"] = name
        return Info()

    def execvp(file: str, argv: list[str]) -> None:
        seen["argv"] = argv
        raise SystemExit(0)

    monkeypatch.setattr(lab, "info", info)
    monkeypatch.setattr(os, "execvp", execvp)
    monkeypatch.setattr(
        sys, "argv", ["clusterctl", "lab", "ssh", "h7lab", "lb1", "--", "ls", "a b"]
    )
    with pytest.raises(SystemExit):
        main()
    assert seen == {"lab": "h7lab", "argv": ["ssh", "root@lb1", "ls", "'a b'"]}
    # A host alone is not enough: the lab's name comes first, as in every lab command.
    monkeypatch.setattr(sys, "argv", ["clusterctl", "lab", "ssh", "lb1"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    assert "Missing argument 'host'" in capsys.readouterr().err


def test_https_start_url() -> None:
    assert start_url("http://198.18.0.2/", False) == "http://198.18.0.2/"
    assert start_url("http://198.18.0.2/", True) == "https://198.18.0.2/"
    assert start_url("http://198.18.0.2:8080/x", True) == "https://198.18.0.2/x"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    redirect_to = ""

    def do_GET(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))  # a POST's body
        if self.redirect_to:
            self.send_response(301)
            self.send_header("Location", self.redirect_to + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"served over TLS" if isinstance(self.connection, ssl.SSLSocket) else b"plain"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", "be1")
        self.send_header("X-Release", "tls" if body.startswith(b"served") else "plain")
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


def _serve(handler: type[_Handler], tls: bool) -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(FILES / "example.com.crt", FILES / "example.com.key")
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def redirecting() -> Iterator[str]:
    """http://127.0.0.1:P/ answers 301 to https://127.0.0.1:Q/..., which serves over TLS."""
    for tls_server in _serve(_Handler, tls=True):
        port = tls_server.server_address[1]

        class Redirect(_Handler):
            redirect_to = f"https://127.0.0.1:{port}"

        for plain in _serve(Redirect, tls=False):
            yield f"http://127.0.0.1:{plain.server_address[1]}/"


def test_load_follows_a_redirect_to_https_and_measures_the_real_answers(redirecting: str) -> None:
    report = Load(redirecting, clients=2, duration=5, max_requests=20, follow=True).start().wait()
    assert report.failed == 0, report.summary()
    assert report.statuses == {200: 20}
    assert report.served == {"be1/tls": 20}


def test_without_follow_the_redirects_are_what_is_counted(redirecting: str) -> None:
    report = Load(redirecting, clients=1, duration=5, max_requests=5).start().wait()
    assert report.statuses == {301: 5} and report.failed == 0


def test_load_speaks_https_directly(redirecting: str) -> None:
    for tls_server in _serve(_Handler, tls=True):
        url = f"https://127.0.0.1:{tls_server.server_address[1]}/"
        report = Load(url, clients=1, duration=5, max_requests=5).start().wait()
        assert report.statuses == {200: 5} and report.served == {"be1/tls": 5}


def test_a_redirect_out_of_the_lab_is_not_followed() -> None:
    class Away(_Handler):
        redirect_to = "http://192.0.2.1"  # TEST-NET: outside loopback and the lab

    for server in _serve(Away, tls=False):
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        report = Load(url, clients=1, duration=5, max_requests=3, follow=True).start().wait()
        assert report.failed == 3 and report.statuses == {}
        assert report.errors == {"HTTPException": 3}
