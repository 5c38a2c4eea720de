"""WebSockets, unavailable pages, metrics and access logs as rendered for each kind, and the
inventory errors their keys give (issue 15). Pure: no server runs here."""

from __future__ import annotations

from pathlib import Path

import crossplane
import pytest

from clusterctl.drivers.features import DEFAULT_PAGE
from clusterctl.errors import InventoryError
from clusterctl.model import load
from clusterctl.model.checks import CheckFailed
from clusterctl.model.proxychecks import source, syslog
from clusterctl.render import render_frontend

BASE = """\
cluster: t
frontends:
  - {name: hap, kind: haproxy, address: 192.0.2.10, FE_HAP}
  - {name: ngx, kind: nginx, address: 192.0.2.11, services: [web], FE_NGX}
  - {name: apa, kind: apache, address: 192.0.2.12, services: [web], FE_APA}
pools:
  - name: app
    servers: [{name: web1, address: 192.0.2.21, port: 8080}]
  - name: old
    maintenance: MAINT
    servers: [{name: web2, address: 192.0.2.22, port: 8080}]
  - name: db
    servers: [{name: db1, address: 192.0.2.31, port: 3306}]
services:
  - name: web
    listen: [{port: 80}]
    routes: [{path: /old, pool: old}]
    default_pool: app
    timeouts: {client: 1s, server: 3s, tunnel: 10m}
    UNAVAILABLE
  - name: sql
    mode: tcp
    listen: [{port: 3306}]
    default_pool: db
"""


def inventory(
    tmp_path: Path,
    *,
    hap: str = "syslog: /dev/log",
    ngx: str = "version: '1.22.1'",
    apa: str = "admin_port: 8081",
    maint: str = "false",
    unavailable: str = "retry_after: 2m",
    page: bytes | None = None,
) -> Path:
    if page is not None:
        (tmp_path / "sorry.html").write_bytes(page)
    text = (
        BASE.replace("FE_HAP", hap)
        .replace("FE_NGX", ngx)
        .replace("FE_APA", apa)
        .replace("MAINT", maint)
        .replace("UNAVAILABLE", f"unavailable: {{{unavailable}}}")
    )
    path = tmp_path / "inv.yaml"
    path.write_text(text)
    return path


def rendered(path: Path, host: str) -> dict[str, bytes]:
    inv = load(path)
    fe = next(f for f in inv.frontends if f.name == host)
    return {p: f.content for p, f in render_frontend(inv, fe).items()}


def config(path: Path, host: str) -> str:
    files = rendered(path, host)
    main = {"hap": "/etc/haproxy/haproxy.cfg", "ngx": "/etc/nginx/nginx.conf"}
    return files[main.get(host, "/etc/apache2/apache2.conf")].decode()


def problems(path: Path) -> list[str]:
    with pytest.raises(InventoryError) as info:
        load(path)
    return [str(p) for p in info.value.problems]


def nginx_directives(text: str, tmp_path: Path) -> list[dict[str, object]]:
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    parsed = crossplane.parse(str(conf), single=True, check_ctx=False, check_args=False)
    assert parsed["errors"] == []
    out: list[dict[str, object]] = []

    def walk(block: list[dict[str, object]]) -> None:
        for d in block:
            out.append(d)
            walk(d.get("block", []))  # type: ignore[arg-type]

    walk(parsed["config"][0]["parsed"])
    return out


# ---------------------------------------------------------------------------- WebSockets


def test_nginx_passes_upgrade_through_a_map_and_keeps_keepalive_otherwise(tmp_path: Path) -> None:
    ds = nginx_directives(config(inventory(tmp_path), "ngx"), tmp_path)
    maps = [d for d in ds if d["directive"] == "map" and d["args"][0] == "$http_upgrade"]
    assert len(maps) == 1
    # No Upgrade header: an empty Connection header, which nginx does not send (keep-alive).
    entries = {(e["directive"], *e["args"]) for e in maps[0]["block"]}  # type: ignore[attr-defined]
    assert entries == {("default", "upgrade"), ("", "")}
    var = maps[0]["args"][1]  # type: ignore[index]
    headers = [tuple(d["args"]) for d in ds if d["directive"] == "proxy_set_header"]
    assert ("Upgrade", "$http_upgrade") in headers
    assert ("Connection", var) in headers
    assert ("Connection", "") not in headers


