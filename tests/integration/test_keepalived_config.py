"""Rendered keepalived.conf files pass the real `keepalived --config-test` (2.2.7, Debian), and
a broken one fails it: the validator apply runs on each member before anything is replaced."""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
from pathlib import Path

from clusterctl.drivers.keepalived import KeepalivedDriver
from clusterctl.localcheck import check_frontend, write_tree
from clusterctl.model import load, parse
from clusterctl.model.vrrp import units
from clusterctl.render import render_frontend

REPO = Path(__file__).resolve().parents[2]


def test_pair_example_passes_keepalived_config_test() -> None:
    inv = load(REPO / "inventories" / "pair.yaml")
    results = [check_frontend(inv, u) for u in units(inv)]
    assert [(r.host, r.ok, r.output) for r in results] == [
        ("lb1+keepalived", True, ""),
        ("lb2+keepalived", True, ""),
    ]


def test_every_option_combination_passes() -> None:
    inv = load(REPO / "inventories" / "pair.yaml")
    g = inv.vrrp[0]
    variants = [
        dataclasses.replace(g, unicast=False, preempt=True, advert=200, probe=None),
        dataclasses.replace(g, track_process=False, advert=40_950),
        dataclasses.replace(
            g, probe=dataclasses.replace(g.probe, scheme="tcp") if g.probe else None
        ),
        dataclasses.replace(
            g, probe=dataclasses.replace(g.probe, interval=100) if g.probe else None
        ),
    ]
    for v in variants:
        changed = dataclasses.replace(inv, vrrp=(v,))
        for u in units(changed):
            r = check_frontend(changed, u)
            assert r.ok, (v, r.output)


def test_a_broken_config_fails_with_keepalived_words() -> None:
    inv = load(REPO / "inventories" / "pair.yaml")
    unit = units(inv)[0]
    driver = KeepalivedDriver()
    with tempfile.TemporaryDirectory(prefix="cc-") as tmp:
        files = render_frontend(inv, unit, root=tmp)
        write_tree(files, Path(tmp))
        conf = Path(tmp + driver.paths(unit).config)
        conf.write_text(conf.read_text().replace("virtual_router_id 51", "virtual_router_id 300"))
        argv = driver.validate_argv(str(conf), tmp)
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert proc.returncode == 5
        assert "outside range [1, 255]" in proc.stderr
        # A missing file is exit 0 for keepalived itself: the validator refuses it.
        missing = subprocess.run(
            driver.validate_argv(tmp + "/nothing.conf"), capture_output=True, check=False
        )
        assert missing.returncode != 0


def test_multi_group_member() -> None:
    text = (REPO / "inventories" / "pair.yaml").read_text()
    text += (
        "  - name: api\n    address: 192.0.2.251/24\n    interface: eth0\n"
        "    members: [lb2, lb1]\n    router_id: 52\n    advert: 200ms\n    track_process: false\n"
    )
    inv = parse(text, str(REPO / "inventories" / "pair.yaml"))
    for u in units(inv):
        r = check_frontend(inv, u)
        assert r.ok, r.output
        conf = render_frontend(inv, u)["/etc/keepalived/keepalived.conf"].content.decode()
        assert conf.count("vrrp_instance ") == 2


def _probe_script(tmp: Path) -> Path:
    inv = load(REPO / "inventories" / "pair.yaml")
    files = render_frontend(inv, units(inv)[0])
    script = tmp / "probe.sh"
    script.write_bytes(files["/etc/keepalived/clusterctl-probe.sh"].content)
    return script


def test_the_probe_script_fails_a_run_once_its_listener_is_gone(tmp_path: Path) -> None:
    # The rendered script under real bash and curl, against a listener on loopback: a
    # sub-second run (every 50 ms, 2 failures in a row) passes while it answers, fails when it
    # never did, and fails once it goes away in the middle of a run; a whole-second probe asks
    # once. tcp asks for a connection only.
    import http.server
    import threading

    script = _probe_script(tmp_path)
    state = str(tmp_path / "count")

    class Quiet(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    def run(*args: str) -> int:
        argv = ["bash", str(script), *args]
        return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    port = str(server.server_address[1])
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        assert run("http", "127.0.0.1", port, "/", "50", "2", state) == 0
        assert run("tcp", "127.0.0.1", port, "/", "50", "2", state) == 0
        assert run("http", "127.0.0.1", port, "/", "0", "0", "-") == 0
        threading.Timer(0.3, server.shutdown).start()
        threading.Timer(0.3, server.server_close).start()
        assert run("http", "127.0.0.1", port, "/", "50", "2", state) == 1
    finally:
        server.server_close()
    assert run("http", "127.0.0.1", port, "/", "50", "2", state) != 0
    assert run("tcp", "127.0.0.1", port, "/", "0", "0", "-") != 0


def test_the_probe_counts_failures_across_runs_and_catches_a_hung_listener(
    tmp_path: Path,
) -> None:
    # A listener that accepts and never answers: each ask times out, fewer fit in one run than
    # `fall`, yet the count carries to the next run (its file), which fails; then the same
    # without bash's EPOCHREALTIME (bash before 5.0), timed by date.
    import socket

    script = _probe_script(tmp_path)
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)  # the kernel completes handshakes; nothing ever reads or answers
    port = str(hung.getsockname()[1])
    try:
        for prefix in ([], ["unset EPOCHREALTIME;"]):
            state = tmp_path / f"count{len(prefix)}"
            line = " ".join([*prefix, 'source "$0" "$@"'])
            argv = ["bash", "-c", line, str(script), "http", "127.0.0.1", port, "/", "300", "4"]
            codes = []
            for _ in range(4):
                run = subprocess.run(
                    [*argv, str(state)], capture_output=True, timeout=10, check=False
                )
                codes.append(run.returncode)
                if run.returncode:
                    break
            # 300 ms asks: at most 3 fit in a run, so a later run brings the 4th failure.
            assert len(codes) >= 2 and codes == [0] * (len(codes) - 1) + [1], (prefix, codes)
            assert int(state.read_text()) >= 4
    finally:
        hung.close()
