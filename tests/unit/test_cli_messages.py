"""Messages as users read them: every problem at once, close suggestions only, plain words."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clusterctl.cli.config import RENDER_MANIFEST, prune_render
from clusterctl.cli.nodes import _again, _restore_hint
from clusterctl.errors import InventoryError
from clusterctl.model.crossref import close_match
from clusterctl.model.loader import parse
from clusterctl.verify import VerifyReport
from clusterctl.verify.plugin import ENV_REPORT, Check

BASE = """\
cluster: t
frontends:
  - {name: lb1, kind: haproxy, address: 192.0.2.10}
pools:
  - name: app
    servers: [{name: web1, address: 192.0.2.20, port: 8080}]
services:
  - name: web
    listen: [{port: 80}]
    default_pool: app
"""


def problems(text: str) -> list[str]:
    with pytest.raises(InventoryError) as err:
        parse(text, "inv.yaml")
    return str(err.value).splitlines()


def test_a_missing_pool_is_reported_with_a_structural_problem() -> None:
    text = BASE.replace("port: 8080", "port: 80800") + "    routes: [{path: /api, pool: apps}]\n"
    assert problems(text) == [
        "inv.yaml:6:55: pools[0].servers[0].port: 80800 is out of range 1..65535",
        "inv.yaml:11:33: services[0].routes[0].pool: no pool named 'apps'; did you mean 'app'?",
    ]


def test_a_reference_to_a_pool_with_a_broken_name_is_not_reported_twice() -> None:
    text = BASE.replace("name: app", "name: ' app'").replace("port: 8080", "port: 0")
    out = problems(text)
    assert len(out) == 2 and all("no pool named" not in p for p in out), out


def test_a_missing_service_of_a_front_end_is_reported_with_a_structural_one() -> None:
    text = BASE.replace("address: 192.0.2.10}", "address: 192.0.2.10, services: [wbe]}")
    out = problems(text.replace("port: 8080", "port: x"))
    assert (
        out[0].startswith("inv.yaml:3:")
        and "no service named 'wbe'; did you mean 'web'?" in (out[0])
    )
    assert "pools[0].servers[0].port" in out[1]


@pytest.mark.parametrize(
    ("word", "options", "expected"),
    [
        ("ngnix", ["haproxy", "nginx", "apache"], "nginx"),
        ("ap", ["app"], "app"),
        ("wbe", ["web"], "web"),  # two letters swapped: close however short
        ("app", ["api"], None),  # a different word, not a typo
        ("static", ["stats"], None),
        ("web", ["api", "static"], None),
    ],
)
def test_did_you_mean_only_when_close(word: str, options: list[str], expected: str | None) -> None:
    assert close_match(word, options) == expected


def test_a_far_pool_name_lists_what_exists_instead() -> None:
    out = problems(BASE.replace("default_pool: app", "default_pool: api"))
    assert out == ["inv.yaml:10:19: services[0].default_pool: no pool named 'api' (known: app)"]


def test_a_mysql_check_on_an_http_service_hints_at_mode_tcp() -> None:
    text = BASE.replace(
        "    servers:", "    health: {type: mysql, user: haproxy_check}\n    servers:"
    )
    out = problems(text)
    assert len(out) == 1 and "mysql check on a pool that http service 'web' uses" in out[0]
    assert "give that service mode: tcp" in out[0]


def test_drain_hints_name_the_real_command() -> None:
    assert _restore_hint(Path("my inv.yaml"), "web1") == "clusterctl restore -i 'my inv.yaml' web1"
    assert _restore_hint(Path("inv.yaml"), "web1", 30) == (
        "clusterctl restore -i inv.yaml web1 --lock-wait 30"
    )
    assert _again("drain", Path("inv.yaml"), "web1", "--force") == (
        "clusterctl drain -i inv.yaml web1 --force"
    )


def test_drain_refusal_names_the_whole_command_to_force_it() -> None:
    from clusterctl.orchestrate.batches import FloorError, check_floor

    inv = parse(BASE + "deploy: {command: ['true'], min_available: 1}\n", "inv.yaml")
    with pytest.raises(FloorError) as err:
        check_floor(inv, ["web1"], {}, fix="clusterctl drain -i inv.yaml web1 --force")
    assert str(err.value) == (
        "web1 would leave pool app with 0 serving nodes, below deploy.min_available 1; lower "
        "deploy.min_available in inv.yaml; or run clusterctl drain -i inv.yaml web1 --force "
        "to go below the floor knowingly"
    )


def _write(root: Path, rel: str, text: str = "x") -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


def test_render_removes_only_what_an_earlier_render_wrote(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = ["lb1/etc/haproxy/haproxy.cfg", "lb1/etc/haproxy/certs/web.pem", "lb2/etc/x.conf"]
    for rel in first:
        _write(out, rel)
    assert prune_render(out, first) == []
    _write(out, "lb1/etc/haproxy/notes.txt")  # the user's own file
    _write(tmp_path / "outside", "secret")
    # A manifest edited to point outside DIR, or up and back in, is not followed.
    with (out / RENDER_MANIFEST).open("a") as fh:
        fh.write("../outside\nlb1/../lb2/etc/x.conf\n/etc/passwd\n")
    removed = prune_render(out, ["lb1/etc/haproxy/haproxy.cfg"])
    assert sorted(removed) == ["lb1/etc/haproxy/certs/web.pem", "lb2/etc/x.conf"]
    assert (out / "lb1/etc/haproxy/haproxy.cfg").exists()
    assert (out / "lb1/etc/haproxy/notes.txt").exists()
    assert not (out / "lb1/etc/haproxy/certs").exists() and not (out / "lb2").exists()
    assert (tmp_path / "outside").exists()
    assert (out / RENDER_MANIFEST).read_text() == "lb1/etc/haproxy/haproxy.cfg\n"


def test_render_does_not_follow_a_symlinked_folder(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    _write(elsewhere, "etc/keep.conf")
    out.mkdir()
    (out / "lb1").symlink_to(elsewhere)
    (out / RENDER_MANIFEST).write_text("lb1/etc/keep.conf\n")
    assert prune_render(out, []) == []
    assert (elsewhere / "etc/keep.conf").exists()


def test_render_twice_via_the_cli_leaves_no_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from clusterctl.cli import main

    inv = tmp_path / "inv.yaml"
    inv.write_text(BASE)
    out = tmp_path / "out"

    def render() -> str:
        monkeypatch.setattr(sys, "argv", ["clusterctl", "render", "-i", str(inv), "-o", str(out)])
        with pytest.raises(SystemExit) as exit_:
            main()
        assert exit_.value.code == 0
        return capsys.readouterr().out

    render()
    stale = out / "lb1/etc/haproxy/old.cfg"
    (out / RENDER_MANIFEST).write_text(
        (out / RENDER_MANIFEST).read_text() + "lb1/etc/haproxy/old.cfg\n"
    )
    stale.write_text("from an earlier render")
    assert f"removed {stale} (no longer rendered)" in render()
    assert not stale.exists() and (out / "lb1/etc/haproxy/haproxy.cfg").exists()


CHECKS = [
    Check("lb1", "haproxy", "test_frontend_listening[lb1]", "passed"),
    Check("lb1", "haproxy", "test_installed_file[lb1:/etc/haproxy/haproxy.cfg]", "passed"),
    Check(
        "lb2",
        "nginx",
        "test_installed_file[lb2:/etc/nginx/nginx.conf]",
        "failed",
        "lb2: /etc/nginx/nginx.conf: content differs from the rendered file\n-# by hand",
    ),
    Check("be1", "backend", "test_backend_health_and_release[be1]", "passed", "", "1.0.0"),
]


def test_verify_summary_is_a_line_per_host_then_failures_then_totals() -> None:
    lines = VerifyReport(1, CHECKS).summary()
    assert lines[0].startswith("lb1 ") and " ok " in lines[0] and "2 passed" in lines[0]
    assert lines[1].startswith("lb2 ") and "FAILED" in lines[1]
    assert lines[2].startswith("be1 ")  # backends after the front ends
    assert lines[2].endswith("1 passed; release 1.0.0")
    assert lines[3:] == [
        "FAILED lb2 test_installed_file[lb2:/etc/nginx/nginx.conf]: lb2: /etc/nginx/nginx.conf: "
        "content differs from the rendered file",
        "    -# by hand",
        "verify: 3 hosts checked, 1 failed (4 checks, 1 failed)",
    ]


def test_verify_plugin_hands_back_each_check_and_pytest_says_nothing(tmp_path: Path) -> None:
    module = tmp_path / "test_fake.py"
    module.write_text(
        "import pytest\n"
        "def test_good(record_property):\n"
        "    record_property('clusterctl_host', 'lb1')\n"
        "    record_property('clusterctl_role', 'haproxy')\n"
        "def test_bad(record_property):\n"
        "    record_property('clusterctl_host', 'lb2')\n"
        "    pytest.fail('lb2: /etc/x: mode 0644, expected 0600', pytrace=False)\n"
    )
    from clusterctl.verify import pytest_argv

    argv = pytest_argv([], raw=False)
    argv[3] = str(module)  # the fake checks in place of checks.py
    report = tmp_path / "report.json"
    env = {**os.environ, ENV_REPORT: str(report)}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout + proc.stderr
    checks = {c["check"]: c for c in json.loads(report.read_text())["checks"]}
    assert checks["test_good"]["outcome"] == "passed" and checks["test_good"]["host"] == "lb1"
    assert checks["test_bad"] == {
        "host": "lb2",
        "role": "",
        "check": "test_bad",
        "outcome": "failed",
        "message": "lb2: /etc/x: mode 0644, expected 0600",
        "release": "",
    }