def test_haproxy_gives_http_pools_the_tunnel_timeout_and_tcp_pools_none(tmp_path: Path) -> None:
    text = config(inventory(tmp_path), "hap")
    backends = {b.split("\n", 1)[0]: b for b in text.split("\nbackend ")[1:]}
    assert "timeout tunnel 600s" in backends["app"]
    assert "timeout tunnel" not in backends["db"]


def test_apache_members_upgrade_to_websocket(tmp_path: Path) -> None:
    members = [
        ln for ln in config(inventory(tmp_path), "apa").splitlines() if "BalancerMember" in ln
    ]
    assert members and all(ln.endswith(" upgrade=websocket") for ln in members)


# ---------------------------------------------------------------------------- pages


@pytest.mark.parametrize(
    ("host", "path"),
    [
        ("hap", "/etc/haproxy/clusterctl-pages/web.html"),
        ("ngx", "/etc/nginx/clusterctl-pages/web.html"),
        ("apa", "/etc/apache2/clusterctl-pages/web.html"),
    ],
)
def test_each_kind_installs_the_users_page_or_the_plain_default(
    tmp_path: Path, host: str, path: str
) -> None:
    assert rendered(inventory(tmp_path), host)[path] == DEFAULT_PAGE
    page = "<p>back soon – ünïcode</p>\n".encode()
    given = inventory(tmp_path, unavailable="page: sorry.html", page=page)
    assert rendered(given, host)[path] == page
    # A tcp service has no page.
    assert not any("sql" in p for p in rendered(given, host))


