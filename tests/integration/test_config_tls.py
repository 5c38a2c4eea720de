"""TLS and HTTP protocol settings of the rendered configs, checked against the real servers.

sslyze scans each kind's real TLS listener against Mozilla's intermediate profile, the one the
inventory's `profile: intermediate` promises; HTTP/2 is negotiated and spoken by curl; the
HTTP-to-HTTPS redirect keeps the method; a reload does not cut an idle keep-alive client.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time

import pytest
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)
from sslyze.scanner.models import ServerScanRequest, ServerScanResult
from sslyze.scanner.scanner import Scanner
from sslyze.server_setting import ServerNetworkLocation

from tests.helpers.cluster import Cluster, kinds_fixtures
from tests.helpers.http import EXAMPLE_CERT, request, tls_context

KINDS = ("haproxy", "nginx", "apache")
pytestmark = pytest.mark.servers

# What sslyze says about the inventory's self-signed, ten-year example certificate itself:
# expected, and not what this file tests (the server's protocols, ciphers and curves).
CERTIFICATE_FINDINGS = {
    "certificate_path_validation",
    "maximum_certificate_lifespan",
    "certificate_types",
    "certificate_curves",
    "certificate_signatures",
    "rsa_key_size",
}


clusters, cluster = kinds_fixtures("tls", KINDS)


@pytest.fixture(scope="module")
def scans(clusters: dict[str, Cluster]) -> dict[str, ServerScanResult]:
    """sslyze's scan of every kind's HTTPS listener, all three at once (about a second)."""
    requests = {
        kind: ServerScanRequest(
            server_location=ServerNetworkLocation(
                "www.example.com", c.ports["https"], ip_address="127.0.0.1"
            ),
            scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
        )
        for kind, c in clusters.items()
    }
    scanner = Scanner()
    scanner.queue_scans(list(requests.values()))
    by_port = {r.server_location.port: r for r in scanner.get_results()}
    return {kind: by_port[c.ports["https"]] for kind, c in clusters.items()}


def mozilla_findings(scan: ServerScanResult) -> dict[str, str]:
    """What sslyze --mozilla_config=intermediate reports for this scan."""
    profile = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    try:
        check_server_against_tls_configuration(scan, profile)
    except ServerNotCompliantWithTlsConfiguration as exc:
        return dict(exc.issues)
    return {}


def test_sslyze_finds_nothing_but_the_example_certificate(
    cluster: Cluster, scans: dict[str, ServerScanResult]
) -> None:
    findings = mozilla_findings(scans[cluster.kind])
    wrong = {k: v for k, v in findings.items() if k not in CERTIFICATE_FINDINGS}
    assert wrong == {}, wrong


def test_only_mozillas_key_exchange_groups_are_accepted(
    cluster: Cluster, scans: dict[str, ServerScanResult]
) -> None:
    curves = scans[cluster.kind].scan_result
    assert curves is not None and curves.elliptic_curves.result is not None
    accepted = {c.name for c in curves.elliptic_curves.result.supported_curves or []}
    # OpenSSL names prime256v1 secp256r1; X448 and secp521r1 are what OpenSSL adds by default.
    assert accepted == {"X25519", "secp256r1", "secp384r1"}


def _curl(*args: str) -> str:
    proc = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--cacert", str(EXAMPLE_CERT), *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_https_speaks_http2(cluster: Cluster) -> None:
    port = cluster.ports["https"]
    out = _curl(
        "--http2",
        "--resolve",
        f"www.example.com:{port}:127.0.0.1",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        f"https://www.example.com:{port}/",
    )
    assert out == "2 200"


def test_alpn_offers_h2_first(cluster: Cluster) -> None:
    ctx = tls_context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", cluster.ports["https"]), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname="www.example.com") as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"


def test_redirect_to_https_keeps_the_method(cluster: Cluster) -> None:
    http, https = cluster.ports["http"], cluster.ports["https"]
    before = sum(b.total_hits() for b in cluster.backends.values())
    r = request(http, "/form", method="POST", body=b"a=1")
    # 308, not 301: a client that follows it sends the POST again, not a GET without the body.
    assert r.status == 308
    assert r.headers["Location"] == f"https://www.example.com:{https}/form"
    assert sum(b.total_hits() for b in cluster.backends.values()) == before


def _get(sock: socket.socket) -> tuple[int, dict[str, str]]:
    """One keep-alive GET on an open connection: its status and headers."""
    sock.sendall(b"GET /keepalive HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
    reader = sock.makefile("rb")
    status = int(reader.readline().split()[1])
    headers: dict[str, str] = {}
    while (line := reader.readline().strip()) != b"":
        k, _, v = line.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    reader.read(int(headers.get("content-length", "0")))
    return status, headers


def test_haproxy_reload_answers_an_idle_keepalive_client(clusters: dict[str, Cluster]) -> None:
    if "haproxy" not in clusters:
        pytest.skip("haproxy is not installed")
    c = clusters["haproxy"]
    with socket.create_connection(("127.0.0.1", c.ports["web"]), timeout=5) as sock:
        status, _ = _get(sock)
        assert status == 200
        c.frontend.proc.send_signal(signal.SIGUSR2)  # master-worker reload, as systemctl does
        time.sleep(1.0)  # the new worker is up; the old one is stopping softly
        assert c.frontend.alive()
        # option idle-close-on-response: the old worker answers this request and says it is
        # the last one, instead of having closed the idle connection on the reload.
        status, headers = _get(sock)
    assert status == 200
    assert headers.get("connection") == "close"
