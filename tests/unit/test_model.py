"""The inventory loader: typed values, defaults, and every problem reported at its position."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from clusterctl.errors import InventoryError
from clusterctl.model import load, parse

REPO = Path(__file__).resolve().parents[2]

BASE = """\
cluster: t
frontends:
  - {name: lb1, kind: haproxy, address: 192.0.2.10}
pools:
  - name: app
    servers:
      - {name: web1, address: 192.0.2.21, port: 8080}
services:
  - name: web
    listen: [{port: 80}]
    default_pool: app
"""


def problems(text: str) -> list[str]:
    with pytest.raises(InventoryError) as info:
        parse(textwrap.dedent(text), "inv.yaml")
    return [str(p) for p in info.value.problems]


def test_example_inventories_validate() -> None:
    for path in sorted((REPO / "inventories").glob("*.yaml")):
        inv = load(path)
        assert inv.frontends and inv.pools and inv.services, path


def test_defaults_are_filled_in() -> None:
    inv = parse(BASE, "inv.yaml")
    server = inv.pools[0].servers[0]
    assert (server.weight, server.backup, server.state) == (1, False, "ready")
    assert inv.services[0].listen[0].address == "*"
    assert inv.services[0].timeouts.connect == 5000
    assert inv.services[0].max_body == 10 * 1024 * 1024


def test_durations_and_sizes_are_parsed() -> None:
    inv = parse(
        BASE.replace(
            "default_pool: app",
            "default_pool: app\n    max_body: 512k\n"
            "    timeouts: {connect: 250ms, client: 2m, server: 1h}",
        ),
        "inv.yaml",
    )
    t = inv.services[0].timeouts
    assert (t.connect, t.client, t.server) == (250, 120_000, 3_600_000)
    assert inv.services[0].max_body == 512 * 1024


def test_unknown_key_names_position_and_suggests() -> None:
    out = problems(BASE.replace("kind: haproxy", "kind: haproxy, adress: x"))
    assert out == ["inv.yaml:3:32: frontends[0].adress: unknown key; did you mean 'address'?"]


def test_every_problem_is_reported_not_only_the_first() -> None:
    bad = BASE.replace("port: 8080", "port: 80800").replace("kind: haproxy", "kind: haprox")
    out = problems(bad)
    assert len(out) == 2
    assert out[0].startswith("inv.yaml:3:") and "did you mean 'haproxy'" in out[0]
    assert out[1].startswith("inv.yaml:7:") and "out of range 1..65535" in out[1]


def test_wrong_types() -> None:
    out = problems(BASE.replace("port: 8080", "port: '8080'"))
    assert out == [
        "inv.yaml:7:49: pools[0].servers[0].port: expected a whole number, got text '8080'"
    ]
    out = problems(BASE.replace("listen: [{port: 80}]", "listen: {port: 80}"))
    assert "services[0].listen: expected a list" in out[0]


def test_missing_required_key() -> None:
    out = problems(BASE.replace("    default_pool: app\n", ""))
    assert out == ["inv.yaml:9:5: services[0].default_pool: is required"]


def test_duplicate_yaml_key() -> None:
    out = problems(BASE.replace("cluster: t\n", "cluster: t\ncluster: u\n"))
    assert out[0].startswith("inv.yaml:2:1: YAML: duplicate key")


def test_yaml_syntax_error_has_position() -> None:
    out = problems(BASE.replace("listen: [{port: 80}]", "listen: [{port: 80}"))
    assert out[0].startswith("inv.yaml:") and "YAML" in out[0]


def test_duplicate_names_and_missing_pool() -> None:
    text = BASE.replace(
        "  - {name: lb1, kind: haproxy, address: 192.0.2.10}",
        "  - {name: lb1, kind: haproxy, address: 192.0.2.10}\n"
        "  - {name: lb1, kind: nginx, address: 192.0.2.11}",
    ).replace("default_pool: app", "default_pool: ap")
    out = problems(text)
    assert any("frontends[1].name: duplicate name 'lb1'" in p for p in out)
    assert any(
        "services[0].default_pool: no pool named 'ap'; did you mean 'app'?" in p for p in out
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("name: web1", "name: 'web1;x'", "not a valid name"),
        ("name: web1", "name: 'web 1'", "not a valid name"),
        ("name: web1", 'name: "web1\\nserver evil"', "line-break"),
        ("name: web1", 'name: "web1\\u2028"', "line-break"),
        ("name: web1", 'name: "web1\\x85"', "line-break"),
        ("name: web1", 'name: "web1\\r"', "line-break"),
        ("name: web1", 'name: "web1\\0"', "control"),
        ("name: web1", "name: 'web1{'", "not a valid name"),
        ("name: web1", "name: 'web1#'", "not a valid name"),
        ("name: web1", "name: 'web$1'", "not a valid name"),
        ("name: web1", "name: '<web1>'", "not a valid name"),
        ("name: web1", "name: 'web\"1'", "not a valid name"),
        ("address: 192.0.2.21", "address: 'evil.com;'", "not an IP address or host name"),
        ("port: 8080", "port: 0", "out of range"),
    ],
)
def test_hostile_values_are_refused(old: str, new: str, message: str) -> None:
    out = problems(BASE.replace(old, new, 1) if old != "name: web1" else BASE.replace(old, new))
    assert len(out) == 1 and message in out[0], out
    assert out[0].startswith("inv.yaml:7:")


def test_system_paths_are_refused() -> None:
    out = problems(
        BASE.replace("address: 192.0.2.10}", "address: 192.0.2.10, paths: {config: /etc/passwd}}")
    )
    assert "points at a system file" in out[0]
    out = problems(
        BASE.replace(
            "address: 192.0.2.10}", "address: 192.0.2.10, paths: {config: /etc/haproxy/../shadow}}"
        )
    )
    assert "not normalised" in out[0]


def test_tls_key_at_system_file_is_refused() -> None:
    text = BASE.replace(
        "listen: [{port: 80}]",
        "listen: [{port: 443, tls: true}]\n    tls: {certificate: a.crt, key: /etc/shadow}",
    )
    out = problems(text)
    assert out == [
        "inv.yaml:11:36: services[0].tls.key: path '/etc/shadow' points at a system file; clusterctl will not read it"
    ]


def test_sticky_on_tcp_service_and_tcp_on_nginx() -> None:
    text = (
        BASE.replace("kind: haproxy", "kind: nginx")
        .replace("    servers:", "    sticky: {cookie: SRV}\n    servers:")
        .replace("listen: [{port: 80}]", "mode: tcp\n    listen: [{port: 3306}]")
    )
    out = problems(text)
    assert any("sticky cookies need HTTP" in p for p in out)
    assert any("tcp service 'web' needs an haproxy front end" in p for p in out)


def test_port_clash_between_services() -> None:
    text = (
        BASE + "  - {name: other, listen: [{port: 80, address: 192.0.2.10}], default_pool: app}\n"
    )
    out = problems(text)
    assert out == [
        "inv.yaml:12:35: services[1].listen[0].port: port 80 is already used by service 'web'"
    ]


def test_nginx_1_22_mixes_sticky_and_backup_through_its_lua_balancer() -> None:
    text = (
        BASE.replace("kind: haproxy", "kind: nginx")
        .replace("    servers:", "    sticky: {cookie: SRV}\n    servers:")
        .replace(
            "port: 8080}",
            "port: 8080}\n      - {name: web2, address: 192.0.2.22, port: 8080, backup: true}",
        )
    )
    # The Lua balancer (libnginx-mod-http-lua) pins and falls back to backups by itself; a host
    # without it is refused at plan (tests/unit/test_nginx_lua_unit.py).
    inv = parse(textwrap.dedent(text), "inv.yaml")
    assert [s.backup for s in inv.pools[0].servers] == [False, True]
    ok = text.replace("address: 192.0.2.10}", "address: 192.0.2.10, version: '1.29.6'}")
    assert parse(ok, "inv.yaml").frontends[0].version == "1.29.6"


def test_commands_must_be_argument_lists() -> None:
    out = problems(
        BASE.replace(
            "address: 192.0.2.10}", "address: 192.0.2.10, reload: 'systemctl reload haproxy'}"
        )
    )
    assert "commands are lists of arguments" in out[0]
    out = problems(BASE + "deploy: {command: [deploy, '{versoin}']}\n")
    assert "unknown placeholder {versoin}" in out[0]


def test_pool_shared_by_http_and_tcp_services_is_refused() -> None:
    text = BASE + "  - {name: raw, mode: tcp, listen: [{port: 9000}], default_pool: app}\n"
    out = problems(text)
    assert out == [
        "inv.yaml:5:11: pools[0]: used by both http and tcp services ('raw' is tcp); give each mode its own pool"
    ]


def test_full_example_documents_the_release_strategy() -> None:
    # The commented alternative in the reference inventory is valid once swapped in.
    text = (REPO / "inventories" / "full.yaml").read_text()
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip().startswith("# release:"))
    block = [ln.replace("  # ", "  ", 1) for ln in lines[start : start + 4]]
    swapped = [ln for ln in lines if not ln.strip().startswith("command: [/usr/local/bin")]
    at = swapped.index(lines[start])
    swapped[at : at + 4] = block
    inv = parse("\n".join(swapped) + "\n", str(REPO / "inventories" / "full.yaml"))
    assert inv.deploy.command is None and inv.deploy.release is not None
    assert inv.deploy.release.artifact == "build/app-{version}.tar.gz"
    assert inv.deploy.release.restart == ("systemctl", "restart", "app")


def test_command_and_release_are_exclusive() -> None:
    out = problems(
        BASE
        + "deploy:\n  command: [x]\n  release: {root: /srv/app, artifact: a.tgz, restart: [y]}\n"
    )
    assert out == [
        "inv.yaml:14:12: deploy.release: give either deploy.command or deploy.release (the built-in strategy), not both"
    ]


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("", "1:1"),
        ("# a comment\n\n# another\n", "1:1"),
        ("# nothing\n~\n", "2:1"),
        ("---\n", "2:1"),
    ],
    ids=["empty", "comments-only", "null-document", "bare-document-marker"],
)
def test_empty_documents_are_one_line_errors(text: str, at: str) -> None:
    out = problems(text)
    assert out == [
        f"inv.yaml:{at}: inventory: the file is empty; an inventory is a mapping with cluster, "
        "frontends, pools and services (see inventories/minimal.yaml)"
    ]


def test_an_integer_too_long_to_convert_is_refused_at_its_field() -> None:
    out = problems(BASE.replace("port: 8080", "port: " + "9" * 4301))
    assert out == [
        "inv.yaml:7:49: pools[0].servers[0].port: a 4301-digit number is out of range 1..65535"
    ]


def test_deep_nesting_is_refused_without_recursion() -> None:
    out = problems(BASE + "deploy: {command: " + "[" * 2000 + "]" * 2000 + "}\n")
    assert len(out) == 1 and out[0].startswith("inv.yaml:12:") and "YAML: " in out[0], out
    out = problems(BASE + "deploy:\n" + "".join(" " * i + "x:\n" for i in range(1, 100)))
    assert out == ["inv.yaml:76:65: YAML: nested more than 64 levels deep"]


def test_aliases_are_refused_where_they_start() -> None:
    laughs = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
    out = problems("l0: &l0 [lol]\n" + laughs)
    assert out == ["inv.yaml:1:5: YAML: anchors (&l0) are not supported; write the values out"]
    out = problems(BASE + "deploy: {command: *cmd}\n")
    assert out == ["inv.yaml:12:19: YAML: aliases (*cmd) are not supported; write the value out"]


def test_paths_too_long_for_the_file_system_are_refused() -> None:
    long_name = "/etc/haproxy/" + "a" * 256 + ".cfg"
    out = problems(
        BASE.replace(
            "address: 192.0.2.10}", f"address: 192.0.2.10, paths: {{config: {long_name}}}}}"
        )
    )
    assert len(out) == 1 and "is 260 bytes long; file names hold at most 255" in out[0], out
    deep = "/etc/haproxy/" + "/".join(["d" * 200] * 6)
    out = problems(
        BASE.replace("address: 192.0.2.10}", f"address: 192.0.2.10, paths: {{tls_dir: {deep}}}}}")
    )
    assert len(out) == 1 and "the limit is 1024" in out[0], out


@pytest.mark.parametrize(
    ("jump", "message"),
    [
        (
            '"2001:db8::"',
            "write an IPv6 jump host in brackets, e.g. [2001:db8::] or [2001:db8::]:22",
        ),
        ('"2001:db8::1"', "write an IPv6 jump host in brackets"),
        ('"[2001:db8::1"', "is not a jump host"),
        ('"[bastion]:22"', "[bastion] is not an IPv6 address"),
        ('"bastion:99999"', "99999 is out of range 1..65535"),
        ('"Root@bastion"', "'Root' is not a valid user name"),
        ("unix", "never a socket"),
    ],
)
def test_jump_hosts_are_host_port_with_ipv6_in_brackets(jump: str, message: str) -> None:
    out = problems(
        BASE.replace("cluster: t\n", f"cluster: t\ndefaults: {{ssh: {{jump: {jump}}}}}\n")
    )
    assert len(out) == 1 and out[0].startswith("inv.yaml:2:") and message in out[0], out


@pytest.mark.parametrize(
    "jump",
    [
        "[2001:db8::1]",
        "[2001:db8::1]:2222",
        "ops@[2001:db8::1]:22",
        "bastion.example.com:2222",
        "192.0.2.1",
    ],
)
def test_jump_hosts_that_are_accepted(jump: str) -> None:
    inv = parse(
        BASE.replace("cluster: t\n", f"cluster: t\ndefaults: {{ssh: {{jump: '{jump}'}}}}\n"),
        "inv.yaml",
    )
    assert inv.defaults.ssh.jump == jump


def test_lone_surrogates_are_refused_in_any_text() -> None:
    from clusterctl.model import checks as c

    with pytest.raises(c.CheckFailed, match=r"lone surrogate U\+D800"):
        c.argv()(["systemctl", "reload\ud800"])
    out = problems(
        BASE.replace(
            "address: 192.0.2.10}", 'address: 192.0.2.10, reload: [systemctl, "r\\ud800"]}'
        )
    )
    assert len(out) == 1 and out[0].startswith("inv.yaml:3:") and "lone surrogate" in out[0], out
    out = problems(BASE.replace("cluster: t", "cluster: t\ud800"))
    assert out == ["inv.yaml:1:11: YAML: U+D800 is a lone surrogate, not a character"]


@pytest.mark.parametrize("cookie", ["SRV-ID", "__Host-SRV", "-SRV"])
def test_sticky_cookies_nginx_cannot_read_are_refused(cookie: str) -> None:
    out = problems(
        BASE.replace("    servers:", f"    sticky: {{cookie: '{cookie}'}}\n    servers:")
    )
    assert len(out) == 1 and out[0].startswith("inv.yaml:6:22: pools[0].sticky.cookie: "), out
    assert "nginx cannot read a cookie whose name holds '-'" in out[0]
    assert repr(cookie.replace("-", "_")) in out[0]


@pytest.mark.parametrize("address", ["unix", "UNIX", "unix:/run/app.sock", "unix:8080"])
def test_an_address_is_never_a_socket(address: str) -> None:
    out = problems(BASE.replace("address: 192.0.2.21", f"address: '{address}'"))
    assert len(out) == 1 and out[0].startswith("inv.yaml:7:"), out
    assert "never a socket" in out[0] or "not an IP address or host name" in out[0]