def test_the_503_carries_retry_after_in_seconds_on_every_kind(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    hap = config(inv, "hap")
    assert "http-error status 503 " in hap and hap.count("hdr Retry-After 120") == 1
    ds = nginx_directives(config(inv, "ngx"), tmp_path)
    assert ["502", "503", "=503", "/.clusterctl-unavailable.html"] in [
        d["args"] for d in ds if d["directive"] == "error_page"
    ]
    assert ["Retry-After", "120", "always"] in [
        d["args"] for d in ds if d["directive"] == "add_header"
    ]
    apa = config(inv, "apa")
    assert "ErrorDocument 503 /.clusterctl-unavailable.html" in apa
    assert 'Retry-After "120"' in apa


def test_a_pool_in_maintenance_answers_503_on_every_kind_and_only_that_pool(
    tmp_path: Path,
) -> None:
    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    off, on = inventory(tmp_path / "off"), inventory(tmp_path / "on", maint="true")
    for host, marker in (
        ("hap", "http-request deny deny_status 503 if TRUE"),
        ("ngx", "return 503;"),
        ("apa", "- [R=503,L]"),
    ):
        assert marker not in config(off, host)
        assert config(on, host).count(marker) == (2 if host == "ngx" else 1), host
    hap = config(on, "hap")
    assert "deny_status 503 if TRUE" in hap.split("\nbackend old", 1)[1].split("\nbackend ", 1)[0]
    # The other pool still proxies.
    assert "balancer://app%{REQUEST_URI} [P,L]" in config(on, "apa")


# ---------------------------------------------------------------------------- metrics


def test_metrics_are_off_by_default(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    assert "prometheus-exporter" not in config(inv, "hap")
    assert "stub_status" not in config(inv, "ngx")
    assert "server-status" not in config(inv, "apa")


def test_metrics_listen_where_asked_for_the_allowed_sources(tmp_path: Path) -> None:
    m = "metrics: {address: 192.0.2.10, port: 9101, allow: [192.0.2.0/24, '2001:db8::1']}"
    inv = inventory(
        tmp_path,
        hap="syslog: /dev/log, " + m,
        ngx=m.replace("192.0.2.10", "192.0.2.11"),
        apa="admin_port: 8081, " + m.replace("192.0.2.10", "192.0.2.12"),
    )
    hap = config(inv, "hap").split("frontend clusterctl-metrics", 1)[1].split("\nbackend ", 1)[0]
    assert "bind 192.0.2.10:9101" in hap
    assert "deny deny_status 403 unless { src 192.0.2.0/24 2001:db8::1/128 }" in hap
    assert "use-service prometheus-exporter if { path /metrics }" in hap
    ds = nginx_directives(config(inv, "ngx"), tmp_path)
    (loc,) = [d for d in ds if d["directive"] == "location" and d["args"] == ["=", "/metrics"]]
    assert [(d["directive"], d["args"]) for d in loc["block"]] == [  # type: ignore[attr-defined]
        ("stub_status", []),
        ("allow", ["192.0.2.0/24"]),
        ("allow", ["2001:db8::1/128"]),
        ("deny", ["all"]),
    ]
    assert ["192.0.2.11:9101"] in [d["args"] for d in ds if d["directive"] == "listen"]
    apa = config(inv, "apa")
    assert "Listen 192.0.2.12:9101" in apa and "SetHandler server-status" in apa
    assert "Require ip 192.0.2.0/24 2001:db8::1/128" in apa


# ---------------------------------------------------------------------------- logs


def test_access_logs_name_the_upstream_and_its_timings(tmp_path: Path) -> None:
    inv = inventory(tmp_path, hap='syslog: "127.0.0.1:514"')
    hap = config(inv, "hap")
    assert "log 127.0.0.1:514 local0" in hap and "option httplog" in hap
    ngx = config(inv, "ngx")
    assert "$upstream_addr" in ngx and "$upstream_response_time" in ngx
    assert "access.log clusterctl;" in ngx
    apa = config(inv, "apa")
    assert '%{BALANCER_WORKER_NAME}e %D" balanced' in apa


# ---------------------------------------------------------------------------- errors


def at(path: Path, line: int, col: int) -> str:
    return f"{path}:{line}:{col}: "


@pytest.mark.parametrize(
    ("hap", "message"),
    [
        ("syslog: '/dev/log; evil'", "is not a syslog target"),
        ("syslog: '192.0.2.1:99999'", "is not a syslog target"),
        (
            "metrics: {port: 9101, allow: [192.0.2.1/24]}",
            "has host bits set; write the network '192.0.2.0/24'",
        ),
        ("metrics: {port: 9101, allow: ['127.0.0.1 ::1']}", "is not an IP address or network"),
        ("metrics: {port: 9101, allow: []}", "expected a non-empty list"),
        ("metrics: {port: 80}", "80 is already service web's listener's port"),
        ("metrics: {port: 10000}", "10000 is already peer_port's port"),
        ("metrics: {port: 9101, path: '/m;x'}", "is not a plain URL path prefix"),
    ],
)
def test_bad_feature_values_are_one_line_each_at_their_position(
    tmp_path: Path, hap: str, message: str
) -> None:
    found = problems(inventory(tmp_path, hap=hap))
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path / 'inv.yaml'}:3:"), found
    assert message in found[0]


def test_only_haproxy_logs_to_syslog(tmp_path: Path) -> None:
    found = problems(inventory(tmp_path, ngx="syslog: /dev/log"))
    assert found == [
        f"{at(tmp_path / 'inv.yaml', 4, 76)}frontends[1].syslog: only haproxy front ends log to "
        "syslog (nginx writes its own files)"
    ]


@pytest.mark.parametrize(
    ("page", "message"),
    [
        (b"\xff\xfe<html>", "is not UTF-8 text (byte 0xff)"),
        (b"x" * (8 * 1024 + 1), "is larger than 8 KiB"),
        (b"-----BEGIN OPENSSH PRIVATE KEY-----\n", "is an SSH private key"),
        (b"-----BEGIN PRIVATE KEY-----\n", "holds a private key, not a page"),
    ],
)
def test_a_bad_page_file_is_refused_at_the_page_key(
    tmp_path: Path, page: bytes, message: str
) -> None:
    found = problems(inventory(tmp_path, unavailable="page: sorry.html", page=page))
    assert len(found) == 1 and found[0].startswith(f"{tmp_path / 'inv.yaml'}:20:"), found
    assert "services[0].unavailable.page: sorry.html: " + message in found[0]


def test_a_missing_page_file_is_refused(tmp_path: Path) -> None:
    found = problems(inventory(tmp_path, unavailable="page: nowhere.html"))
    assert found == [
        f"{at(tmp_path / 'inv.yaml', 20, 25)}services[0].unavailable.page: nowhere.html: "
        "No such file or directory"
    ]


def test_a_tcp_pool_cannot_be_in_maintenance(tmp_path: Path) -> None:
    path = inventory(tmp_path)
    path.write_text(
        path.read_text().replace("  - name: db\n", "  - name: db\n    maintenance: true\n")
    )
    found = problems(path)
    assert len(found) == 1 and "pools[2].maintenance: db serves a tcp service" in found[0]


def test_source_and_syslog_checks_normalise() -> None:
    assert source("127.0.0.1") == "127.0.0.1/32"
    assert source("::1") == "::1/128"
    assert syslog("[::1]:514") == "[::1]:514"
    assert syslog("/run/log.sock") == "/run/log.sock"
    for bad in ("fe80::1%eth0", "any", "127.0.0.1/33"):
        with pytest.raises(CheckFailed):
            source(bad)
    for bad in ("/dev/../etc/log", "host:514", "[127.0.0.1]:514", "::1:514"):
        with pytest.raises(CheckFailed):
            syslog(bad)


def test_the_full_inventory_documents_the_features() -> None:
    text = (Path(__file__).resolve().parents[2] / "inventories" / "full.yaml").read_text()
    for key in (
        "syslog:",
        "metrics:",
        "allow:",
        "maintenance:",
        "tunnel:",
        "unavailable:",
        "retry_after:",
    ):
        assert key in text, key


# ---------------------------------------------------------------------------- maintenance


def test_maintenance_selects_a_pool_or_every_http_pool(tmp_path: Path) -> None:
    from clusterctl.errors import ClusterctlError
    from clusterctl.orchestrate import maintenance as mt

    inv = load(inventory(tmp_path))
    assert mt.select(inv, None) == ["app", "old"]  # db serves only the tcp service
    assert mt.select(inv, "old") == ["old"]
    with pytest.raises(
        ClusterctlError, match="no pool named 'nope'; the inventory has: app, old, db"
    ):
        mt.select(inv, "nope")
    with pytest.raises(ClusterctlError, match="'db' serves no http service"):
        mt.select(inv, "db")


def test_maintenance_sets_every_member_to_maint_and_back_to_its_inventory_state(
    tmp_path: Path,
) -> None:
    from clusterctl.orchestrate import maintenance as mt

    path = inventory(tmp_path)
    path.write_text(
        path.read_text().replace(
            "port: 8080}]\n  - name: old",
            "port: 8080}, {name: web3, address: 192.0.2.23, port: 8080, state: drain}]\n"
            "  - name: old",
        )
    )
    inv = load(path)
    hap = inv.frontends[0]
    pools = mt.frontend_pools(inv, hap, ["app"])
    assert [c.describe() for c in mt.changes(pools, True)] == [
        "app/web1 state maint",
        "app/web3 state maint",
    ]
    assert [c.describe() for c in mt.changes(pools, False)] == [
        "app/web1 state ready",
        "app/web3 state drain",
    ]
    # A front end that does not serve the pool is left alone.
    assert mt.frontend_pools(inv, hap, ["missing"]) == []
