"""max_body holds for every framing of a request body, on the real servers.

A body with a Content-Length is refused from the header (test_servers_frontends.py); these
send bodies whose size nobody declares: HTTP/1.1 chunked over a raw socket, and HTTP/2
uploads of unknown length. Over the limit the client gets a 413 and no backend gets the
request; up to the limit the backend gets every byte.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.helpers.cluster import MAX_BODY, Cluster, kinds_fixtures
from tests.helpers.http import EXAMPLE_CERT, chunked_post

KINDS = ("haproxy", "nginx", "apache")
DEFAULT_MAX_BODY = 10 * 1024 * 1024  # services without max_body: `mixed`, `secure`
pytestmark = pytest.mark.servers


clusters, cluster = kinds_fixtures("body", KINDS)


def delivered(cluster: Cluster, path: str) -> int:
    """Requests for `path` that some backend read completely (it counts only those)."""
    return sum(b.hits[path] for b in cluster.backends.values())


@pytest.mark.parametrize("chunk", [100, 16384])
def test_chunked_body_of_max_body_passes_whole(cluster: Cluster, chunk: int) -> None:
    path = f"/chunked/ok/{chunk}"
    status, data = chunked_post(cluster.ports["web"], path, MAX_BODY, chunk=chunk)
    assert status == 200
    assert data["body_length"] == MAX_BODY
    assert delivered(cluster, path) == 1


@pytest.mark.parametrize("chunk", [100, 16384])
def test_chunked_body_one_byte_over_max_body_is_413(cluster: Cluster, chunk: int) -> None:
    path = f"/chunked/big/{chunk}"
    status, _ = chunked_post(cluster.ports["web"], path, MAX_BODY + 1, chunk=chunk)
    assert status == 413
    assert delivered(cluster, path) == 0


def test_chunked_body_past_the_default_limit_is_413(cluster: Cluster) -> None:
    # The case: 12 MiB against 10 MiB, far more than any buffer the server holds, so
    # the limit is only known while the body streams through.
    status, _ = chunked_post(cluster.ports["mixed-http"], "/chunked/12m", 12 * 1024 * 1024)
    assert status == 413
    assert delivered(cluster, "/chunked/12m") == 0


def test_chunked_body_of_several_buffers_under_the_limit_passes(cluster: Cluster) -> None:
    size = 3 * 1024 * 1024
    status, data = chunked_post(cluster.ports["mixed-http"], "/chunked/3m", size)
    assert status == 200
    assert data["body_length"] == size


def _h2_upload(port: int, size: int) -> str:
    """curl over HTTP/2 uploading `size` bytes read from a pipe: a body with no length."""
    proc = subprocess.run(
        [
            "curl",
            "-sS",
            "--http2",
            "--max-time",
            "20",
            "--cacert",
            str(EXAMPLE_CERT),
            "--resolve",
            f"www.example.com:{port}:127.0.0.1",
            "-T",
            "-",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            f"https://www.example.com:{port}/h2/upload",
        ],
        input=b"x" * size,
        capture_output=True,
        timeout=30,
        check=False,
    )
    # curl may fail to send the rest of a refused upload; the answer is what counts.
    return proc.stdout.decode()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_http2_upload_without_a_length_is_held_to_max_body(cluster: Cluster) -> None:
    port = cluster.ports["https"]
    assert _h2_upload(port, 1024 * 1024) == "2 200"
    # Past the limit nginx answers 413; HAProxy and Apache, which have already passed the
    # start of the stream on, cut it (RST_STREAM) and may or may not get a 413 out first.
    refused = _h2_upload(port, DEFAULT_MAX_BODY + 1024 * 1024)
    assert refused in (("2 413",) if cluster.kind == "nginx" else ("2 413", "0 000")), refused
    assert delivered(cluster, "/h2/upload") == 1


def test_the_body_filter_loses_no_request_under_steady_load(cluster: Cluster) -> None:
    # The filter runs on every request: under the event MPM a Lua state shared by a thread's
    # requests made Apache's children abort now and then, cutting requests in flight. A
    # client that never resends (Connection: close, GETs and POSTs) sees every answer.
    from clusterctl.loadgen import Load

    url = f"http://127.0.0.1:{cluster.ports['web']}/"
    report = Load(url, clients=8, duration=10, max_requests=6_000, keepalive=False).start().wait()
    assert report.requests >= 500, report.summary()
    assert report.failed == 0, report.summary()
